"""Batches of tokenised labelled examples: padding (the one collate function of training and evaluation) and
:class:`Examples`, a whole set of them as tensors."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

from ..tokens import pad_token_id


def padding_id(tokenizer) -> int:
    """The id batches are padded with: the pad token, else the end-of-sequence token (decoders); padded positions
    are masked anyway."""
    pad = pad_token_id(tokenizer)
    if pad is None:
        raise ValueError(f"Tokenizer {tokenizer.name_or_path!r} has neither a pad nor an eos token to pad with")
    return pad


def _pad(sequences: list[list[int]], value: int) -> torch.Tensor:
    """(B, longest) int64 tensor of the sequences, right-padded with ``value``."""
    out = torch.full((len(sequences), max(map(len, sequences))), value, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return out


@dataclass(frozen=True)
class PadCollator:
    """Pads tokenised examples to the longest in the batch, on the right.

    Returns ``input_ids`` (B, T) padded with ``pad_token_id``, ``attention_mask`` (B, T) with 1 on
    tokens and 0 on padding, ``labels`` (B,), and where the examples carry them ``word_ids`` (B, T)
    and ``rationale`` (B, W), padded with -1 (W: the most words of one text in the batch).
    """

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids = _pad([example["input_ids"] for example in examples], self.pad_token_id)
        lengths = torch.tensor([len(example["input_ids"]) for example in examples])
        batch = {
            "input_ids": input_ids,
            "attention_mask": (torch.arange(input_ids.shape[1]) < lengths[:, None]).long(),
            "labels": torch.tensor([example["labels"] for example in examples], dtype=torch.long),
        }
        for key in ("word_ids", "rationale"):
            if key in examples[0]:
                batch[key] = _pad([example[key] for example in examples], -1)
        return batch


@dataclass
class Examples:
    """Tokenised labelled examples.

    Attributes:
        input_ids, attention_mask: ``[n, seq]``.
        labels: ``[n]`` gold classes.
        word_ids: ``[n, seq]`` whitespace word of each token (-1: special token or padding), for rationale sets.
        rationale: ``[n, words]`` 1/0 per word (-1: no word there, or no rationale for the example).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    word_ids: torch.Tensor | None = None
    rationale: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @classmethod
    def from_batch(cls, batch: Mapping[str, torch.Tensor]) -> Examples:
        """From a collated batch (``input_ids``, ``attention_mask``, ``labels`` [, ``word_ids``, ``rationale``])."""
        return cls(batch["input_ids"], batch["attention_mask"], batch["labels"], batch.get("word_ids"),
                   batch.get("rationale"))

    @property
    def has_rationales(self) -> bool:
        return self.rationale is not None and self.word_ids is not None and bool((self.rationale > 0).any())

    def to(self, device: torch.device | str) -> Examples:
        return Examples(*(None if value is None else value.to(device)
                          for value in (getattr(self, f.name) for f in fields(self))))
