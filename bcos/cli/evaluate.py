"""``python -m bcos.evaluate``: explain a split with every method, score every metric, write the table.

    python -m bcos.evaluate --bcos runs/bcos/version_0/hf_export --conventional runs/conv/version_0/hf_export \\
        --dataset sst2 --split validation --max-examples 200 --out results/sst2

B-cos explains the B-cos model, the post-hoc methods explain the conventional model (and, with
``--posthoc-on-bcos``, the B-cos model too). Models are anything :func:`bcos.load` reads (a run's ``hf_export/``,
a hub id, a Lightning ``.ckpt``). Writes ``results.md``, ``results.csv`` and ``results.json`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from ..data import Split, read_split, tokenize_split
from ..evaluate.core import METRICS, MetricSettings, accuracy, score_method, seqpg_instances
from ..evaluate.report import write_report
from ..explain import EXPLAINERS, explainer_for
from ..handle import Model
from ..loader import load
from ..metrics import DEFAULT_FRACTIONS
from .common import (add_comparison_models, add_device, add_max_examples, add_max_length, max_length_for, names,
                     new_parser, provenance)

PROG = "python -m bcos.evaluate"
POSTHOC = tuple(name for name in EXPLAINERS if name != "bcos")


def parser() -> argparse.ArgumentParser:
    p = new_parser(PROG, __doc__)
    add_comparison_models(p, "the B-cos classifier: a model folder (a run's hf_export/), a hub id or a Lightning .ckpt",
                          "the conventional classifier of the same task (folder, hub id or .ckpt)")
    p.add_argument("--dataset", default="sst2", help="sst2, imdb, ag_news, hatexplain ($BCOS_DATA_DIR/<name>/, else "
                   "the Hub), a folder of <split>.jsonl/.csv files, or one such file (used as the split)")
    p.add_argument("--split", default="validation")
    p.add_argument("--methods", type=names, default=None,
                   help=f"comma-separated, of: {', '.join(EXPLAINERS)} (default: bcos with --bcos, every post-hoc "
                   "method with --conventional)")
    p.add_argument("--method-params", type=json.loads, default={},
                   help='JSON of explainer parameters by method, e.g. \'{"integrated_gradients": {"n_steps": 20}}\'')
    p.add_argument("--posthoc-on-bcos", action="store_true", help="also explain the B-cos model with post-hoc methods")
    p.add_argument("--metrics", type=names, default=list(METRICS),
                   help="comma-separated; plausibility applies to data with rationales (hatexplain)")
    add_max_examples(p, "the first N usable examples of the split")
    add_max_length(p)
    p.add_argument("--fractions", type=lambda text: [float(f) for f in names(text)], default=list(DEFAULT_FRACTIONS))
    p.add_argument("--seqpg-segment-length", type=int, default=10)
    p.add_argument("--seqpg-segments", type=int, default=2)
    p.add_argument("--seqpg-confidence", type=float, default=0.5)
    p.add_argument("--seqpg-instances", type=int, default=None, help="at most this many pointing-game instances")
    p.add_argument("--seed", type=int, default=0, help="seed of the pointing-game pairing")
    p.add_argument("--batch-size", type=int, default=16, help="examples per explainer call")
    p.add_argument("--bcos-logit-scale", type=float, default=None,
                   help="inverse temperature of the B-cos model's probabilities (default: the one it was trained "
                   "with, from the .ckpt or the export's config.logit_scale)")
    p.add_argument("--conventional-logit-scale", type=float, default=None)
    add_device(p)
    p.add_argument("--out", required=True, help="output folder (results.md, results.csv, results.json)")
    return p


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The ``(method, model role)`` pairs to run; raises ValueError for methods that cannot run."""
    if not (args.bcos or args.conventional):
        raise ValueError("give --bcos and/or --conventional")
    unknown = [name for name in args.methods or () if name not in EXPLAINERS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known methods: {', '.join(EXPLAINERS)}")
    unknown = sorted(set(args.method_params) - set(EXPLAINERS))
    if unknown:
        raise ValueError(f"--method-params names unknown methods {unknown}; known methods: {', '.join(EXPLAINERS)}")
    unknown = sorted(set(args.metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known metrics: {', '.join(METRICS)}")
    posthoc_roles = [role for role, given in (("conventional", args.conventional),
                                              ("bcos", args.bcos and args.posthoc_on_bcos)) if given]
    methods = args.methods or ([name for name in EXPLAINERS if name != "bcos" or args.bcos]
                               if posthoc_roles else ["bcos"])
    if "bcos" in methods and not args.bcos:
        raise ValueError("method bcos needs a B-cos model: give --bcos")
    if any(name in POSTHOC for name in methods) and not posthoc_roles:
        raise ValueError("post-hoc methods need --conventional (or --bcos with --posthoc-on-bcos)")
    return [(name, "bcos") if name == "bcos" else (name, role) for name in methods
            for role in (["bcos"] if name == "bcos" else posthoc_roles)]


def load_models(args: argparse.Namespace) -> dict[str, Model]:
    """The models by role, checked to be B-cos (``--bcos``) and conventional (``--conventional``)."""
    models = {}
    for role, path, scale in (("bcos", args.bcos, args.bcos_logit_scale),
                              ("conventional", args.conventional, args.conventional_logit_scale)):
        if path:
            classifier = load(path, kind="sequence-classification", logit_scale=scale)
            if classifier.is_bcos != (role == "bcos"):
                kind = "a B-cos" if classifier.is_bcos else "a conventional"
                raise ValueError(f"--{role} {path} holds {kind} model")
            recorded = str(path).endswith(".ckpt") or hasattr(classifier.model.config, "logit_scale")
            if role == "bcos" and scale is None and not recorded:
                warnings.warn(f"{path} does not record the logit scale the B-cos model was trained with: its "
                              "probabilities use scale 1 (pass --bcos-logit-scale, or give the run's .ckpt)")
            classifier.model.to(args.device)
            models[role] = classifier
    return models


def _explainer_settings(explainer) -> dict[str, Any]:
    """The explainer's effective parameters (its plain attributes)."""
    return {key: value for key, value in vars(explainer).items()
            if isinstance(value, (bool, int, float, str, tuple, type(None)))}


def evaluate(args: argparse.Namespace, runs: list[tuple[str, str]], models: dict[str, Model], split: Split,
             argv: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score every ``(method, role)`` of ``runs`` on the rows of ``split``; returns the table rows and the settings
    summary."""
    settings = MetricSettings(args.metrics, args.fractions, args.seqpg_segment_length, args.seqpg_segments,
                              args.seqpg_confidence, args.seqpg_instances, args.seed, args.batch_size)
    max_lengths = {role: max_length_for(args.max_length, model) for role, model in models.items()}
    examples = {role: tokenize_split(split, model.tokenizer, max_lengths[role]).to(args.device)
                for role, model in models.items()}
    n_examples = len(split.rows)
    accuracies = {role: accuracy(model, examples[role]) for role, model in models.items()}
    instances = {role: seqpg_instances(model, examples[role], settings) if "seqpg" in args.metrics else None
                 for role, model in models.items()}
    table, details, explainers = [], {}, {}
    for method, role in runs:
        classifier = models[role]
        explainer = explainer_for(classifier, method, args.method_params.get(method))
        with tqdm(total=n_examples, desc=f"{method} ({role})", unit="ex") as bar:
            result = score_method(classifier, explainer, examples[role], instances[role], settings, bar.update)
        table.append({"method": method, "model": role, **result.scores,
                      "seconds_per_example": result.seconds_per_example, "model_accuracy": accuracies[role],
                      "n_examples": n_examples, "n_seqpg_instances": result.n_seqpg_instances})
        details[f"{method} ({role})"] = result.settings
        explainers[f"{method} ({role})"] = _explainer_settings(explainer)
    summary = {
        "dataset": args.dataset, "split": args.split, "n_examples": n_examples, "data_source": split.source,
        "skipped_rows": split.skipped,
        "models": {role: {"path": model.source, "accuracy": accuracies[role], "logit_scale": model.logit_scale,
                          "link_function": model.link, "max_length": max_lengths[role],
                          "architecture": type(model.model).__name__, "bcos": getattr(model.model.config, "bcos", None)}
                   for role, model in models.items()},
        "settings": {**vars(args), "metric_settings": vars(settings)},
        "explainers": explainers, "metric_settings_by_run": details,
        **provenance(PROG, argv),
    }
    return table, summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the command on ``argv`` (default: the command line); returns the written summary with ``results`` and
    ``files``. Bad inputs exit with a usage error (status 2) that says what is wrong."""
    p = parser()
    args = p.parse_args(argv)
    try:
        runs = plan(args)
        split = read_split(args.dataset, args.split, args.max_examples)
        models = load_models(args)
    except (ValueError, FileNotFoundError) as error:
        p.error(str(error))
    table, summary = evaluate(args, runs, models, split, argv)
    files = write_report(args.out, table, summary)
    print(files["md"].read_text(encoding="utf-8"))
    return {**summary, "results": table, "files": {kind: str(path) for kind, path in files.items()}}
