"""One labelled split for an evaluation, read and tokenised exactly as the training data module does it (the same
source resolution, column checks, empty-text rule, tokenisation and padding), so that the validation-epoch callback
and ``python -m bcos.evaluate`` score the same token ids."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from .batches import Examples, PadCollator, padding_id
from .processing import SOURCE_ROW, PrepareConfig, check_columns, drop_empty_texts, drop_unlabelled, tokenize
from .sources import FileSource, resolve_source


@dataclass(frozen=True)
class Columns:
    """Where the text, the integer label and the per-word rationale (optional) are."""

    text: str = "text"
    label: str = "label"
    rationale: str | None = "rationale"


@dataclass(frozen=True)
class Split:
    """The usable rows of one split.

    Attributes:
        rows: the rows (``source_row``: the row number in the split's source, from 0), in file order; all usable
            rows, or the stratified sample ``sampling`` describes.
        source: where they came from (a file path, or the Hub id).
        skipped: rows of the split left out: ``empty_texts`` and ``unlabelled`` (label < 0).
        sampling: None (every usable row), or how ``rows`` were drawn: ``max_examples``, ``seed``, ``strategy``,
            ``per_class`` (label -> rows drawn) and ``available`` (usable rows before sampling).
    """

    rows: datasets.Dataset
    columns: Columns
    source: str
    skipped: dict[str, int]
    sampling: dict[str, Any] | None = None

    def check_labels(self, num_classes: int, who: str = "the model") -> None:
        """Raises ValueError naming the source and the first rows whose label is not a class id of a
        ``num_classes``-class model (rows counted from 1, a CSV's header not counted)."""
        labels = np.asarray(self.rows[self.columns.label])
        outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if len(outside):
            shown = ", ".join(f"row {self.rows[int(i)][SOURCE_ROW] + 1}: {labels[i]}" for i in outside[:5])
            more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
            raise ValueError(f"{self.source}: {len(outside)} label(s) in column {self.columns.label!r} are not class "
                             f"ids 0..{num_classes - 1} of {who} ({shown}{more}); fix the labels or evaluate a "
                             f"model with the data's classes")


def read_split(dataset: str, split: str, max_examples: int | None = None, columns: Columns = Columns(),
               seed: int = 0) -> Split:
    """The usable rows (non-empty text, label ≥ 0) of ``split`` of ``dataset`` (a named set, a folder of split
    files, or one file used as that split; see :func:`bcos.data.sources.resolve_source`); with ``max_examples``
    a sample of that many rows stratified by label (see :func:`stratified_sample`), kept in file order.

    Raises:
        ValueError: an unknown dataset or split, bad columns (naming the file), or no usable row left (an empty
            split).
    """
    try:
        source = resolve_source(dataset, split)
    except FileNotFoundError as error:
        raise ValueError(f"split {split!r} of dataset {dataset!r} not found: {error}") from error
    splits = source.load()
    if split not in splits:
        raise ValueError(f"split {split!r} of dataset {dataset!r} not found; available splits: {sorted(splits)}")
    raw = splits[split]
    where = str(source.files[split]) if isinstance(source, FileSource) else source.spec.hub_id
    check_columns(split, raw, _config(columns, 1), source.location)
    rows, empty, unlabelled = _usable(raw.add_column(SOURCE_ROW, range(len(raw))), columns)
    if not len(rows):
        raise ValueError(f"split {split!r} of dataset {dataset!r} has no examples with a non-empty text and a label "
                         "(empty split)")
    sampling = None
    if max_examples is not None and max_examples < len(rows):
        labels = np.asarray(rows[columns.label])
        chosen = stratified_sample(labels, max_examples, seed)
        sampling = {"max_examples": max_examples, "seed": seed, "strategy": "stratified by label, proportional "
                    "(largest remainder), rows drawn per class with numpy.random.default_rng(seed), kept in file order",
                    "available": len(rows),
                    "per_class": {int(label): int(count) for label, count in
                                  zip(*np.unique(labels[chosen], return_counts=True))}}
        rows = rows.select(chosen)
    return Split(rows, columns, where, {"empty_texts": empty, "unlabelled": unlabelled}, sampling)


def stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` of the ``labels [n]`` drawn without replacement, each class getting its
    proportional share (floors, then the largest remainders; ties to the lower class id), at least one row of every
    class when ``size`` allows. Rows of a class are drawn by ``numpy.random.default_rng(seed).permutation``, class
    by class in increasing label order."""
    classes, counts = np.unique(labels, return_counts=True)
    if size >= len(labels):
        return np.arange(len(labels))
    share = counts * size / len(labels)
    quota = np.floor(share).astype(int)
    if size >= len(classes):
        quota = np.maximum(quota, 1)
    remainder = share - np.floor(share)
    for index in sorted(range(len(classes)), key=lambda i: (-remainder[i], i)):
        if quota.sum() >= size:
            break
        if quota[index] < counts[index]:
            quota[index] += 1
    while quota.sum() > size:  # the minimum of one per class overshot: take back from the largest quotas
        quota[int(np.argmax(quota))] -= 1
    rng = np.random.default_rng(seed)
    chosen = [np.flatnonzero(labels == label)[rng.permutation(count)[:take]]
              for label, count, take in zip(classes, counts, quota)]
    return np.sort(np.concatenate(chosen))


def _usable(rows: datasets.Dataset, columns: Columns) -> tuple[datasets.Dataset, int, int]:
    """The rows with a non-empty text and a label, and how many had an empty text, how many of the rest no label."""
    rows, empty = drop_empty_texts(rows, columns.text)
    rows, unlabelled = drop_unlabelled(rows, columns.label)
    return rows, empty, unlabelled


def _config(columns: Columns, max_length: int) -> PrepareConfig:
    return PrepareConfig(text_column=columns.text, label_column=columns.label, rationale_column=columns.rationale,
                         max_length=max_length, validation_fraction=0.5, train_subset=None, eval_subset=None, seed=0)


def tokenize_split(split: Split, tokenizer, max_length: int) -> Examples:
    """The rows tokenised (truncated to ``max_length``) and padded on the right into :class:`Examples`, with
    ``word_ids`` and ``rationale`` when the rows have a rationale column."""
    tokenised = tokenize(split.rows, tokenizer, _config(split.columns, max_length))
    return Examples.from_batch(PadCollator(padding_id(tokenizer))(list(tokenised)))
