"""``python -m bcos.explain_corpus``: explain every example of a data set split and write the explanations to
Parquet or JSONL shards (resumable; split across processes when several devices are given).

    python -m bcos.explain_corpus --model runs/all-MiniLM-L6-v2_hatexplain_bcos/version_0/hf_export --dataset hatexplain --split test \\
        --keep-columns id,annotator_targets --out corpora/hatexplain_test
    python -m bcos.explain_corpus --model ... --dataset reviews.csv --split train --device cuda:0,cuda:1 --out ...

Each row holds the example's tokens and word-level contributions to its predicted class, the logits, the
probabilities, the prediction and the label (see :mod:`bcos.analysis.corpus`). Rerunning the same command after an
interruption continues where it stopped. With several ``--device`` entries, one process per device is started
with ``torch.multiprocessing`` (or, under ``torchrun``, the launched processes are used); each writes its own
chunks. Report on the result with ``python -m bcos.analysis``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..analysis.corpus import FORMATS, read_corpus, write_corpus
from ..data import Columns, Split, read_split
from ..explain.registry import EXPLAINERS, explainer_for
from ..handle import Model
from ..loader import load
from .common import add_device, add_max_examples, names, new_parser, provenance

PROG = "python -m bcos.explain_corpus"


def parser() -> argparse.ArgumentParser:
    p = new_parser(PROG, __doc__)
    p.add_argument("--model", required=True,
                   help="a Hugging Face model folder (a run's hf_export/), a hub id or a Lightning .ckpt")
    p.add_argument("--dataset", required=True, help="sst2, imdb, ag_news, hatexplain ($BCOS_DATA_DIR/<name>/, else "
                   "the Hub), a folder of <split>.jsonl/.csv files, or one such file (used as the split)")
    p.add_argument("--split", default="test")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--keep-columns", type=names, default=[],
                   help="comma-separated source columns copied into every row, e.g. id,annotator_targets")
    p.add_argument("--method", default=None, choices=list(EXPLAINERS),
                   help="the explanation method (default: bcos for a B-cos model, else integrated_gradients)")
    p.add_argument("--method-params", type=json.loads, default={},
                   help='JSON of the method\'s parameters, e.g. \'{"n_steps": 50}\'')
    p.add_argument("--out", type=Path, required=True, help="the output folder (corpus.json and the shard files)")
    p.add_argument("--format", choices=FORMATS, default="parquet")
    p.add_argument("--batch-size", type=int, default=16, help="examples per model call")
    p.add_argument("--chunk-size", type=int, default=256, help="examples per shard file (the unit of resumption)")
    p.add_argument("--max-length", type=int, default=128, help="tokens per example (longer texts are truncated)")
    add_max_examples(p, "the first N usable examples of the split")
    add_device(p, several=True)
    return p


def devices_of(entries: list[str]) -> list[torch.device]:
    """The ``--device`` entries (each checked at parse) as devices; raises ValueError for a repeated GPU."""
    devices = [torch.device(entry) for entry in entries]
    if len(set(devices)) < len(devices) and any(device.type != "cpu" for device in devices):
        raise ValueError(f"--device {','.join(entries)!r} names a device twice; give each once")
    return devices


def class_names(classifier: Model, split: Split) -> dict[int, str]:
    """The model config's class names, unless they are transformers' placeholders (``LABEL_0``) and the data names
    its labels (a ``<label>_name`` column): then the data's."""
    names_by_id = {int(index): str(name) for index, name in classifier.model.config.id2label.items()}
    name_column = f"{split.columns.label}_name"
    placeholders = all(re.fullmatch(r"LABEL_\d+", name) for name in names_by_id.values())
    if placeholders and name_column in split.rows.column_names:
        pairs = set(zip(split.rows[split.columns.label], split.rows[name_column]))
        return {**names_by_id, **{int(label): str(name) for label, name in pairs}}
    return names_by_id


