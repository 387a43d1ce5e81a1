"""Where the raw splits of a text-classification dataset come from, and loading them.

A dataset is either one of the named sets in :data:`HUB_DATASETS`, read from
``$BCOS_DATA_DIR/<name>/{train,validation,test}.jsonl`` when that folder exists and from the Hugging
Face Hub otherwise, or a path to one CSV/JSONL file (the train split) or to a folder holding
``{train,validation,test}.{jsonl,csv}``. Every source yields the local layout: one
:class:`datasets.Dataset` per split with the columns of the files, and for the Hub sets ``text``,
``label``, ``label_name`` (and for HateXplain ``tokens`` and ``rationale``).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow
import pyarrow.csv
import pyarrow.json

DATA_DIR_ENV = "BCOS_DATA_DIR"
SPLITS = ("train", "validation", "test")
HATEXPLAIN_LABELS = ("hatespeech", "normal", "offensive")  # the official label codes 0, 1, 2
FILE_SUFFIXES = (".jsonl", ".csv")


def _add_label_names(ds: datasets.Dataset) -> datasets.Dataset:
    """Adds a ``label_name`` column from the names of the ``label`` ClassLabel feature."""
    names = ds.features["label"].names
    return ds.map(
        lambda batch: {"label_name": [names[i] if i >= 0 else None for i in batch["label"]]},
        batched=True,
        keep_in_memory=True,
    )


def _sst2_from_hub(ds: datasets.Dataset) -> datasets.Dataset:
    """GLUE SST-2 calls its text column ``sentence``."""
    return _add_label_names(ds.rename_column("sentence", "text"))


def _hatexplain_row(row: dict[str, Any]) -> dict[str, Any]:
    """Majority label over annotators (-1 when all differ) and rationale = mean annotator mask > 0.5."""
    tokens, annotators = row["post_tokens"], row["annotators"]
    labels = annotators["label"] if isinstance(annotators, dict) else [entry["label"] for entry in annotators]
    (label, votes), = Counter(labels).most_common(1)
    masks = row["rationales"]
    rationale = [int(sum(mask[i] for mask in masks) > len(masks) / 2) for i in range(len(tokens))]
    return {
        "text": " ".join(tokens),
        "tokens": tokens,
        "label": label if votes > 1 else -1,
        "rationale": rationale,
    }


def _hatexplain_from_hub(ds: datasets.Dataset) -> datasets.Dataset:
    """Converts the Hub's per-annotator format to the local one, dropping posts without a majority."""
    converted = ds.map(_hatexplain_row, remove_columns=ds.column_names, keep_in_memory=True)
    labelled = converted.filter(lambda row: row["label"] >= 0, keep_in_memory=True)
    return labelled.map(lambda row: {"label_name": HATEXPLAIN_LABELS[row["label"]]}, keep_in_memory=True)


@dataclass(frozen=True)
class HubDataset:
    """A named dataset on the Hugging Face Hub: its id, its labelled splits, the conversion to the local layout."""

    hub_id: str
    splits: tuple[str, ...]
    convert: Callable[[datasets.Dataset], datasets.Dataset] = _add_label_names


HUB_DATASETS: dict[str, HubDataset] = {
    # GLUE hides the SST-2 test labels (all -1), so only train and validation are labelled.
    "sst2": HubDataset("stanfordnlp/sst2", ("train", "validation"), _sst2_from_hub),
    "imdb": HubDataset("stanfordnlp/imdb", ("train", "test")),
    "ag_news": HubDataset("fancyzhx/ag_news", ("train", "test")),
    "hatexplain": HubDataset("Hate-speech-CNERG/hatexplain", SPLITS, _hatexplain_from_hub),
}


def _read_file(path: Path) -> datasets.Dataset:
    """Reads one JSON Lines or CSV file into an in-memory Dataset.

    Raises:
        ValueError: the file cannot be parsed; the message names the file and the line (invalid UTF-8, a line that
            is not a JSON object, a column whose type changes, a CSV row with another number of fields).
    """
    reader = pyarrow.json.read_json if path.suffix == ".jsonl" else pyarrow.csv.read_csv
    try:
        table = reader(path)
        table.validate(full=True)  # the JSON reader lets invalid UTF-8 through into string columns
    except pyarrow.ArrowInvalid as error:
        raise ValueError(_file_problem(path) or f"{path}: cannot be read ({error})") from error
    if any(pyarrow.types.is_binary(column.type) for column in table.schema):  # CSV reads invalid UTF-8 as bytes
        _records(path)
    return datasets.Dataset(table)


def _records(path: Path) -> list[tuple[int, Any]]:
    """``(line number, record)`` for every record of a JSONL (a non-blank line, parsed) or CSV (a row of fields,
    the header first) file, decoded as UTF-8. Raises ValueError naming the line that cannot be read."""
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}, line {number}: invalid UTF-8 (byte {error.start + 1} of the line); save the "
                             "file as UTF-8") from None
    text = b"\n".join(lines).decode("utf-8")
    if path.suffix != ".jsonl":
        rows = csv.reader(io.StringIO(text, newline=""))
        records, start = [], 1
        for row in rows:
            records.append((start, row))
            start = rows.line_num + 1
        return records
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg} at character {error.colno}); "
                                 "every line must be one JSON object") from None
    return records


def _kind(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(value), type(value).__name__)


