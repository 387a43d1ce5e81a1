"""Explaining a whole split to a folder of shard files, resumably and split across processes.

The split's rows are cut into chunks of ``chunk_size`` consecutive rows; chunk ``c`` is written to
``shard-{c:05d}.parquet`` (or ``.jsonl``) under a temporary name and renamed when complete, so a shard file is
either whole or absent. A rerun skips the chunks whose shard exists: an interrupted run continues where it stopped
and writes nothing twice. Under ``torch.distributed`` (any backend; only barriers are used) rank ``r`` of ``w``
takes chunks ``r, r + w, ...``, so every row is written by exactly one process. ``corpus.json`` records the settings
(a rerun with other settings is refused) and what the rows mean (class names, special tokens).

Each row of the shards holds: ``row`` (the row number in the source split), ``label``, ``prediction``,
``target`` (the explained class: the prediction), ``logit`` (its logit), ``logits`` and ``probabilities``
(:meth:`bcos.Model.probabilities`) per class, ``tokens`` and their ``contributions``, ``words`` (subwords merged by
:func:`bcos.merge_subwords`, special tokens kept as words of their own) and their ``word_contributions``, and the
source columns asked for with ``keep_columns``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..data import Split, tokenize_split
from ..data.processing import SOURCE_ROW
from ..explain.protocol import Explainer
from ..explain.words import merge_subwords, token_strings
from ..handle import Model

FORMATS = ("parquet", "jsonl")
META_FILE = "corpus.json"
SHARD_PREFIX = "shard-"


@dataclass(frozen=True)
class Corpus:
    """An explained split read back: ``rows`` (one per example, ordered by ``row``) and the ``meta`` record of
    ``corpus.json`` (``settings``: what determines the content, the row count included; ``classes``: class names
    by id; ``special_tokens``; ``source``: where the split was read; ``chunks``: the number of shards)."""

    rows: pd.DataFrame
    meta: dict[str, Any]

    @property
    def special_tokens(self) -> set[str]:
        return set(self.meta["special_tokens"])

    @property
    def classes(self) -> dict[int, str]:
        return {int(index): name for index, name in self.meta["classes"].items()}


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shard_path(folder: Path, chunk: int, fmt: str) -> Path:
    return folder / f"{SHARD_PREFIX}{chunk:05d}.{fmt}"


def _check_meta(folder: Path, meta: dict[str, Any], rank: int) -> None:
    """Rank 0 writes ``corpus.json`` when there is none; raises ValueError if the one there has other settings."""
    path = folder / META_FILE
    if path.is_file():
        written = json.loads(path.read_text(encoding="utf-8"))
        differences = {key: (written.get("settings", {}).get(key), value)
                       for key, value in meta["settings"].items() if written.get("settings", {}).get(key) != value}
        if differences:
            described = "; ".join(f"{key}: {old!r} there, {new!r} now" for key, (old, new) in differences.items())
            raise ValueError(f"{folder} holds a corpus written with other settings ({described}); give another "
                             "output folder, or delete this one to start over")
    elif rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(temporary, path)


def explain_batch(handle: Model, explainer: Explainer, input_ids: torch.Tensor, attention_mask: torch.Tensor
                  ) -> list[dict[str, Any]]:
    """One record per row of ``input_ids [batch, seq]`` (padding on the right or left): the predicted class
    explained, with the logits, probabilities, tokens and word-level contributions."""
    device = handle.device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    with torch.no_grad():
        logits = explainer.logits(input_ids, attention_mask)
    probabilities = handle.probabilities(logits)
    prediction = probabilities.argmax(dim=-1)
    scores = explainer.attribute(input_ids, attention_mask, prediction).scores
    tokens = token_strings(input_ids, attention_mask, handle.tokenizer)
    special = set(handle.tokenizer.all_special_tokens)
    records = []
    for row in range(input_ids.shape[0]):
        contributions = scores[row][attention_mask[row].bool()].tolist()
        words, word_contributions = merge_subwords(tokens[row], contributions, special)
        target = int(prediction[row])
        records.append({"prediction": target, "target": target, "logit": float(logits[row, target]),
                        "logits": logits[row].tolist(), "probabilities": probabilities[row].tolist(),
                        "tokens": tokens[row], "contributions": contributions, "words": words,
                        "word_contributions": word_contributions})
    return records


def _write_shard(records: list[dict[str, Any]], path: Path) -> None:
    """Write ``records`` to ``path`` atomically (a temporary file renamed: a shard is whole or absent)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), temporary)
    else:
        temporary.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    os.replace(temporary, path)