def prepare(args: argparse.Namespace) -> tuple[Model, Any, Split, dict[str, Any]]:
    """The model, its explainer, the split and the settings recorded with the corpus; raises ValueError or
    FileNotFoundError for bad inputs."""
    if min(args.batch_size, args.chunk_size, args.max_length) < 1:
        raise ValueError("--batch-size, --chunk-size and --max-length must be at least 1")
    split = read_split(args.dataset, args.split, args.max_examples,
                       Columns(args.text_column, args.label_column, rationale=None))
    missing = [column for column in args.keep_columns if column not in split.rows.column_names]
    if missing:
        raise ValueError(f"unknown column {missing[0]!r} in --keep-columns; the split's columns are "
                         f"{', '.join(split.rows.column_names)}")
    classifier = load(args.model, kind="sequence-classification")
    method = args.method or ("bcos" if classifier.is_bcos else "integrated_gradients")
    if method == "bcos" and not classifier.is_bcos:
        raise ValueError(f"method bcos needs a B-cos model, but {args.model} holds a conventional model; explain it "
                         "with a post-hoc method, e.g. --method integrated_gradients")
    try:
        explainer = explainer_for(classifier, method, args.method_params)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--method-params for {method}: {error}") from error
    settings = {"model": str(args.model), "dataset": args.dataset, "split": args.split, "method": method,
                "method_params": args.method_params, "text_column": args.text_column,
                "label_column": args.label_column, "max_examples": args.max_examples}
    return classifier, explainer, split, settings


def run(args: argparse.Namespace, device: torch.device, prepared: tuple | None = None) -> list[Path]:
    """Explain the split on ``device`` (this process's share under ``torch.distributed``)."""
    classifier, explainer, split, settings = prepared or prepare(args)
    classifier.model.to(device)
    return write_corpus(classifier, explainer, split, args.out, settings, max_length=args.max_length,
                        batch_size=args.batch_size, chunk_size=args.chunk_size, fmt=args.format,
                        keep_columns=args.keep_columns, classes=class_names(classifier, split))


def _worker(rank: int, world: int, init_method: str, args: argparse.Namespace, devices: list[torch.device]) -> None:
    """One spawned process: join the group (gloo: only barriers are used), explain its chunks."""
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        torch.set_num_threads(max(1, torch.get_num_threads() // world))
        run(args, devices[rank])
    finally:
        dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the command on ``argv`` (default: the command line); returns a summary (``folder``, ``rows``,
    ``shards``). Bad inputs exit with a usage error (status 2) that says what is wrong and what to do."""
    p = parser()
    args = p.parse_args(argv)
    try:
        devices = devices_of(args.device)
        prepared = prepare(args)
    except (ValueError, FileNotFoundError) as error:
        p.error(str(error))
    if "WORLD_SIZE" in os.environ:  # launched by torchrun: one process per device
        dist.init_process_group("gloo")
        if dist.get_world_size() != len(devices):
            p.error(f"torchrun started {dist.get_world_size()} processes for {len(devices)} --device entries")
        try:
            run(args, devices[int(os.environ.get("LOCAL_RANK", dist.get_rank()))], prepared)
        finally:
            dist.destroy_process_group()
    elif len(devices) > 1:
        with tempfile.TemporaryDirectory() as rendezvous:
            mp.spawn(_worker, args=(len(devices), f"file://{rendezvous}/store", args, devices), nprocs=len(devices))
    else:
        run(args, devices[0], prepared)
    if "WORLD_SIZE" in os.environ and int(os.environ.get("RANK", "0")) != 0:
        return {}
    corpus = read_corpus(args.out)
    record = {"folder": str(args.out), "rows": len(corpus.rows), "shards": corpus.meta["chunks"],
              **provenance(PROG, argv)}
    print(f"wrote {len(corpus.rows)} explained examples to {args.out} ({corpus.meta['chunks']} shards)")
    return record
