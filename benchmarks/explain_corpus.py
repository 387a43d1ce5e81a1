"""Throughput of explaining a whole data set to a file (issue 14): B-cos MiniLM on the full HateXplain test split
vs Integrated Gradients (50 steps) on the conventional MiniLM on its first 100 examples.

Both go through the same writer (:func:`bcos.analysis.write_corpus`: tokenising, batching, the logits and
probabilities, the explanation, word merging, Parquet shards), so the times are those of ``python -m
bcos.explain_corpus``. The models are the packaged ``sentence-transformers/all-MiniLM-L6-v2`` with a freshly
initialised 3-class head (seed 0; untrained: the cost of an explanation does not depend on the weights) and its
bcosified copy (b=2). Run from the repository root::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 BCOS_DATA_DIR=../shared/data python benchmarks/explain_corpus.py
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from a checkout: use this working tree's bcos
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import bcos  # noqa: E402
from bcos.analysis import read_corpus, write_corpus  # noqa: E402
from bcos.data import Columns, read_split  # noqa: E402
from bcos.explain import explainer_for  # noqa: E402
from explain_cost import machine_info  # noqa: E402

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "explain_corpus.json"
LABELS = {0: "hatespeech", 1: "normal", 2: "offensive"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per example (truncation)")
    parser.add_argument("--bcos-examples", type=int, default=None, help="examples for B-cos (default: the split)")
    parser.add_argument("--ig-examples", type=int, default=100)
    parser.add_argument("--ig-steps", type=int, default=50)
    parser.add_argument("--b", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args()


def models(b: float) -> tuple[bcos.Model, bcos.Model]:
    """The conventional MiniLM classifier (fresh 3-class head) and its bcosified copy."""
    torch.manual_seed(0)
    conventional = bcos.load_model(MODEL_ID, num_labels=3, id2label=LABELS,
                                   label2id={name: index for index, name in LABELS.items()}).eval()
    tokenizer = bcos.load_tokenizer(MODEL_ID)
    converted = bcos.bcosify(copy.deepcopy(conventional), b=b).eval()
    return bcos.Model(conventional, tokenizer, source=MODEL_ID), bcos.Model(converted, tokenizer, source=MODEL_ID)


def timed_run(handle: bcos.Model, method: str, params: dict, examples: int | None, args: argparse.Namespace) -> dict:
    """Explain the first ``examples`` rows of HateXplain's test split into a fresh folder; the wall time of
    :func:`write_corpus` (tokenising included) and the result's sanity numbers."""
    split = read_split("hatexplain", "test", examples, Columns(rationale=None))
    explainer = explainer_for(handle, method, params)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_corpus(handle, explainer, split, folder, {"method": method}, max_length=args.max_length,
                     batch_size=args.batch_size, chunk_size=256, progress=True)
        seconds = time.perf_counter() - start
        rows = read_corpus(folder).rows
    sums = rows["contributions"].map(sum)
    tokens = int(rows["tokens"].map(len).sum())
    return {"method": method, "params": params, "examples": len(rows), "tokens": tokens, "seconds": seconds,
            "examples_per_second": len(rows) / seconds,
            "max_completeness_error": float(((sums - rows["logit"]).abs()).max()),
            "load_average_after": os.getloadavg()}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    conventional, converted = models(args.b)
    bcos_run = timed_run(converted, "bcos", {}, args.bcos_examples, args)
    ig_run = timed_run(conventional, "integrated_gradients", {"n_steps": args.ig_steps}, args.ig_examples, args)
    split_size = len(read_split("hatexplain", "test", None, Columns(rationale=None)).rows)
    result = {
        "model": MODEL_ID, "b": args.b, "batch_size": args.batch_size, "max_length": args.max_length,
        "split": "hatexplain/test", "split_examples": split_size, "bcos": bcos_run, "integrated_gradients": ig_run,
        "speedup_examples_per_second": bcos_run["examples_per_second"] / ig_run["examples_per_second"],
        "ig_split_seconds_extrapolated": split_size / ig_run["examples_per_second"],
        "machine": machine_info(args.threads), "transformers": transformers.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({key: result[key] for key in ("bcos", "integrated_gradients", "speedup_examples_per_second",
                                                   "ig_split_seconds_extrapolated")}, indent=1))


if __name__ == "__main__":
    main()