def write_corpus(handle: Model, explainer: Explainer, split: Split, folder: str | os.PathLike, settings: dict[str, Any],
                 *, max_length: int = 256, batch_size: int = 16, chunk_size: int = 256, fmt: str = "parquet",
                 keep_columns: Sequence[str] = (), classes: Mapping[int, str] | None = None,
                 progress: bool = True) -> list[Path]:
    """Explain every row of ``split`` with ``explainer`` (for ``handle``'s model, on its device) into shard files
    under ``folder``; returns the shards this process wrote.

    Args:
        settings: what determines the content (model, method, data set, ...), recorded in ``corpus.json``; a
            folder that holds a corpus with other settings is refused. ``max_length``, ``chunk_size``, ``fmt`` and
            ``keep_columns`` are added to them.
        keep_columns: source columns copied into every record (e.g. HateXplain's ``annotator_targets``).
        classes: the class names by id (default: the model config's ``id2label``).

    Raises:
        ValueError: an unknown format, a column of ``keep_columns`` the split lacks, a size below 1, or a folder
            holding another corpus.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if min(batch_size, chunk_size, max_length) < 1:
        raise ValueError(f"batch_size, chunk_size and max_length must be at least 1, got {batch_size}, {chunk_size}, "
                         f"{max_length}")
    missing = [column for column in keep_columns if column not in split.rows.column_names]
    if missing:
        raise ValueError(f"unknown column {missing[0]!r} in keep_columns; the split's columns are "
                         f"{', '.join(split.rows.column_names)}")
    folder = Path(folder)
    rank, world = _rank_and_world()
    n_chunks = -(-len(split.rows) // chunk_size)
    classes = handle.model.config.id2label if classes is None else classes
    meta = {"settings": {**settings, "max_length": max_length, "chunk_size": chunk_size, "format": fmt,
                         "keep_columns": list(keep_columns), "rows": len(split.rows)},
            "classes": {str(index): str(name) for index, name in sorted(classes.items())},
            "special_tokens": sorted(handle.tokenizer.all_special_tokens), "source": split.source,
            "chunks": n_chunks}
    _check_meta(folder, meta, rank)
    _barrier()
    todo = [chunk for chunk in range(rank, n_chunks, world) if not shard_path(folder, chunk, fmt).exists()]
    examples = tokenize_split(split, handle.tokenizer, max_length)
    written = []
    bar = tqdm(total=sum(min(chunk_size, len(split.rows) - chunk * chunk_size) for chunk in todo), unit="example",
               desc=f"explaining (rank {rank})" if world > 1 else "explaining", disable=not progress, position=rank)
    for chunk in todo:
        rows = range(chunk * chunk_size, min((chunk + 1) * chunk_size, len(split.rows)))
        records = []
        for start in range(rows.start, rows.stop, batch_size):
            batch = slice(start, min(start + batch_size, rows.stop))
            mask = examples.attention_mask[batch]
            used = mask.any(dim=0)
            records += explain_batch(handle, explainer, examples.input_ids[batch][:, used], mask[:, used])
            bar.update(batch.stop - batch.start)
        source = split.rows.select(rows)
        for record, source_row, label in zip(records, source[SOURCE_ROW], source[split.columns.label]):
            record.update({"row": int(source_row), "label": int(label)})
        for column in keep_columns:
            for record, value in zip(records, source[column]):
                record[column] = value
        path = shard_path(folder, chunk, fmt)
        _write_shard(records, path)
        written.append(path)
    bar.close()
    _barrier()
    return written


def shards(folder: str | os.PathLike) -> list[Path]:
    """The complete shard files under ``folder``, in chunk order."""
    folder = Path(folder)
    return sorted(path for fmt in FORMATS for path in folder.glob(f"{SHARD_PREFIX}*.{fmt}"))


def read_corpus(folder: str | os.PathLike) -> Corpus:
    """The rows of every shard under ``folder`` (written by :func:`write_corpus`) with its ``corpus.json``.

    Raises:
        FileNotFoundError: ``folder`` holds no ``corpus.json``.
        ValueError: no shard has been written yet, or the shards are incomplete (an unfinished run: rerun it).
    """
    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        raise FileNotFoundError(f"{folder} holds no {META_FILE}: not a corpus written by python -m bcos.explain_corpus")
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    files = shards(folder)
    if len(files) != meta["chunks"]:
        raise ValueError(f"{folder} holds {len(files)} of {meta['chunks']} shards: the run that writes it is "
                         "unfinished; rerun the same command to complete it")
    frames = [pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True) for path in files]
    rows = pd.concat(frames, ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)
    return Corpus(rows, meta)
