"""``benchmarks/paper/run.py`` end to end on a tiny model and data set: each experiment trains its models once,
writes one JSON per cell, resumes without redoing anything, and renders the tables from the JSON."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from test_train_cli import tiny, tiny_config  # noqa: F401  (tiny is a fixture)

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]
PAPER = Path(__file__).resolve().parents[1] / "benchmarks" / "paper"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"paper_{name}", PAPER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def budget(tiny, tmp_path_factory) -> Path:  # noqa: F811
    root = tmp_path_factory.mktemp("paper")
    base = tiny_config(root, tiny, {"bcos": True}, max_steps=2, val_check_interval=2)
    conventional = root / "conventional.yaml"
    conventional.write_text("model:\n  bcos: false\n")
    budget = {
        "name": "tiny", "caption": "tiny BERT, 2 steps.",
        "configs": {"bcos": str(base), "conventional": [str(base), str(conventional)]},  # one file, or composed
        "kind_overrides": {"conventional": ["--model.learning_rate", 2e-3]},
        "dataset_sources": {"tiny": str(tiny["data"])},
        "evaluate": {"splits": {"tiny": "validation"}, "max_length": {"tiny": 32}, "max_examples": 12,
                     "flags": ["--bootstrap-resamples", "200", "--metrics", "comprehensiveness,sufficiency"]},
        "posthoc_methods": ["occlusion"],
        "faithfulness": {"datasets": ["tiny"]},
        "b_sweep": {"dataset": "tiny", "b_values": [1.5, 2.0]},
        "ablation": {"dataset": "tiny", "ablations": ["full B-cos", "biases kept"]},
    }
    path = root / "budget.yaml"
    path.write_text(yaml.safe_dump(budget))
    return path


def test_every_experiment_runs_resumes_and_renders(budget, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run.py"])
    run = load("run")
    work, results, doc = tmp_path / "work", tmp_path / "results", tmp_path / "RESULTS.md"
    options = ["--budget", str(budget), "--work", str(work), "--results", str(results), "--doc", str(doc)]
    written = run.main(["faithfulness", "b_sweep", "ablation", *options])

    assert sorted(path.relative_to(results).as_posix() for path in written) == [
        "ablation/biases_kept.json", "ablation/full_B-cos.json", "b_sweep/b_=_1.5.json", "b_sweep/b_=_2.0.json",
        "faithfulness/tiny.json"]
    # the recipe's B-cos model (b = 1.5, biases removed) serves three cells and is trained once
    assert sorted(path.stem for path in (work / "models").glob("*.json")) == [
        "tiny-bcos", "tiny-bcos-b=2.0", "tiny-bcos-remove_biases=False", "tiny-conventional"]
    conventional_args = json.loads((work / "models" / "tiny-conventional.json").read_text())["train_args"]
    assert conventional_args[:7] == ["fit", "--config", str(budget.parent / "tiny.yaml"), "--config",
                                     str(budget.parent / "conventional.yaml"), "--model.learning_rate", "0.002"]
    conventional_run = Path(json.loads((work / "models" / "tiny-conventional.json").read_text())["export"]).parent
    hparams = yaml.safe_load((conventional_run / "hparams.yaml").read_text())
    assert (hparams["bcos"], hparams["learning_rate"]) == (False, 2e-3)
    cells = {path.relative_to(results).as_posix(): json.loads(path.read_text()) for path in written}
    shared = {cell["models"]["bcos"]["export"] for name, cell in cells.items()
              if name in ("faithfulness/tiny.json", "b_sweep/b_=_1.5.json", "ablation/full_B-cos.json")}
    assert len(shared) == 1
    assert cells["b_sweep/b_=_2.0.json"]["evaluation"]["models"]["bcos"]["bcos"]["b"] == 2.0
    assert cells["ablation/biases_kept.json"]["models"]["bcos"]["options"] == {"remove_biases": False}

    faithfulness = cells["faithfulness/tiny.json"]["evaluation"]["results"]
    assert [(row["method"], row["model"]) for row in faithfulness] == [
        ("bcos", "bcos"), ("occlusion", "conventional"), ("occlusion", "bcos")]
    assert not any("n_seqpg_instances" in row for row in faithfulness)  # SeqPG was not among the budget's metrics
    text = doc.read_text()
    render = load("render")
    assert text == render.render(results)  # the document is the rendering of the JSON
    occlusion = faithfulness[1]
    assert render.with_interval(occlusion, "comprehensiveness") in text
    assert render.with_interval(occlusion, "bcos_minus_comprehensiveness", signed=True) in text
    assert "against the strongest post-hoc method in Comp on the conventional model, **occlusion**" in text
    assert "| b = 1.5 |" in text and "| biases kept |" in text

    before = {path: path.stat().st_mtime_ns for path in written}
    monkeypatch.setattr(run.train, "main", lambda args: pytest.fail(f"retrained: {args}"))
    monkeypatch.setattr(run.evaluate_command, "main", lambda argv: pytest.fail(f"re-evaluated: {argv}"))
    again = run.main(["faithfulness", "b_sweep", "ablation", *options])
    assert {path: path.stat().st_mtime_ns for path in again} == before
    assert doc.read_text() == text


def test_bad_experiment_names_are_usage_errors(budget, tmp_path, capsys):
    run = load("run")
    with pytest.raises(SystemExit) as exit_info:
        run.main(["faithfullness", "--budget", str(budget), "--work", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown experiment 'faithfullness'; known: faithfulness, b_sweep, ablation" in capsys.readouterr().err
