"""Run the paper's experiments (issue 11) as resumable commands and render docs/RESULTS.md from their JSON.

    python benchmarks/paper/run.py faithfulness --budget benchmarks/paper/budgets/cpu.yaml --work /work/paper
    python benchmarks/paper/run.py b_sweep ablation --budget benchmarks/paper/budgets/cpu.yaml --work /work/paper
    python benchmarks/paper/run.py decoders --work /work/paper    # B-cos vs conventional SmolLM2, the same training
    python benchmarks/paper/run.py --render-only          # regenerate docs/RESULTS.md from the cells' JSON

Each experiment trains what its cells need with ``train.py fit`` (the budget's configs per data set and kind, composed
in order, its ``train_overrides`` and ``kind_overrides``, plus the cell's ``SequenceClassifier`` options; each model
once, its export recorded in ``<work>/models/<key>.json``), evaluates each cell with ``python -m bcos.evaluate`` (decoders: ``python -m bcos.evaluate.lm`` on one minimal-pair
suite) and writes one JSON per cell into ``--results``
(``<results>/<experiment>/<cell>.json``: the models' keys and exports and the evaluation's results, which hold
the models' accuracy and macro-F1 on the evaluated examples). Rerunning skips every model and cell already done, so an interrupted run continues where it
stopped: a training that was stopped continues from its ``last.ckpt`` (``train.py fit --ckpt_path last``: the
checkpoint of its last validation, or of its last step when a signal or an error stopped it) if it was started with
the same arguments (else it starts anew), an evaluation with the method it was scoring. Each model is trained by one
process at a time (a lock per model key); to train a model again, remove ``<work>/models/<key>.json`` and
``<work>/runs/<key>``. ``--reuse KEY=FOLDER`` takes an existing export for a model key instead of training it. Finally the tables
are rendered into ``--doc`` from all cells' JSON (never by hand).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT), str(Path(__file__).resolve().parent)]  # this checkout; experiments/render

import train  # noqa: E402
from bcos.cli import evaluate as evaluate_command  # noqa: E402
from bcos.cli import evaluate_lm as evaluate_lm_command  # noqa: E402
from experiments import EXPERIMENTS, Cell, TrainedModel, cells  # noqa: E402
from render import render  # noqa: E402

DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results" / "paper"
DEFAULT_DOC = REPO_ROOT / "docs" / "RESULTS.md"


def flag_value(value: Any) -> str:
    """A ``train.py`` command-line value (jsonargparse reads it as YAML): a string as it is (JSON quotes would
    reach the option as part of the value), anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def training_args(model: TrainedModel, budget: dict[str, Any], work: Path) -> list[str]:
    """The ``train.py`` arguments that train ``model`` into ``<work>/runs/<key>/version_<n>``."""
    settings = budget if model.task == "classification" else budget["decoders"]  # where its configs are
    configs = settings["configs"][model.kind]
    args = ["fit"]
    for config in [configs] if isinstance(configs, str) else configs:
        args += ["--config", config.format(dataset=model.dataset)]
    overrides = [*settings.get("train_overrides", []), *settings.get("kind_overrides", {}).get(model.kind, [])]
    args += [*map(str, overrides),
             "--trainer.logger.init_args.save_dir", str(work / "runs"), "--trainer.logger.init_args.name", model.key]
    for name, value in model.options:
        args += [f"--model.{name}", flag_value(value)]
    return args


def started_args(model: TrainedModel, work: Path) -> Path:
    """Where the arguments of ``model``'s last started training are kept."""
    return work / "runs" / model.key / "train_args.json"


def interrupted_checkpoint(model: TrainedModel, args: list[str], work: Path) -> Path | None:
    """The ``last.ckpt`` that ``train.py fit --ckpt_path last`` would continue for ``model``, if the training that
    wrote it was started with the same ``args`` (:func:`started_args`); otherwise None (a new run)."""
    started = started_args(model, work)
    if not started.is_file() or json.loads(started.read_text())["train_args"] != args:
        return None
    return train.latest_last_checkpoint(work / "runs" / model.key)


@contextmanager
def training_lock(model: TrainedModel, work: Path) -> Iterator[None]:
    """Holds ``<work>/models/<key>.lock`` (waiting for it): one process at a time trains a model, so two
    experiments run side by side on one ``--work`` that need the same model train it once."""
    lock = work / "models" / f"{model.key}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{model.key}: another process is training it; waiting for it to finish", flush=True)
            fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def train_model(model: TrainedModel, budget: dict[str, Any], work: Path) -> Path:
    """Trains ``model`` with ``train.py fit`` unless ``<work>/models/<key>.json`` records its export; an interrupted
    training with the same arguments continues from its ``last.ckpt``. Returns the export folder."""
    record = work / "models" / f"{model.key}.json"
    with training_lock(model, work):
        if record.is_file():  # also when another process trained it while this one waited
            return Path(json.loads(record.read_text())["export"])
        args = training_args(model, budget, work)
        resumed = interrupted_checkpoint(model, args, work)
        if resumed is not None:
            print(f"{model.key}: continuing the interrupted training from {resumed}", flush=True)
        started = started_args(model, work)
        started.parent.mkdir(parents=True, exist_ok=True)
        started.write_text(json.dumps({"train_args": args}, indent=2) + "\n")
        clock = time.perf_counter()
        cli = train.main([*args, "--ckpt_path", "last"] if resumed is not None else args)
        export = Path(cli.trainer.log_dir) / "hf_export"
        if not (export / "config.json").is_file():
            raise RuntimeError(f"training {model.key} wrote no export at {export}")
        record.write_text(json.dumps({"key": model.key, "export": str(export), "train_args": args,
                                      "steps": cli.trainer.global_step,
                                      "resumed_from": str(resumed) if resumed is not None else None,
                                      "seconds": time.perf_counter() - clock},  # of this run (after a resume)
                                     indent=2) + "\n")
    return export


