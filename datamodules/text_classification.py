"""A LightningDataModule for text classification: tokenised once, cached on disk, padded per batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerBase

from bcos.cli.common import DEFAULT_MAX_LENGTH
from bcos.data import PadCollator, PrepareConfig, load_cached, padding_id, prepare_cached, read_meta, resolve_labels
from bcos.data.sources import resolve_source

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "bcos-lm" / "datasets"


def load_checked_tokenizer(name_or_path: str, max_length: int) -> PreTrainedTokenizerBase:
    """Loads a fast tokenizer through ``bcos.hub`` and checks that ``max_length`` is within its limit."""
    from bcos.hub import load_tokenizer

    tokenizer = load_tokenizer(name_or_path)
    if not tokenizer.is_fast:
        raise ValueError(f"Tokenizer {name_or_path!r} is not a fast tokenizer; word ids need its character offsets")
    if max_length > tokenizer.model_max_length:
        raise ValueError(
            f"max_length={max_length} exceeds the limit of tokenizer {name_or_path!r}: "
            f"model_max_length={tokenizer.model_max_length}"
        )
    return tokenizer


def _check_arguments(values: dict[str, Any]) -> None:
    """Raises ValueError for non-positive sizes and a validation fraction outside (0, 1)."""
    for name in ("max_length", "batch_size", "eval_batch_size", "train_subset", "eval_subset", "num_labels"):
        if values[name] is not None and values[name] < 1:
            raise ValueError(f"{name} must be at least 1, got {values[name]}")
    if values["num_workers"] < 0:
        raise ValueError(f"num_workers must be at least 0, got {values['num_workers']}")
    if not 0 < values["validation_fraction"] < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {values['validation_fraction']}")


@dataclass(frozen=True)
class _Prepared:
    path: Path
    num_labels: int
    label_names: list[str] | None


class TextClassificationDataModule(LightningDataModule):
    """Tokenised text-classification splits with dynamic padding.

    Data: a named set (``sst2``, ``imdb``, ``ag_news``, ``hatexplain``) read from
    ``$BCOS_DATA_DIR/<name>/{train,validation,test}.jsonl`` when that folder exists, else from the
    Hugging Face Hub; or a path to one CSV/JSONL file (used as train) or to a folder of
    ``{train,validation,test}.{jsonl,csv}``. Where there is no validation split (IMDB, AG News, a
    single file) one is carved from train with ``seed``. Labels must be integers 0..num_labels-1.

    **Empty texts** (missing, or only whitespace) are skipped, and a warning states how many per split.

    The splits are tokenised once (truncated to ``max_length``) and cached under ``cache_dir`` in a
    folder keyed by the dataset (for files: path, size and modification time), the tokenizer, and
    every argument that changes the content. Batches (see :class:`PadCollator`): ``input_ids`` (B, T),
    ``attention_mask`` (B, T), ``labels`` (B,), and for data with a rationale column (HateXplain)
    ``word_ids`` (B, T), the whitespace word of each token, and ``rationale`` (B, W), 0/1 per word.

    Attributes (loaded on first use, at the latest by ``prepare_data()``/``setup()``): ``num_labels``,
    ``label_names`` (None unless the data has a ``<label_column>_name`` column or Hub class names),
    ``tokenizer``, and after ``setup()`` ``datasets``, the tokenised splits by name.

    Args:
        dataset: a named set, or a path to a CSV/JSONL file or a folder of split files.
        tokenizer: a model name or path, loaded through ``bcos.hub.load_tokenizer``; must be a fast tokenizer.
        text_column: column holding the text.
        label_column: column holding the integer class id.
        rationale_column: column of per-word 0/1 rationales (whitespace words of the text), carried
            into batches when the data has it; None to ignore it.
        num_labels: number of classes; when None, the number of distinct labels (labels outside 0..N-1 are an
            error naming the file and line), checked when given.
        max_length: truncation length in tokens; at most the tokenizer's ``model_max_length``. Recorded in the
            checkpoints and the Hugging Face export, where the commands take it as their ``--max-length`` default.
        batch_size: training batch size.
        eval_batch_size: validation/test/predict batch size; ``batch_size`` when None.
        num_workers: DataLoader worker processes.
        validation_fraction: share of train carved out as validation when there is no validation split.
        train_subset: keep this many train rows (drawn with ``seed``); all when None.
        eval_subset: keep this many rows of every other split (drawn with ``seed``); all when None.
        test_split: the split used by ``test_dataloader`` and ``predict_dataloader``.
        seed: seed of the validation carve, the subsets and the training shuffle.
        cache_dir: where tokenised splits are cached; ``~/.cache/bcos-lm/datasets`` when None.
    """

    #: the option that bounds the tokens of one example (checked against the model's positions)
    sequence_length_option = "max_length"

    def __init__(
        self,
        dataset: str,
        tokenizer: str,
        text_column: str = "text",
        label_column: str = "label",
        rationale_column: str | None = "rationale",
        num_labels: int | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        validation_fraction: float = 0.1,
        train_subset: int | None = None,
        eval_subset: int | None = None,
        test_split: str = "test",
        seed: int = 42,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        _check_arguments(locals())
        self.save_hyperparameters()
        self.datasets: dict[str, datasets.Dataset] = {}
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._prepared: _Prepared | None = None

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = load_checked_tokenizer(self.hparams.tokenizer, self.hparams.max_length)
        return self._tokenizer

    @property
    def num_labels(self) -> int:
        return self._prepare().num_labels

    @property
    def label_names(self) -> list[str] | None:
        return self._prepare().label_names

    def _config(self) -> PrepareConfig:
        hp = self.hparams
        return PrepareConfig(
            text_column=hp.text_column,
            label_column=hp.label_column,
            rationale_column=hp.rationale_column,
            max_length=hp.max_length,
            validation_fraction=hp.validation_fraction,
            train_subset=hp.train_subset,
            eval_subset=hp.eval_subset,
            seed=hp.seed,
        )

    def _prepare(self) -> _Prepared:
        """Builds (or finds) the cache, warns about skipped empty texts, and checks the labels."""
        if self._prepared is None:
            root = Path(self.hparams.cache_dir).expanduser() if self.hparams.cache_dir else DEFAULT_CACHE_DIR
            source = resolve_source(self.hparams.dataset)
            path = prepare_cached(root, source, self.hparams.tokenizer, self.tokenizer, self._config())
            meta = read_meta(path)
            for split, count in meta["empty_texts"].items():
                if count:
                    dataset = self.hparams.dataset
                    rank_zero_warn(f"Skipped {count} empty texts in split {split!r} of dataset {dataset!r}")
            self._prepared = _Prepared(path, *resolve_labels(meta, self.hparams.num_labels, source.location))
        return self._prepared

    def prepare_data(self) -> None:
        """Tokenises and caches every split (Lightning runs this on one process per node)."""
        self._prepare()

    def setup(self, stage: str | None = None) -> None:
        """Loads every cached split (memory-mapped), whatever the stage."""
        self.datasets = load_cached(self._prepare().path)

    def _loader(self, split: str, batch_size: int, shuffle: bool = False) -> DataLoader:
        if not self.datasets:
            self.setup()
        if split not in self.datasets:
            raise ValueError(
                f"Split {split!r} is not available for dataset {self.hparams.dataset!r}; "
                f"available: {sorted(self.datasets)}"
            )
        dataset = self.datasets[split]
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=None if shuffle else self._evaluation_shard_sampler(dataset),
            generator=torch.Generator().manual_seed(self.hparams.seed) if shuffle else None,
            collate_fn=PadCollator(padding_id(self.tokenizer)),
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def _evaluation_shard_sampler(self, dataset: Dataset) -> UnrepeatedDistributedSampler | None:
        """Under multi-process training, each process evaluates a disjoint shard and no example is repeated, so
        metrics synced across processes count every example exactly once (Lightning's default distributed
        sampler pads the last shard with duplicates). ``None`` (the plain sequential order) otherwise."""
        trainer = self.trainer
        if trainer is None or trainer.world_size <= 1:
            return None
        return UnrepeatedDistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                            shuffle=False)

    @property
    def _eval_batch_size(self) -> int:
        return self.hparams.eval_batch_size or self.hparams.batch_size

    def train_dataloader(self) -> DataLoader:
        """Shuffled with a generator seeded by ``seed``."""
        return self._loader("train", self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self._eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.hparams.test_split, self._eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """The ``test_split`` split, in order."""
        return self._loader(self.hparams.test_split, self._eval_batch_size)