def _file_problem(path: Path) -> str | None:
    """What makes ``path`` unreadable, naming the line: the first line that is not UTF-8 or not a JSON object, whose
    value of a column has another type than the column's first value, or a CSV row with another number of fields
    than the header. None when no such line is found."""
    records = _records(path)
    if path.suffix != ".jsonl":
        header = records[0][1] if records else []
        for number, row in records[1:]:
            if len(row) != len(header):
                return (f"{path}, line {number}: {len(row)} fields, but the header has {len(header)} "
                        f"({','.join(header)}); quote fields that hold commas")
        return None
    first: dict[str, tuple[int, Any]] = {}
    for number, record in records:
        if not isinstance(record, dict):
            return f"{path}, line {number}: a JSON {_kind(record)}, not an object; every line must be one JSON object"
        for column, value in record.items():
            if value is None:
                continue
            seen = first.setdefault(column, (number, value))
            if _kind(value) != _kind(seen[1]):
                return (f"{path}, line {number}: {column!r} is the {_kind(value)} {value!r}, but on line {seen[0]} it "
                        f"is the {_kind(seen[1])} {seen[1]!r}; a column holds one type (labels: integer class ids)")
    return None


@dataclass(frozen=True)
class FileSource:
    """Splits stored as local JSONL/CSV files."""

    name: str
    files: dict[str, Path]

    def signature(self) -> dict[str, Any]:
        """Identifies the content: path, size and modification time of every file."""
        return {
            split: [str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns]
            for split, path in self.files.items()
        }

    def load(self) -> dict[str, datasets.Dataset]:
        return {split: _read_file(path) for split, path in self.files.items()}

    def location(self, split: str, row: int) -> str:
        """Where row ``row`` (0-based, as loaded) of ``split`` is: ``"<file>, line <n>"``."""
        path = self.files[split]
        records = _records(path)[0 if path.suffix == ".jsonl" else 1:]  # CSV: the header is not a row
        return f"{path}, line {records[row][0]}" if row < len(records) else f"{path}, row {row}"


@dataclass(frozen=True)
class HubSource:
    """A named dataset loaded from the Hugging Face Hub; ``local_folder`` is where it was looked for first."""

    name: str
    spec: HubDataset
    local_folder: Path | None

    @functools.cached_property
    def _raw(self) -> dict[str, datasets.Dataset]:
        try:
            raw = datasets.load_dataset(self.spec.hub_id)
        except Exception as err:
            raise FileNotFoundError(self._not_found_message(err)) from err
        return {split: raw[split] for split in self.spec.splits}

    def _not_found_message(self, err: Exception) -> str:
        data_dir = os.environ.get(DATA_DIR_ENV)
        local = f"no folder {self.local_folder}" if self.local_folder else "no local folder"
        return (
            f"Dataset {self.name!r} is not available: {local} ({DATA_DIR_ENV}={data_dir!r}), and loading "
            f"{self.spec.hub_id!r} from the Hugging Face Hub failed ({type(err).__name__}: {err}). Set "
            f"{DATA_DIR_ENV} to a folder holding {self.name}/{{train,validation,test}}.jsonl, or go online."
        )

    def signature(self) -> dict[str, Any]:
        """Identifies the content by the Hub id and the fingerprints ``datasets`` gives the loaded splits."""
        return {"hub_id": self.spec.hub_id, **{split: ds._fingerprint for split, ds in self._raw.items()}}

    def load(self) -> dict[str, datasets.Dataset]:
        return {split: self.spec.convert(ds) for split, ds in self._raw.items()}

    def location(self, split: str, row: int) -> str:
        """Where row ``row`` (0-based) of ``split`` is."""
        return f"row {row} of split {split!r} of {self.spec.hub_id}"


DataSource = FileSource | HubSource


def _folder_files(folder: Path, required: str) -> dict[str, Path]:
    """``{split: file}`` for the split files in ``folder`` (``.jsonl`` preferred over ``.csv``); the ``required``
    split must be there."""
    files = {}
    for split in SPLITS:
        found = [folder / f"{split}{suffix}" for suffix in FILE_SUFFIXES if (folder / f"{split}{suffix}").is_file()]
        if found:
            files[split] = found[0]
    if required not in files:
        available = f"; it has {', '.join(f.name for f in files.values())}" if files else ""
        raise FileNotFoundError(f"Folder {folder} has no {required}.jsonl or {required}.csv{available}")
    return files


def resolve_source(dataset: str, required_split: str = "train") -> DataSource:
    """Finds the data for ``dataset``: a named set (local folder under $BCOS_DATA_DIR first), a file or a folder.

    A folder must hold ``required_split`` (training needs ``train``, an evaluation the split it scores); a single
    file is that split.
    """
    if dataset in HUB_DATASETS:
        data_dir = os.environ.get(DATA_DIR_ENV)
        folder = Path(data_dir) / dataset if data_dir else None
        if folder is not None and folder.is_dir():
            return FileSource(dataset, _folder_files(folder, required_split))
        return HubSource(dataset, HUB_DATASETS[dataset], folder)
    path = Path(dataset).expanduser()
    if path.is_dir():
        return FileSource(path.name, _folder_files(path, required_split))
    if path.is_file() and path.suffix in FILE_SUFFIXES:
        return FileSource(path.stem, {required_split: path})
    raise ValueError(
        f"Unknown dataset {dataset!r}: not one of {sorted(HUB_DATASETS)}, and not a folder or a "
        f"{'/'.join(FILE_SUFFIXES)} file (looked at {path.resolve()})"
    )
