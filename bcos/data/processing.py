"""Cleaning, splitting, subsampling and tokenising the raw splits, with the result cached on disk.

Each tokenised split has the columns ``input_ids`` (list of ids, truncated to ``max_length``),
``labels`` (int), ``source_row`` (the row number in the source split file; for a validation split
carved from train, the row in train) and, when the data has a rationale column, ``word_ids`` (per
token, the index of the whitespace-separated word it belongs to, -1 for special tokens) and
``rationale`` (per word, 0/1; -1 for every word where the row has no rationale).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from transformers import PreTrainedTokenizerBase

from ..tokens import whitespace_word_ids
from .sources import DataSource

CACHE_FORMAT = 1
META_FILE = "meta.json"
SOURCE_ROW = "source_row"


@dataclass(frozen=True)
class PrepareConfig:
    """Everything besides the source and the tokenizer that determines the tokenised splits."""

    text_column: str
    label_column: str
    rationale_column: str | None
    max_length: int
    validation_fraction: float
    train_subset: int | None
    eval_subset: int | None
    seed: int


def _column(ds: datasets.Dataset, column: str) -> pa.ChunkedArray:
    """One column as Arrow data, honouring a selection of rows."""
    return ds.select_columns([column]).with_format("arrow")[:][column]


def _distinct(ds: datasets.Dataset, column: str) -> list:
    """The sorted distinct values of a column."""
    return sorted(pc.unique(_column(ds, column)).to_pylist())


def _is_integer(feature: Any) -> bool:
    return isinstance(feature, datasets.ClassLabel) or (
        isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))
    )


def _first_non_integer(ds: datasets.Dataset, column: str) -> str:
    """``" (row N: value)"`` for the first row (counted from 1) whose value is not an integer, else ``""``."""
    for row, value in enumerate(_column(ds, column).to_pylist(), 1):
        integral = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
        if value is not None and not integral:
            return f" (row {row}: {value!r})"
    return ""


def check_columns(split: str, ds: datasets.Dataset, config: PrepareConfig) -> None:
    """Raises ValueError unless ``ds`` has a string text column and a complete integer label column."""
    present = ds.column_names
    for column in (config.text_column, config.label_column):
        if column not in present:
            raise ValueError(f"Column {column!r} not found in split {split!r}; columns present: {present}")
    text_feature, label_feature = ds.features[config.text_column], ds.features[config.label_column]
    if not (isinstance(text_feature, datasets.Value) and text_feature.dtype in ("string", "large_string")):
        raise ValueError(
            f"Text column {config.text_column!r} in split {split!r} must hold strings, found {text_feature}"
        )
    if not _is_integer(label_feature):
        raise ValueError(
            f"Label column {config.label_column!r} in split {split!r} must hold integer class ids, "
            f"found {label_feature}{_first_non_integer(ds, config.label_column)}"
        )
    missing = _column(ds, config.label_column).null_count
    if missing:
        raise ValueError(f"Label column {config.label_column!r} in split {split!r} has {missing} missing labels")


def drop_empty_texts(ds: datasets.Dataset, text_column: str) -> tuple[datasets.Dataset, int]:
    """Drops rows whose text is missing or only whitespace; returns the rest and how many were dropped."""
    texts = _column(ds, text_column)
    non_empty = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0), False)
    keep = np.flatnonzero(non_empty.to_numpy(zero_copy_only=False))
    return ds.select(keep), len(ds) - len(keep)


def drop_unlabelled(ds: datasets.Dataset, label_column: str) -> tuple[datasets.Dataset, int]:
    """Drops rows whose label is negative (unlabelled, as GLUE's hidden test labels); returns the rest and how
    many were dropped."""
    labelled = pc.fill_null(pc.greater_equal(_column(ds, label_column), 0), False)
    keep = np.flatnonzero(labelled.to_numpy(zero_copy_only=False))
    return ds.select(keep), len(ds) - len(keep)


def carve_validation(
    train: datasets.Dataset, fraction: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Splits ``train`` into (train, validation) by a permutation drawn with ``seed``; both keep row order."""
    n_validation = max(1, round(fraction * len(train)))
    order = np.random.default_rng(seed).permutation(len(train))
    return train.select(np.sort(order[n_validation:])), train.select(np.sort(order[:n_validation]))


def subsample(ds: datasets.Dataset, size: int | None, seed: int) -> datasets.Dataset:
    """At most ``size`` rows drawn without replacement with ``seed``, in their original order."""
    if size is None or size >= len(ds):
        return ds
    return ds.select(np.sort(np.random.default_rng(seed).permutation(len(ds))[:size]))


def _word_rationale(flags: list[int] | None, n_words: int, row: int) -> list[int]:
    """The 0/1 flags per word, checked against the word count; all -1 when the row has none."""
    if flags is None:
        return [-1] * n_words
    if len(flags) != n_words:
        raise ValueError(f"Rationale of source row {row} has {len(flags)} flags but its text has {n_words} words")
    return list(flags)


def tokenize(ds: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, config: PrepareConfig) -> datasets.Dataset:
    """Tokenises without padding (see the module docstring for the resulting columns)."""
    with_words = config.rationale_column is not None and config.rationale_column in ds.column_names
    wanted = [config.text_column, config.label_column, SOURCE_ROW] + ([config.rationale_column] if with_words else [])
    rows = ds.select_columns(wanted).to_dict()
    texts = rows[config.text_column]
    encoded = tokenizer(
        texts,
        truncation=True,
        max_length=config.max_length,
        return_offsets_mapping=with_words,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    out = {"input_ids": encoded["input_ids"], "labels": rows[config.label_column], SOURCE_ROW: rows[SOURCE_ROW]}
    if with_words:
        out["word_ids"] = [whitespace_word_ids(t, o) for t, o in zip(texts, encoded["offset_mapping"])]
        out["rationale"] = [
            _word_rationale(flags, len(text.split()), row)
            for flags, text, row in zip(rows[config.rationale_column], texts, rows[SOURCE_ROW])
        ]
    return datasets.Dataset.from_dict(out)


def _label_name_pairs(splits: dict[str, datasets.Dataset], label_column: str) -> list[tuple[int, str]]:
    """Sorted ``(label, name)`` pairs from the ``<label_column>_name`` column, where the data has one."""
    name_column = f"{label_column}_name"
    pairs = set()
    for ds in splits.values():
        if name_column in ds.column_names:
            table = ds.select_columns([label_column, name_column]).with_format("arrow")[:]
            unique = table.group_by([label_column, name_column]).aggregate([])
            pairs |= set(zip(unique[label_column].to_pylist(), unique[name_column].to_pylist()))
    return sorted((label, name) for label, name in pairs if name is not None)


def build_splits(
    raw: dict[str, datasets.Dataset], tokenizer: PreTrainedTokenizerBase, config: PrepareConfig
) -> tuple[dict[str, datasets.Dataset], dict[str, Any]]:
    """Checks, cleans, splits, subsamples and tokenises ``raw``; returns the splits and their metadata.

    The metadata holds ``rows`` (per split, after subsampling), and per source split (before any
    carving or subsampling) ``empty_texts`` (rows dropped) and ``labels`` (the distinct labels), and
    ``label_names`` (``[label, name]`` pairs).
    """
    cleaned, empty, labels = {}, {}, {}
    for split, ds in raw.items():
        check_columns(split, ds, config)
        cleaned[split], empty[split] = drop_empty_texts(ds.add_column(SOURCE_ROW, range(len(ds))), config.text_column)
        labels[split] = _distinct(cleaned[split], config.label_column)
    if "validation" not in cleaned:
        cleaned["train"], cleaned["validation"] = carve_validation(
            cleaned["train"], config.validation_fraction, config.seed
        )
    tokenised = {
        split: tokenize(
            subsample(ds, config.train_subset if split == "train" else config.eval_subset, config.seed),
            tokenizer,
            config,
        )
        for split, ds in cleaned.items()
    }
    meta = {
        "rows": {split: len(ds) for split, ds in tokenised.items()},
        "empty_texts": empty,
        "labels": labels,
        "label_names": _label_name_pairs(cleaned, config.label_column),
    }
    return tokenised, meta


def resolve_labels(meta: dict[str, Any], num_labels: int | None) -> tuple[int, list[str] | None]:
    """Checks the labels against ``num_labels`` (inferred as max label + 1 when None).

    Returns the number of classes and the class names when the data names every class.
    """
    found = sorted({label for labels in meta["labels"].values() for label in labels})
    if not found:
        raise ValueError("The dataset has no examples left after skipping empty texts")
    inferred = max(found) + 1
    expected = inferred if num_labels is None else num_labels
    for split, labels in meta["labels"].items():
        outside = [label for label in labels if not 0 <= label < expected]
        if outside:
            raise ValueError(f"Labels outside 0..{expected - 1} in split {split!r}: {outside}")
    if expected != inferred:
        raise ValueError(
            f"num_labels={num_labels} does not match the data: the labels found are {found} ({inferred} classes)"
        )
    names = dict(meta["label_names"])
    return expected, [names[label] for label in range(expected)] if set(names) >= set(range(expected)) else None


def tokenizer_signature(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of the fast tokenizer's full definition (vocabulary, normaliser, special tokens)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def cache_path(
    root: Path, source: DataSource, tokenizer_name: str, tokenizer: PreTrainedTokenizerBase, config: PrepareConfig
) -> Path:
    """The cache folder for these inputs: a readable name plus a hash of source, tokenizer and config."""
    key = {
        "format": CACHE_FORMAT,
        "source": source.signature(),
        "tokenizer": tokenizer_signature(tokenizer),
        "config": dataclasses.asdict(config),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return root / f"{source.name}-{Path(tokenizer_name).name}-len{config.max_length}-{digest}"


def _save_atomically(path: Path, splits: dict[str, datasets.Dataset], meta: dict[str, Any]) -> None:
    """Writes into a temporary folder renamed at the end, so a cache folder is always complete."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    for split, ds in splits.items():
        ds.save_to_disk(str(tmp / split))
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
    try:
        tmp.rename(path)
    except OSError:  # another process finished the same cache first
        shutil.rmtree(tmp)


def prepare_cached(
    root: Path, source: DataSource, tokenizer_name: str, tokenizer: PreTrainedTokenizerBase, config: PrepareConfig
) -> Path:
    """Returns the cache folder for these inputs, building it first when it does not exist."""
    path = cache_path(root, source, tokenizer_name, tokenizer, config)
    if not path.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        splits, meta = build_splits(source.load(), tokenizer, config)
        _save_atomically(path, splits, meta)
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """The metadata stored in a cache folder (see :func:`build_splits`)."""
    return json.loads((path / META_FILE).read_text())


def load_cached(path: Path) -> dict[str, datasets.Dataset]:
    """The tokenised splits stored in a cache folder, memory-mapped."""
    return {split: datasets.load_from_disk(str(path / split)) for split in read_meta(path)["rows"]}
