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
from collections.abc import Callable
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from transformers import PreTrainedTokenizerBase

from ..tokens import whitespace_word_ids
from .sources import DataSource

#: where a row of a split is, for messages: ``(split, row) -> "<file>, line <n>"`` (``DataSource.location``)
Locate = Callable[[str, int], str]

CACHE_FORMAT = 2
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


def _integral(value: Any) -> bool:
    """Whether a label value reads as a class id: an int (not a bool), a whole float or a string of digits."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) or str(value).strip().lstrip("-").isdigit()


def _where(locate: Locate | None, split: str, row: int) -> str:
    return locate(split, row) if locate is not None else f"row {row} of split {split!r}"


def check_columns(split: str, ds: datasets.Dataset, config: PrepareConfig, locate: Locate | None = None) -> None:
    """Raises ValueError unless ``ds`` has a string text column and a complete integer label column; the message
    names the first offending row (``locate``: where it is in the source)."""
    present = ds.column_names
    for column in (config.text_column, config.label_column):
        if column not in present:
            raise ValueError(f"Column {column!r} not found in split {split!r}; columns present: {present}")
    text_feature, label_feature = ds.features[config.text_column], ds.features[config.label_column]
    if not (isinstance(text_feature, datasets.Value) and text_feature.dtype in ("string", "large_string")):
        raise ValueError(
            f"Text column {config.text_column!r} in split {split!r} must hold strings, found {text_feature}"
        )
    labels = _column(ds, config.label_column)
    if not _is_integer(label_feature):
        values = labels.to_pylist()
        row = next(i for i, value in enumerate(values) if value is not None and not _integral(value))
        raise ValueError(
            f"{_where(locate, split, row)}: label {values[row]!r} is not an integer class id; label column "
            f"{config.label_column!r} must hold integers 0..N-1 (class names go in a "
            f"'{config.label_column}_name' column)"
        )
    if labels.null_count:
        row = labels.to_pylist().index(None)
        raise ValueError(f"{_where(locate, split, row)}: the label is missing; label column "
                         f"{config.label_column!r} has {labels.null_count} missing labels in split {split!r}")


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


def _first_rows(ds: datasets.Dataset, column: str) -> dict[int, int]:
    """``{label: source row of its first occurrence}``."""
    first: dict[int, int] = {}
    for label, row in zip(_column(ds, column).to_pylist(), _column(ds, SOURCE_ROW).to_pylist()):
        first.setdefault(label, row)
    return first


def build_splits(
    raw: dict[str, datasets.Dataset], tokenizer: PreTrainedTokenizerBase, config: PrepareConfig,
    locate: Locate | None = None,
) -> tuple[dict[str, datasets.Dataset], dict[str, Any]]:
    """Checks, cleans, splits, subsamples and tokenises ``raw``; returns the splits and their metadata.

    The metadata holds ``rows`` (per split, after subsampling), and per source split (before any
    carving or subsampling) ``empty_texts`` (rows dropped), ``labels`` (the distinct labels) and ``label_rows``
    (``[label, source row of its first occurrence]`` pairs), and ``label_names`` (``[label, name]`` pairs).
    ``locate`` says where a source row is, for the error messages.

    Raises:
        ValueError: bad columns (naming the row), or a split with no non-empty text.
    """
    cleaned, empty, labels, label_rows = {}, {}, {}, {}
    for split, ds in raw.items():
        check_columns(split, ds, config, locate)
        cleaned[split], empty[split] = drop_empty_texts(ds.add_column(SOURCE_ROW, range(len(ds))), config.text_column)
        if not len(cleaned[split]):
            first = f" (the first: {_where(locate, split, 0)})" if len(ds) else ""
            raise ValueError(f"The dataset has no examples left after skipping empty texts: all {len(ds)} rows of "
                             f"split {split!r} have an empty {config.text_column!r}{first}")
        labels[split] = _distinct(cleaned[split], config.label_column)
        label_rows[split] = sorted(_first_rows(cleaned[split], config.label_column).items())
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
        "label_rows": label_rows,
        "label_names": _label_name_pairs(cleaned, config.label_column),
    }
    return tokenised, meta


def resolve_labels(meta: dict[str, Any], num_labels: int | None, locate: Locate | None = None
                   ) -> tuple[int, list[str] | None]:
    """Checks the labels against ``num_labels``: when None, the number of distinct labels the data has (so labels
    must be numbered 0..N-1; one stray ``5`` in binary data, or labels counted from 1, is an error, not a model with
    more classes); when given, labels must lie in 0..num_labels-1 and the largest be num_labels-1.

    Returns the number of classes and the class names when the data names every class. Errors name the first row
    holding an offending label (``locate``: where it is in the source).
    """
    found = sorted({label for labels in meta["labels"].values() for label in labels})
    if not found:
        raise ValueError("The dataset has no examples left after skipping empty texts")
    expected = len([label for label in found if label >= 0]) if num_labels is None else num_labels
    for split, pairs in meta["label_rows"].items():
        outside = [(label, row) for label, row in pairs if not 0 <= label < expected]
        if outside:
            label, row = outside[0]
            reason = (f"the data has {expected} distinct labels {found}, so class ids must be 0..{expected - 1}; "
                      "renumber the labels 0..N-1, or set num_labels (model.num_labels) if some classes have no "
                      "examples" if num_labels is None else f"num_labels={num_labels}")
            raise ValueError(f"{_where(locate, split, row)}: label {label} is outside 0..{expected - 1} ({reason})")
    if max(found) + 1 != expected:
        raise ValueError(
            f"num_labels={num_labels} does not match the data: the labels found are {found} ({max(found) + 1} classes)"
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
        splits, meta = build_splits(source.load(), tokenizer, config, source.location)
        _save_atomically(path, splits, meta)
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """The metadata stored in a cache folder (see :func:`build_splits`)."""
    return json.loads((path / META_FILE).read_text())


def load_cached(path: Path) -> dict[str, datasets.Dataset]:
    """The tokenised splits stored in a cache folder, memory-mapped."""
    return {split: datasets.load_from_disk(str(path / split)) for split in read_meta(path)["rows"]}
