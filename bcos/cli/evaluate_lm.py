"""``python -m bcos.evaluate.lm``: a B-cos decoder and the original model on BLiMP and IOI minimal pairs.

    python -m bcos.evaluate.lm --bcos runs/smollm2_bcos/version_0/hf_export \\
        --original HuggingFaceTB/SmolLM2-135M-Instruct --suites blimp,ioi --max-rows 100 --out results/lm

Competence (target-over-foil accuracy, probability gap) of each model, and the evidence alignment of each
method's contrastive explanation: B-cos explains the B-cos model, the post-hoc methods the original model (and the
B-cos model too with ``--posthoc-on-bcos``). Writes ``results.md`` and ``results.json`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from datetime import datetime, timezone

import torch
import transformers

from .. import __version__
from ..explain.registry import EXPLAINERS
from ..loader import load
from ..evaluate.lm.pairs import select_files
from ..evaluate.lm.report import write_report
from ..evaluate.lm.run import evaluate_pairs

METHODS = ("bcos", "input_x_gradient", "saliency", "integrated_gradients", "occlusion")
DEFAULT_PARAMS = {"integrated_gradients": {"n_steps": 10}}


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bcos.evaluate.lm", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bcos", help="the B-cos decoder: a saved B-cos folder (a training run's hf_export/)")
    p.add_argument("--original", help="the conventional decoder: a hub id (packaged ids load offline) or a folder")
    p.add_argument("--suites", type=_names, default=["blimp", "ioi"],
                   help="blimp, ioi ($BCOS_DATA_DIR/<suite>/*.jsonl), folders or .jsonl files")
    p.add_argument("--subsets", type=_names, default=None,
                   help="only these subsets (file stems); each suite keeps the ones it has")
    p.add_argument("--max-rows", type=int, default=None, help="the first N rows of every subset file (before skipping)")
    p.add_argument("--methods", type=_names, default=list(METHODS),
                   help=f"comma-separated, of: {', '.join(EXPLAINERS)}")
    p.add_argument("--method-params", type=json.loads, default={},
                   help="JSON of explainer parameters by method, merged over the defaults "
                        f"{json.dumps(DEFAULT_PARAMS)}")
    p.add_argument("--posthoc-on-bcos", action="store_true", help="also explain the B-cos model with post-hoc methods")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if not (args.bcos or args.original):
        parser().error("give --bcos and/or --original")
    if args.max_rows is not None and args.max_rows < 1:
        parser().error(f"--max-rows must be at least 1, got {args.max_rows}")
    if not isinstance(args.method_params, dict) or not all(
            isinstance(params, dict) for params in args.method_params.values()):
        parser().error(f"--method-params must be a JSON object of objects by method, got {args.method_params!r}")
    for what, names in (("--methods", args.methods), ("--method-params", args.method_params)):
        unknown = [name for name in names if name not in EXPLAINERS]
        if unknown:
            parser().error(f"{what} names unknown methods {unknown}; available: {', '.join(EXPLAINERS)}")
    args.method_params = {name: {**DEFAULT_PARAMS.get(name, {}), **args.method_params.get(name, {})}
                          for name in {**DEFAULT_PARAMS, **args.method_params}}
    try:
        files = select_files(args.suites, args.subsets)
    except ValueError as error:
        parser().error(str(error))
    models = {name: load(path, kind="causal-lm") for name, path in (("original", args.original), ("bcos", args.bcos)) if path}
    if "bcos" in models and not models["bcos"].is_bcos:
        parser().error(f"--bcos {args.bcos} is not a saved B-cos model (its config has no 'bcos' entry)")
    results = evaluate_pairs(models, files, args.methods, args.method_params, args.max_rows, args.posthoc_on_bcos,
                             args.batch_size, progress=not args.no_progress)
    results["settings"] = {**vars(args),
                           "logit_scales": {name: lm.logit_scale for name, lm in models.items()},
                           "files": {f"{suite}/{subset}": str(file) for (suite, subset), file in files.items()},
                           "versions": {"bcos": __version__, "torch": torch.__version__,
                                        "transformers": transformers.__version__, "python": platform.python_version()},
                           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "command": " ".join(["python -m bcos.evaluate.lm", *(argv if argv is not None else
                                                                                   sys.argv[1:])])}
    paths = write_report(args.out, results)
    print(f"wrote {paths['md']} and {paths['json']}")
    return results
