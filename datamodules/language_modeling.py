"""A LightningDataModule for language modelling: documents from local files or the Hub, packed into fixed-length
blocks of tokens."""

from __future__ import annotations

import random
from pathlib import Path

import datasets
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from bcos.data.sources import HUB_DATASETS, resolve_source
from datamodules.text_classification import load_checked_tokenizer

TEXT_SUFFIX = ".txt"


def _text_lines(path: Path) -> list[str]:
    """The non-empty lines of a text file, one document each."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_documents(dataset: str, text_column: str = "text", hub_config: str | None = None) -> dict[str, list[str]]:
    """``{split: documents}`` of ``dataset``, the non-empty texts of each split.

    ``dataset`` is a ``.txt`` file (one document per line, the train split) or a folder of
    ``{train,validation,test}.txt``; a named set or a JSONL/CSV file or folder (as for text classification,
    ``$BCOS_DATA_DIR/<name>/`` first); else a Hugging Face Hub dataset id (with ``hub_config``).
    """
    path = Path(dataset).expanduser()
    if path.is_file() and path.suffix == TEXT_SUFFIX:
        return {"train": _text_lines(path)}
    if path.is_dir() and (path / f"train{TEXT_SUFFIX}").is_file():
        return {file.stem: _text_lines(file) for file in sorted(path.glob(f"*{TEXT_SUFFIX}"))}
    if dataset in HUB_DATASETS or path.exists():
        splits = resolve_source(dataset).load()
    else:
        try:
            splits = dict(datasets.load_dataset(dataset, hub_config))
        except Exception as err:
            raise FileNotFoundError(
                f"Dataset {dataset!r} is not a .txt/.jsonl/.csv file or folder, not one of {sorted(HUB_DATASETS)}, and "
                f"loading it from the Hugging Face Hub failed ({type(err).__name__}: {err})") from err
    missing = [split for split, table in splits.items() if text_column not in table.column_names]
    if missing:
        raise ValueError(f"Dataset {dataset!r} has no column {text_column!r} in split(s) {missing}; columns: "
                         f"{splits[missing[0]].column_names}. Set text_column.")
    return {split: [text for text in table[text_column] if text and text.strip()] for split, table in splits.items()}


def pack_blocks(documents: list[str], tokenizer: PreTrainedTokenizerBase, block_size: int,
                max_blocks: int | None = None, chunk: int = 512, desc: str = "packing") -> torch.Tensor:
    """``[blocks, block_size]`` token ids: the documents tokenised in order, each followed by the EOS token,
    concatenated and cut into consecutive blocks (the incomplete last block is dropped). Stops tokenising once
    ``max_blocks`` blocks are full."""
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    enough = None if max_blocks is None else max_blocks * block_size
    for start in tqdm(range(0, len(documents), chunk), desc=desc, leave=False):
        for ids in tokenizer(documents[start:start + chunk], add_special_tokens=False)["input_ids"]:
            stream += ids + separator
        if enough is not None and len(stream) >= enough:
            break
    n_blocks = len(stream) // block_size if enough is None else min(len(stream) // block_size, max_blocks)
    return torch.tensor(stream[:n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)


class BlockDataset(Dataset):
    """Blocks of token ids as language-model examples: ``input_ids`` and ``attention_mask`` (all ones), ``[T]``."""

    def __init__(self, blocks: torch.Tensor) -> None:
        self.blocks = blocks

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[index], "attention_mask": torch.ones_like(self.blocks[index])}


class LanguageModelingDataModule(LightningDataModule):
    """Text packed into blocks of ``block_size`` tokens for next-token training, and held-out blocks for perplexity.

    Documents of every dataset in ``dataset`` are pooled; validation documents come from each dataset's
    ``validation`` split, or are carved from its train split (``validation_fraction``, drawn with ``seed``).
    Both pools are shuffled with ``seed`` and packed by :func:`pack_blocks`. Batches: ``input_ids`` and
    ``attention_mask``, ``[batch, block_size]``.

    Args:
        dataset: one dataset or a list (see :func:`read_documents`): ``.txt``/JSONL/CSV files or folders, named
            sets (``sst2``, ``imdb``, ``ag_news``, ``hatexplain`` under ``$BCOS_DATA_DIR``), or Hub dataset ids.
        tokenizer: a model name or path, loaded through ``bcos.hub.load_tokenizer``.
        text_column: column holding the text (JSONL/CSV/Hub data).
        hub_config: the configuration name of a Hub dataset (e.g. ``wikitext-103-raw-v1``).
        block_size: tokens per training example.
        max_train_blocks, max_eval_blocks: stop packing after this many blocks (None: all the text).
        batch_size, eval_batch_size: batch sizes (``eval_batch_size`` defaults to ``batch_size``).
        validation_fraction: share of train documents held out where a dataset has no validation split.
        num_workers: DataLoader worker processes.
        seed: seed of the hold-out, the document order and the training shuffle.
    """

    #: the option that bounds the tokens of one example (checked against the model's positions)
    sequence_length_option = "block_size"

    def __init__(
        self,
        dataset: str | list[str],
        tokenizer: str,
        text_column: str = "text",
        hub_config: str | None = None,
        block_size: int = 128,
        max_train_blocks: int | None = None,
        max_eval_blocks: int | None = 64,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        validation_fraction: float = 0.05,
        num_workers: int = 0,
        seed: int = 42,
    ) -> None:
        super().__init__()
        for name in ("block_size", "max_train_blocks", "max_eval_blocks", "batch_size", "eval_batch_size"):
            value = locals()[name]
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if not 0 < validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
        self.save_hyperparameters()
        self.blocks: dict[str, torch.Tensor] = {}
        self._tokenizer: PreTrainedTokenizerBase | None = None

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = load_checked_tokenizer(self.hparams.tokenizer, self.hparams.block_size)
        return self._tokenizer

    def _documents(self) -> dict[str, list[str]]:
        """``{"train": [...], "validation": [...]}`` pooled over the datasets, each shuffled with ``seed``."""
        hp = self.hparams
        rng = random.Random(hp.seed)
        pools: dict[str, list[str]] = {"train": [], "validation": []}
        for name in [hp.dataset] if isinstance(hp.dataset, str) else hp.dataset:
            splits = read_documents(name, hp.text_column, hp.hub_config)
            train = list(splits.get("train", []))
            if not train:
                raise ValueError(f"Dataset {name!r} has no train documents (splits: {sorted(splits)})")
            if "validation" in splits:
                held_out = list(splits["validation"])
            else:
                rng.shuffle(train)
                n_held = max(1, int(len(train) * hp.validation_fraction))
                held_out, train = train[:n_held], train[n_held:]
            pools["train"] += train
            pools["validation"] += held_out
        for documents in pools.values():
            rng.shuffle(documents)
        return pools

    def setup(self, stage: str | None = None) -> None:
        """Reads, shuffles and packs the documents (once)."""
        if self.blocks:
            return
        hp = self.hparams
        documents = self._documents()
        self.blocks = {
            "train": pack_blocks(documents["train"], self.tokenizer, hp.block_size, hp.max_train_blocks,
                                 desc="packing train"),
            "validation": pack_blocks(documents["validation"], self.tokenizer, hp.block_size, hp.max_eval_blocks,
                                      desc="packing validation"),
        }
        for split, blocks in self.blocks.items():
            if blocks.shape[0] == 0:
                raise ValueError(f"The {split} text of {hp.dataset!r} is shorter than one block of {hp.block_size} "
                                 "tokens: lower block_size or add text")

    def _loader(self, split: str, batch_size: int, shuffle: bool = False) -> DataLoader:
        self.setup()
        return DataLoader(BlockDataset(self.blocks[split]), batch_size=batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(self.hparams.seed) if shuffle else None,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.hparams.eval_batch_size or self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        """The held-out blocks (the same as validation)."""
        return self.val_dataloader()
