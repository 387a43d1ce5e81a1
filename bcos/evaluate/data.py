"""Evaluation data without Lightning: a split read from JSON Lines and tokenised into :class:`Examples`.

Named sets are read from ``$BCOS_DATA_DIR/<name>/<split>.jsonl`` (the layout of ``datamodules``); a path to a
folder of ``<split>.jsonl`` files or to one ``.jsonl`` file works too. Rows need ``text`` and an integer ``label``;
a ``rationale`` column (0/1 per whitespace word, HateXplain) is carried into the examples with token ``word_ids``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..explain.words import whitespace_word_ids
from .core import Examples

DATA_DIR_ENV = "BCOS_DATA_DIR"
NAMED_DATASETS = ("sst2", "imdb", "ag_news", "hatexplain")


def split_file(dataset: str, split: str) -> Path:
    """The JSONL file of ``split`` of ``dataset`` (a named set, a folder, or a ``.jsonl`` file used as it is)."""
    path = Path(dataset)
    if dataset not in NAMED_DATASETS:
        if path.suffix == ".jsonl" and path.is_file():
            return path
        if not path.is_dir():
            raise ValueError(f"unknown dataset {dataset!r} (not a named dataset, and no such folder or .jsonl file); "
                             f"known datasets: {', '.join(NAMED_DATASETS)} (read from "
                             f"${DATA_DIR_ENV}/<name>/<split>.jsonl)")
    else:
        if not os.environ.get(DATA_DIR_ENV):
            raise ValueError(f"dataset {dataset!r} is read from ${DATA_DIR_ENV}/{dataset}/<split>.jsonl, but "
                             f"{DATA_DIR_ENV} is not set")
        path = Path(os.environ[DATA_DIR_ENV]) / dataset
    file = path / f"{split}.jsonl"
    if not file.is_file():
        available = sorted(p.stem for p in path.glob("*.jsonl")) if path.is_dir() else []
        raise ValueError(f"split {split!r} of dataset {dataset!r} not found: no {file}; available splits: "
                         f"{', '.join(available) or 'none'}")
    return file


def read_rows(file: Path, max_examples: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The first ``max_examples`` usable rows of ``file`` (non-empty text, label ≥ 0) and how many were skipped
    before the last one kept.

    Raises:
        ValueError: when no usable row is left (an empty split).
    """
    rows, skipped = [], 0
    with file.open(encoding="utf-8") as lines:
        for line in lines:
            if max_examples is not None and len(rows) == max_examples:
                break
            if not line.strip():
                continue
            row = json.loads(line)
            if str(row.get("text") or "").strip() and int(row.get("label", -1)) >= 0:
                rows.append(row)
            else:
                skipped += 1
    if not rows:
        raise ValueError(f"{file} has no examples with a non-empty text and a label (empty split)")
    return rows, skipped


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), value, dtype=torch.long)
    for index, row in enumerate(rows):
        out[index, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def tokenize_rows(rows: list[dict[str, Any]], tokenizer, max_length: int) -> Examples:
    """Tokenise ``rows`` (truncated to ``max_length``, right-padded) into :class:`Examples`; with ``word_ids`` and
    ``rationale`` when every row has a ``rationale``."""
    texts = [row["text"] for row in rows]
    with_rationales = all(isinstance(row.get("rationale"), list) for row in rows)
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=with_rationales)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = _pad(encoded["input_ids"], pad)
    lengths = torch.tensor([len(ids) for ids in encoded["input_ids"]])
    examples = Examples(input_ids, (torch.arange(input_ids.shape[1]) < lengths[:, None]).long(),
                        torch.tensor([int(row["label"]) for row in rows]))
    if with_rationales:
        examples.word_ids = _pad([whitespace_word_ids(t, o) for t, o in zip(texts, encoded["offset_mapping"])], -1)
        examples.rationale = _pad([[int(flag) for flag in row["rationale"]] for row in rows], -1)
    return examples
