"""``python -m bcos.evaluate``: explain a split with every method, score every metric, write the table.

    python -m bcos.evaluate --bcos runs/bcos/version_0/hf_export --conventional runs/conv/version_0/hf_export \\
        --dataset sst2 --split validation --max-examples 200 --out results/sst2

B-cos explains the B-cos model, the post-hoc methods explain the conventional model (and, with
``--posthoc-on-bcos``, the B-cos model too). Models are anything :func:`bcos.load` reads (a run's ``hf_export/``,
a hub id, a Lightning ``.ckpt``). Writes ``results.json``, ``results.md`` and ``results.csv`` into ``--out``
(checked to be writable before any work): every score with its bootstrap confidence interval, the interval of
B-cos minus each post-hoc method (paired over the same examples; the pointing game on another model: independent), the per-example scores (JSON), the explanation entropy, the special-token
share and the predicted-class rates. ``--max-examples N`` draws N rows stratified by label with ``--seed``.

Each method's result is saved into ``--out/methods/`` as soon as it is scored: rerunning an interrupted command
continues with the methods not yet done (a saved result is reused only for the same model weights, examples and
settings; ``--fresh`` recomputes every method).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..data import Columns, Examples, Split, read_split, tokenize_split
from ..evaluate.core import (METRICS, MethodResult, MetricSettings, check_fractions, check_metrics, predictions,
                             score_method, seqpg_instances)
from ..evaluate.intervals import Bootstrap, difference_intervals, score_intervals
from ..evaluate.report import DIFFERENCE, FILES, write_report
from ..evaluate.saved import load_result, model_digest, result_key, save_result, tensor_digest
from ..explain import EXPLAINERS, explainer_for
from ..explain.registry import check_explainer_params
from ..handle import Model
from ..loader import load
from ..metrics import DEFAULT_FRACTIONS, SeqPGInstances
from .common import (add_bootstrap, add_comparison_models, add_device, add_max_examples, add_max_length,
                     max_length_for, names, new_parser, provenance)
from .outputs import writable_folder

PROG = "python -m bcos.evaluate"
#: the folder of ``--out`` where each method's result is saved as soon as it is scored
SAVED = "methods"
POSTHOC = tuple(name for name in EXPLAINERS if name != "bcos")


def _checked(convert: Callable[[str], Any], check: Callable[[Any], Any]) -> Callable[[str], Any]:
    """An argparse type: ``convert`` the text, then ``check`` it (returns the value, raises ValueError)."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
            checked = check(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error
        return value if checked is None else checked
    return parse


def _at_least(minimum: int) -> Callable[[str], int]:
    def check(value: int) -> None:
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
    return _checked(int, check)


def _unit_interval(value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"must be in [0, 1), got {value}")


def parser() -> argparse.ArgumentParser:
    p = new_parser(PROG, __doc__)
    add_comparison_models(p, "the B-cos classifier: a model folder (a run's hf_export/), a hub id or a Lightning .ckpt",
                          "the conventional classifier of the same task (folder, hub id or .ckpt)")
    p.add_argument("--dataset", default="sst2", help="sst2, imdb, ag_news, hatexplain ($BCOS_DATA_DIR/<name>/, else "
                   "the Hub), a folder of <split>.jsonl/.csv files, or one such file (used as the split)")
    p.add_argument("--split", default="validation")
    columns = Columns()
    p.add_argument("--text-column", default=columns.text, help="column holding the text")
    p.add_argument("--label-column", default=columns.label, help="column holding the integer class id")
    p.add_argument("--rationale-column", default=None,
                   help=f"column of per-word 0/1 rationales (whitespace words), for plausibility; rows with null "
                   f"are left out of it (default: {columns.rationale!r} where the data has it; '' to ignore)")
    p.add_argument("--methods", type=names, default=None,
                   help=f"comma-separated, of: {', '.join(EXPLAINERS)} (default: bcos with --bcos, every post-hoc "
                   "method with --conventional)")
    p.add_argument("--method-params", type=json.loads, default={},
                   help='JSON of explainer parameters by method, e.g. \'{"integrated_gradients": {"n_steps": 20}}\'')
    p.add_argument("--posthoc-on-bcos", action="store_true", help="also explain the B-cos model with post-hoc methods")
    p.add_argument("--metrics", type=_checked(names, check_metrics), default=list(METRICS),
                   help="comma-separated; plausibility applies to data with rationales (hatexplain)")
    add_max_examples(p, "a sample of N usable rows, stratified by label and drawn with --seed (kept in file order)")
    add_max_length(p)
    p.add_argument("--fractions", type=_checked(lambda text: [float(f) for f in names(text)], check_fractions),
                   default=list(DEFAULT_FRACTIONS), help="erasure fractions of Comp and Suff, each in (0, 1]")
    p.add_argument("--seqpg-segment-length", type=_at_least(1), default=10)
    p.add_argument("--seqpg-segments", type=_at_least(2), default=2)
    p.add_argument("--seqpg-confidence", type=_checked(float, _unit_interval), default=0.5)
    p.add_argument("--seqpg-instances", type=_at_least(1), default=None, help="at most this many pointing-game "
                   "instances")
    add_bootstrap(p, "seed of the --max-examples sample, the pointing-game pairing and the bootstrap")
    p.add_argument("--batch-size", type=_at_least(1), default=16, help="examples per explainer call")
    p.add_argument("--bcos-logit-scale", type=float, default=None,
                   help="inverse temperature of the B-cos model's probabilities (default: the one it was trained "
                   "with, from the .ckpt or the export's config.logit_scale)")
    p.add_argument("--conventional-logit-scale", type=float, default=None)
    add_device(p)
    p.add_argument("--out", required=True, help="output folder (results.json, results.md, results.csv)")
    p.add_argument("--fresh", action="store_true", help=f"recompute every method instead of reusing the results saved "
                   f"in --out/{SAVED}/ by an earlier run with the same models, examples and settings")
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
    for name, params in args.method_params.items():
        try:
            check_explainer_params(name, params)
        except ValueError as error:
            raise ValueError(f"--method-params: {error}") from error
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


def read_data(args: argparse.Namespace) -> Split:
    """The split ``--dataset``/``--split`` in ``--*-column``, sampled to ``--max-examples`` with ``--seed``; warns
    about rows without a rationale. Raises ValueError for an explicit ``--rationale-column`` the data lacks."""
    rationale = Columns().rationale if args.rationale_column is None else args.rationale_column or None
    split = read_split(args.dataset, args.split, args.max_examples,
                       Columns(args.text_column, args.label_column, rationale), args.seed)
    present = split.rows.column_names
    if args.rationale_column and args.rationale_column not in present:
        raise ValueError(f"--rationale-column {args.rationale_column!r} is not a column of {split.source}; columns: "
                         f"{', '.join(name for name in present if name != 'source_row')}")
    if rationale in present:
        missing = split.rows[rationale].count(None)
        if missing:
            warnings.warn(f"{missing} of the {len(split.rows)} rows of {split.source} have no rationale (null in "
                          f"column {rationale!r}): plausibility leaves them out and scores the others")
    return split


def _row(method: str, role: str, result: MethodResult, intervals: dict, to_bcos: dict) -> dict[str, Any]:
    """A table row: the scores with their intervals, the differences to B-cos, counts and per-example values."""
    row = {"method": method, "model": role, **result.scores}
    for name, interval in intervals.items():
        row[f"{name}_low"], row[f"{name}_high"] = interval.low, interval.high
    for name, interval in to_bcos.items():
        row.update({f"{DIFFERENCE}{name}": interval.mean, f"{DIFFERENCE}{name}_low": interval.low,
                    f"{DIFFERENCE}{name}_high": interval.high})
    row["seconds_per_example"] = result.seconds_per_example
    if "seqpg" in result.scores:
        row["n_seqpg_instances"] = result.n_seqpg_instances
    if "plausibility" in result.settings:
        row["n_plausibility"] = result.settings["plausibility"]["n_examples"]
    return row


def _warn_truncated_rationales(role: str, result: MethodResult, max_length: int) -> None:
    coverage = result.settings.get("plausibility", {}).get("coverage")
    if coverage and coverage["truncated_away"]:
        warnings.warn(f"{coverage['truncated_away']} of the examples with a rationale lost every rationale word to "
                      f"truncation at --max-length {max_length} ({role} model's tokenizer): plausibility is scored on "
                      f"the other {coverage['scored']}")


def input_digest(classifier: Model, examples: Examples, instances: SeqPGInstances | None) -> dict[str, Any]:
    """What a method's scores on ``classifier`` depend on besides the method and the metric settings: digests of
    the model's weights and of the tokenised examples and pointing-game instances, its logit scale and link."""
    return {"model": model_digest(classifier.model), "logit_scale": classifier.logit_scale, "link": classifier.link,
            "examples": tensor_digest(examples.input_ids, examples.attention_mask, examples.labels, examples.word_ids,
                                      examples.rationale),
            "seqpg": None if instances is None else tensor_digest(instances.input_ids, instances.attention_mask,
                                                                  instances.spans, instances.labels)}


def evaluate(args: argparse.Namespace, runs: list[tuple[str, str]], models: dict[str, Model], split: Split,
             argv: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score every ``(method, role)`` of ``runs`` on the rows of ``split``; returns the table rows and the settings
    summary."""
    settings = metric_settings(args)
    bootstrap = Bootstrap(args.bootstrap_resamples, args.seed)
    max_lengths = {role: max_length_for(args.max_length, model) for role, model in models.items()}
    examples = {role: tokenize_split(split, model.tokenizer, max_lengths[role]).to(args.device)
                for role, model in models.items()}
    n_examples = len(split.rows)
    predicted = {role: predictions(model, examples[role]) for role, model in models.items()}
    instances = {role: seqpg_instances(model, examples[role], settings) if "seqpg" in settings.metrics else None
                 for role, model in models.items()}
    inputs = {role: input_digest(model, examples[role], instances[role]) for role, model in models.items()}
    results, details, explainers, reused_runs = {}, {}, {}, []
    for method, role in runs:
        classifier = models[role]
        explainer = explainer_for(classifier, method, args.method_params.get(method))
        explainers[f"{method} ({role})"] = _explainer_settings(explainer)
        saved = Path(args.out) / SAVED / f"{method}__{role}.pt"
        key = result_key(method=method, explainer=explainers[f"{method} ({role})"], metrics=vars(settings),
                         inputs=inputs[role])
        reused = None if args.fresh else load_result(saved, key)
        if reused is not None:
            print(f"{method} ({role}): reusing the result saved in {saved}")
            results[method, role] = reused
            reused_runs.append(f"{method} ({role})")
        else:
            with tqdm(total=n_examples, desc=f"{method} ({role})", unit="ex") as bar:
                results[method, role] = score_method(classifier, explainer, examples[role], instances[role],
                                                     settings, bar.update)
            save_result(saved, key, results[method, role])
        details[f"{method} ({role})"] = results[method, role].settings
    for role in models:
        first = next((result for (method, run_role), result in results.items() if run_role == role), None)
        if first is not None:
            _warn_truncated_rationales(role, first, max_lengths[role])
    reference = results.get(("bcos", "bcos"))
    table = []
    for (method, role), result in results.items():
        to_bcos = ({} if method == "bcos" or reference is None else
                   difference_intervals(reference, result, bootstrap, same_instances=role == "bcos"))
        rates = predicted[role].rates()
        table.append({**_row(method, role, result, score_intervals(result, bootstrap), to_bcos),
                      "model_accuracy": predicted[role].accuracy, "n_examples": n_examples,
                      **{f"predicted_rate_{k}": rate for k, rate in enumerate(rates["predicted"])},
                      **{f"label_rate_{k}": rate for k, rate in enumerate(rates["labelled"])},
                      "per_example": {name: values.tolist() for name, values in result.per_example.items()},
                      "per_instance": {name: values.tolist() for name, values in result.per_instance.items()}})
    summary = {
        "dataset": args.dataset, "split": args.split, "n_examples": n_examples, "data_source": split.source,
        "skipped_rows": split.skipped, "sampling": split.sampling,
        "example_rows": [row + 1 for row in split.rows["source_row"]],
        "uncertainty": {**bootstrap.describe(), "paired_reference": "bcos (bcos)" if reference is not None else None,
                        "independent_differences": [f"seqpg of {method} ({role})" for (method, role) in results
                                                    if reference is not None and method != "bcos" and role != "bcos"
                                                    and "seqpg" in results[method, role].per_instance]},
        "models": {role: {"path": model.source, "accuracy": predicted[role].accuracy,
                          "macro_f1": predicted[role].macro_f1,
                          "prediction_rates": predicted[role].rates(), "logit_scale": model.logit_scale,
                          "link_function": model.link, "max_length": max_lengths[role],
                          "architecture": type(model.model).__name__, "bcos": getattr(model.model.config, "bcos", None)}
                   for role, model in models.items()},
        "settings": {**vars(args), "metric_settings": vars(settings)},
        "explainers": explainers, "metric_settings_by_run": details,
        "reused_results": reused_runs,  # runs read from --out/methods/ (an earlier, interrupted run scored them)
        **provenance(PROG, argv),
    }
    return table, summary


def metric_settings(args: argparse.Namespace) -> MetricSettings:
    """The metric settings of the options (checked: ValueError)."""
    return MetricSettings(args.metrics, args.fractions, args.seqpg_segment_length, args.seqpg_segments,
                          args.seqpg_confidence, args.seqpg_instances, args.seed, args.batch_size)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the command on ``argv`` (default: the command line); returns the written summary with ``results`` and
    ``files``. Bad inputs exit with a usage error (status 2) that says what is wrong, before any computation
    (``--out`` is checked to be writable first). Should writing fail all the same, the results go to a
    temporary folder named in the error (exit status 1)."""
    p = parser()
    args = p.parse_args(argv)
    try:
        runs = plan(args)
        metric_settings(args)
        out = writable_folder(args.out, FILES.values(), "--out")
        split = read_data(args)
        models = load_models(args)
        for role, model in models.items():
            classes = model.model.config.num_labels
            split.check_labels(classes, f"the {classes}-class --{role} model")
    except (ValueError, FileNotFoundError) as error:
        p.error(str(error))
    table, summary = evaluate(args, runs, models, split, argv)
    try:
        files = write_report(out, table, summary)
    except OSError as error:
        rescue = Path(tempfile.mkdtemp(prefix="bcos-evaluate-"))
        write_report(rescue, table, summary)
        p.exit(1, f"{PROG}: error: writing the results into {out} failed ({error}); they are in {rescue}\n")
    print(files["md"].read_text(encoding="utf-8"))
    return {**summary, "results": table, "files": {kind: str(path) for kind, path in files.items()}}