def training_record(model: TrainedModel, work: Path) -> dict[str, Any] | None:
    """What :func:`train_model` recorded for ``model`` (None for a reused export)."""
    record = work / "models" / f"{model.key}.json"
    return json.loads(record.read_text()) if record.is_file() else None


def evaluation_settings(cell: Cell, budget: dict[str, Any]) -> tuple[str, str, int | None, int]:
    """The evaluated data (``--dataset`` value and split), sample size and max length of ``cell``."""
    evaluation = budget["evaluate"]
    source = budget.get("dataset_sources", {}).get(cell.dataset, cell.dataset)
    return (source, evaluation["splits"][cell.dataset], evaluation.get("max_examples"),
            evaluation["max_length"][cell.dataset])


def run_cell(cell: Cell, budget: dict[str, Any], work: Path, results: Path, reuse: dict[str, Path],
             position: int = 0) -> Path:
    """Trains the cell's models (unless reused or done), evaluates, and writes the cell's JSON (skipped when it
    exists; ``position``: the cell's place in its experiment, the row order of the rendered table)."""
    out = results / cell.experiment / f"{slug(cell.name)}.json"
    if out.is_file():
        return out
    exports = {model.kind: reuse.get(model.key) or train_model(model, budget, work) for model in cell.models}
    trainings = {model.kind: training_record(model, work) for model in cell.models}
    argv = [*(argument for kind, export in exports.items() for argument in (f"--{kind}", str(export))),
            "--out", str(work / "evaluations" / cell.experiment / slug(cell.name)), *cell.flags]
    if cell.experiment == "decoders":
        split = None
        evaluation = evaluate_lm_command.main([*argv, "--suites", cell.dataset, "--no-progress",
                                               *map(str, budget["decoders"].get("flags", []))])
    else:
        dataset, split, max_examples, max_length = evaluation_settings(cell, budget)
        argv += ["--dataset", dataset, "--split", split, "--max-length", str(max_length),
                 *map(str, budget["evaluate"].get("flags", []))]
        if max_examples is not None:
            argv += ["--max-examples", str(max_examples)]
        evaluation = evaluate_command.main(argv)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps({
        "experiment": cell.experiment, "cell": cell.name, "position": position, "dataset": cell.dataset, "split": split,
        "models": {model.kind: {"key": model.key, "options": dict(model.options), "export": str(exports[model.kind]),
                                "training": trainings[model.kind]} for model in cell.models},
        "budget": budget.get("name", "unnamed"),
        "caption": (budget["decoders"] if cell.experiment == "decoders" else budget).get("caption", ""),
        "evaluation": {key: value for key, value in evaluation.items() if key != "files"},
    }, indent=2, default=str) + "\n")
    partial.rename(out)  # a cell's JSON is complete or absent
    return out


def slug(name: str) -> str:
    return "".join(character if character.isalnum() or character in "._=-" else "_" for character in name)


def parse_reuse(text: str) -> tuple[str, Path]:
    """``KEY=FOLDER``, split at the ``=`` after which an existing folder follows (keys such as ``hatexplain-bcos-b=2.0``
    and folders may contain ``=`` themselves)."""
    for position in (index for index, character in enumerate(text) if character == "="):
        key, folder = text[:position], text[position + 1:]
        if key and Path(folder).is_dir():
            return key, Path(folder)
    raise argparse.ArgumentTypeError(f"--reuse takes KEY=FOLDER with an existing export folder, got {text!r}")


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT", help=f"of: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--budget", type=Path, default=REPO_ROOT / "benchmarks" / "paper" / "budgets" / "cpu.yaml")
    parser.add_argument("--work", type=Path, default=Path("paper_runs"), help="training runs and evaluations")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="one JSON per cell")
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="the rendered tables")
    parser.add_argument("--reuse", type=parse_reuse, action="append", default=[], metavar="KEY=FOLDER")
    parser.add_argument("--only", action="append", default=[], metavar="CELL",
                        help="run only these cells (repeatable), e.g. --only sst2 --only 'b = 2.0'")
    parser.add_argument("--render-only", action="store_true", help="only regenerate --doc from --results")
    args = parser.parse_args(argv)
    if not args.experiments and not args.render_only:
        parser.error("name at least one experiment, or give --render-only")
    unknown = [name for name in args.experiments if name not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment {unknown[0]!r}; known: {', '.join(EXPERIMENTS)}")
    if not args.budget.is_file():
        parser.error(f"--budget {args.budget}: no such file")
    budget = yaml.safe_load(args.budget.read_text())
    written = []
    for experiment in args.experiments:
        for position, cell in enumerate(cells(experiment, budget)):
            if args.only and cell.name not in args.only:
                continue
            written.append(run_cell(cell, budget, args.work, args.results, dict(args.reuse), position))
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(render(args.results))
    print(f"wrote {len(written)} cells under {args.results} and {args.doc}")
    return written


if __name__ == "__main__":
    main()
