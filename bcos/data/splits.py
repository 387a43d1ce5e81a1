"""One labelled split for an evaluation, read and tokenised exactly as the training data module does it (the same
source resolution, column checks, empty-text rule, tokenisation and padding), so that the validation-epoch callback
and ``python -m bcos.evaluate`` score the same token ids."""
from __future__ import annotations

from dataclasses import dataclass

import datasets

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
        rows: the rows (``source_row``: the row number in the split's source), at most ``max_examples``.
        source: where they came from (a file path, or the Hub id).
        skipped: rows left out before the last one kept: ``empty_texts`` and ``unlabelled`` (label < 0).
    """

    rows: datasets.Dataset
    columns: Columns
    source: str
    skipped: dict[str, int]


def read_split(dataset: str, split: str, max_examples: int | None = None, columns: Columns = Columns()) -> Split:
    """The first ``max_examples`` usable rows (non-empty text, label ≥ 0) of ``split`` of ``dataset`` (a named
    set, a folder of split files, or one file used as that split; see :func:`bcos.data.sources.resolve_source`).

    Raises:
        ValueError: an unknown dataset or split, bad columns, or no usable row left (an empty split).
    """
    try:
        source = resolve_source(dataset, split)
    except FileNotFoundError as error:
        raise ValueError(f"split {split!r} of dataset {dataset!r} not found: {error}") from error
    splits = source.load()
    if split not in splits:
        raise ValueError(f"split {split!r} of dataset {dataset!r} not found; available splits: {sorted(splits)}")
    raw = splits[split]
    check_columns(split, raw, _config(columns, 1), source.location)
    rows = _usable(raw.add_column(SOURCE_ROW, range(len(raw))), columns)[0]
    if max_examples is not None:
        rows = rows.select(range(min(max_examples, len(rows))))
    if not len(rows):
        raise ValueError(f"split {split!r} of dataset {dataset!r} has no examples with a non-empty text and a label "
                         "(empty split)")
    _, empty, unlabelled = _usable(raw.select(range(rows[-1][SOURCE_ROW] + 1)), columns)
    where = str(source.files[split]) if isinstance(source, FileSource) else source.spec.hub_id
    return Split(rows, columns, where, {"empty_texts": empty, "unlabelled": unlabelled})


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
