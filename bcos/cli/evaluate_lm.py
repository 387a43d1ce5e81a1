"""``python -m bcos.evaluate.lm``: a B-cos decoder and a conventional one (e.g. the original) on BLiMP and IOI
minimal pairs.

    python -m bcos.evaluate.lm --bcos runs/SmolLM2-135M-Instruct_sst2+ag_news+imdb+hatexplain_bcos/version_0/hf_export \\
        --conventional HuggingFaceTB/SmolLM2-135M-Instruct --suites blimp,ioi --max-examples 100 --out results/lm

Competence (target-over-foil accuracy, probability gap) of each model, and the evidence alignment of each
method's contrastive explanation (accuracy and mean reciprocal rank with 95 % bootstrap intervals over the pairs,
``--bootstrap-resamples``, ``--seed``): B-cos explains the B-cos model, the post-hoc methods the conventional model (and
the B-cos model too with ``--posthoc-on-bcos``). The conventional decoder may be of any family transformers loads.
Writes ``results.md`` and ``results.json`` into ``--out`` (checked to be writable before any work); an empty
suite file, or suites none of whose rows can be evaluated, is an error. ``--original`` and ``--max-rows`` are
deprecated names of ``--conventional`` and ``--max-examples``.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ..evaluate.lm.pairs import SKIP_REASONS, read_pairs, select_files
from ..evaluate.lm.report import write_report
from ..evaluate.intervals import Bootstrap
from ..evaluate.lm.run import evaluate_pairs
from ..explain.registry import EXPLAINERS
from ..loader import load
from .common import add_bootstrap, add_comparison_models, add_device, add_max_examples, names, new_parser, provenance
from .outputs import writable_folder

PROG = "python -m bcos.evaluate.lm"

METHODS = ("bcos", "input_x_gradient", "saliency", "integrated_gradients", "occlusion")
DEFAULT_PARAMS = {"integrated_gradients": {"n_steps": 10}}


def parser() -> argparse.ArgumentParser:
    p = new_parser(PROG, __doc__)
    add_comparison_models(p, "the B-cos decoder: a saved B-cos folder (a training run's hf_export/) or a .ckpt",
                          "the conventional decoder: a hub id (packaged ids load offline), a folder or a .ckpt",
                          deprecated_conventional=["--original"])
    p.add_argument("--suites", type=names, default=["blimp", "ioi"],
                   help="blimp, ioi ($BCOS_DATA_DIR/<suite>/*.jsonl), folders or .jsonl files")
    p.add_argument("--subsets", type=names, default=None,
                   help="only these subsets (file stems); each suite keeps the ones it has")
    add_max_examples(p, "the first N rows of every subset file (before skipping)", deprecated=["--max-rows"])
    p.add_argument("--methods", type=names, default=list(METHODS),
                   help=f"comma-separated, of: {', '.join(EXPLAINERS)}")
    p.add_argument("--method-params", type=json.loads, default={},
                   help="JSON of explainer parameters by method, merged over the defaults "
                        f"{json.dumps(DEFAULT_PARAMS)}")
    p.add_argument("--posthoc-on-bcos", action="store_true", help="also explain the B-cos model with post-hoc methods")
    p.add_argument("--batch-size", type=int, default=16)
    add_bootstrap(p)
    add_device(p)
    p.add_argument("--out", required=True, help="output folder (results.md, results.json)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the command on ``argv`` (default: the command line); returns the results it wrote. Bad inputs exit with
    a usage error (status 2) that says what is wrong."""
    p = parser()
    args = p.parse_args(argv)
    try:
        check(args)
        files = select_files(args.suites, args.subsets)
        empty = [str(file) for file in files.values() if not read_pairs(file, 1)]
        if empty:
            raise ValueError(f"no minimal pairs in {', '.join(empty)} (empty file); give suites with rows")
        out = writable_folder(args.out, ("results.md", "results.json"), "--out")
        models = {role: load(path, kind="causal-lm") for role, path in (("conventional", args.conventional),
                                                                        ("bcos", args.bcos)) if path}
        if "bcos" in models and not models["bcos"].is_bcos:
            raise ValueError(f"--bcos {args.bcos} is not a saved B-cos model (its config has no 'bcos' entry)")
    except (ValueError, FileNotFoundError) as error:
        p.error(str(error))
    for lm in models.values():
        lm.model.to(args.device)
    results = evaluate_pairs(models, files, args.methods, args.method_params, args.max_examples, args.posthoc_on_bcos,
                             args.batch_size, progress=not args.no_progress,
                             bootstrap=Bootstrap(args.bootstrap_resamples, args.seed))
    if not any(row["n_pairs"] for row in results["skipped"]):
        reasons = {reason: sum(row.get(reason, 0) for row in results["skipped"] if row["subset"] != "all")
                   for reason in SKIP_REASONS}
        p.error(f"no row of {', '.join(map(str, files.values()))} could be evaluated (rows skipped: {reasons})")
    results["settings"] = {**vars(args),
                           "logit_scales": {name: lm.logit_scale for name, lm in models.items()},
                           "files": {f"{suite}/{subset}": str(file) for (suite, subset), file in files.items()},
                           **provenance(PROG, argv)}
    paths = write_report(out, results)
    print(f"wrote {paths['md']} and {paths['json']}")
    return results


def check(args: argparse.Namespace) -> None:
    """Raises ValueError for a missing model or unknown methods; merges ``--method-params`` over the defaults."""
    if not (args.bcos or args.conventional):
        raise ValueError("give --bcos and/or --conventional")
    if not isinstance(args.method_params, dict) or not all(
            isinstance(params, dict) for params in args.method_params.values()):
        raise ValueError(f"--method-params must be a JSON object of objects by method, got {args.method_params!r}")
    for what, given in (("--methods", args.methods), ("--method-params", args.method_params)):
        unknown = [name for name in given if name not in EXPLAINERS]
        if unknown:
            raise ValueError(f"{what} names unknown methods {unknown}; available: {', '.join(EXPLAINERS)}")
    args.method_params = {name: {**DEFAULT_PARAMS.get(name, {}), **args.method_params.get(name, {})}
                          for name in {**DEFAULT_PARAMS, **args.method_params}}
