"""``benchmarks/paper/run.py`` end to end on a tiny model and data set: each experiment trains its models once,
writes one JSON per cell, resumes without redoing anything, and renders the tables from the JSON."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from test_causal_lm import make_tiny_decoder, write_text_data
from test_train_cli import tiny, tiny_config  # noqa: F401  (tiny is a fixture)

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]
PAPER = Path(__file__).resolve().parents[1] / "benchmarks" / "paper"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"paper_{name}", PAPER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_decoder_configs(root: Path) -> dict[str, str]:
    """Decoder configs (B-cos and conventional) for a tiny Llama on a few sentences, 2 steps each."""
    model, text = make_tiny_decoder(root / "decoder"), write_text_data(root / "text")
    configs = {}
    for kind in ("bcos", "conventional"):
        config = {"seed_everything": 0,
                  "trainer": {"accelerator": "cpu", "max_steps": 2, "val_check_interval": 2, "log_every_n_steps": 1,
                              "enable_progress_bar": False, "enable_model_summary": False,
                              "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                                         "init_args": {"save_dir": str(root / "runs")}}},
                  "model": {"class_path": "lightning_modules.CausalLanguageModel",
                            "init_args": {"model_name_or_path": str(model), "bcos": kind == "bcos", "b": 1.1,
                                          "learning_rate": 1e-2}},
                  "data": {"class_path": "datamodules.LanguageModelingDataModule",
                           "init_args": {"dataset": str(text), "block_size": 16, "batch_size": 4,
                                         "max_eval_blocks": 2}}}
        configs[kind] = str(root / f"decoder_{kind}.yaml")
        Path(configs[kind]).write_text(json.dumps(config))
    return configs


def write_minimal_pairs(root: Path) -> Path:
    """$BCOS_DATA_DIR with blimp/{agreement,island}.jsonl (3 rows each) and ioi/ioi.jsonl (4 rows)."""
    rows = {"blimp/agreement": [("The dogs near the house", "are", "is", [1])] * 3,
            "blimp/island": [("What did the cat see the", "man", "men", [2])] * 3,
            "ioi/ioi": [("When Mary and John went to the store, John gave a drink to", "Mary", "John", [1])] * 4}
    for name, pairs in rows.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / f"{name}.jsonl").write_text("".join(
            json.dumps({"prefix": prefix, "target": target, "foil": foil, "evidence": evidence}) + "\n"
            for prefix, target, foil, evidence in pairs))
    return root


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
        "ablation": {"dataset": "tiny", "ablations": ["biases kept", "full B-cos"]},  # rendered in this order
        "decoders": {"configs": tiny_decoder_configs(root), "suites": {"blimp": 2, "ioi": None},
                     "caption": "tiny Llama decoders, 2 steps.",
                     "flags": ["--methods", "bcos,saliency", "--bootstrap-resamples", "100"]},
    }
    path = root / "budget.yaml"
    path.write_text(yaml.safe_dump(budget))
    return path


def test_every_experiment_runs_resumes_and_renders(budget, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run.py"])
    monkeypatch.setenv("BCOS_DATA_DIR", str(write_minimal_pairs(tmp_path / "pairs")))
    run = load("run")
    work, results, doc = tmp_path / "work", tmp_path / "results", tmp_path / "RESULTS.md"
    options = ["--budget", str(budget), "--work", str(work), "--results", str(results), "--doc", str(doc)]
    experiments = ["faithfulness", "b_sweep", "ablation", "decoders"]
    written = run.main([*experiments, *options])

    assert sorted(path.relative_to(results).as_posix() for path in written) == [
        "ablation/biases_kept.json", "ablation/full_B-cos.json", "b_sweep/b_=_1.5.json", "b_sweep/b_=_2.0.json",
        "decoders/blimp.json", "decoders/ioi.json", "faithfulness/tiny.json"]
    # the recipe's B-cos model (b = 1.5, biases removed) serves three cells and is trained once; so do the decoders
    assert sorted(path.stem for path in (work / "models").glob("*.json")) == [
        "lm-bcos", "lm-conventional", "tiny-bcos", "tiny-bcos-b=2.0", "tiny-bcos-remove_biases=False",
        "tiny-conventional"]
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
    assert "Comp: the strongest post-hoc method is **occlusion**; B-cos − it: " in text
    assert "| b = 1.5 |" in text and text.index("| biases kept |") < text.index("| full B-cos |")  # the budget's order
    # a table of several cells names the command that made all of them, not the first row's evaluation
    assert ("Command: `python benchmarks/paper/run.py b_sweep` with budget `tiny` (each row's `python -m bcos.evaluate` "
            "command is in its cell's JSON)*") in text
    assert cells["b_sweep/b_=_1.5.json"]["evaluation"]["command"] not in text.split("## The B sweep")[1]
    # each sweep / ablation row against the recipe's row: the paired bootstrap of the per-example differences
    reference, swept = (cells[f"b_sweep/b_=_{b}.json"] for b in ("1.5", "2.0"))
    uncertainty = swept["evaluation"]["uncertainty"]
    first, second = (np.array([np.nan if value is None else value for value in render.bcos_row(cell)["per_example"][
        "comprehensiveness"]]) for cell in (swept, reference))
    differences = torch.from_numpy((first - second)[np.isfinite(first - second)])
    indices = torch.randint(len(differences), (uncertainty["resamples"], len(differences)),
                            generator=torch.Generator().manual_seed(uncertainty["seed"]))
    low, high = np.quantile(differences[indices].mean(dim=1).numpy(), [0.025, 0.975])
    assert "Each b row minus the recipe's (b = 1.5), paired over the same examples" in text
    assert f"| b = 2.0 | {differences.mean():+.2f} [{low:+.2f}, {high:+.2f}]" in text
    assert "Each variant row minus the recipe's (full B-cos)" in text and "| biases kept | " in text.split(
        "Each variant row minus")[1]

    # decoders: both decoders had the same training (2 steps), each suite its own rows, intervals on accuracy / MRR
    decoder_args = {kind: json.loads((work / "models" / f"lm-{kind}.json").read_text()) for kind in ("bcos", "conventional")}
    assert [record["steps"] for record in decoder_args.values()] == [2, 2]
    blimp, ioi = (cells[f"decoders/{suite}.json"]["evaluation"] for suite in ("blimp", "ioi"))
    assert [row["n_rows"] for row in blimp["skipped"]] == [2, 2, 4] and [row["n_rows"] for row in ioi["skipped"]] == [4, 4]
    assert {(row["model"], row["method"]) for row in ioi["alignment"]} == {
        ("-", "random"), ("bcos", "bcos"), ("conventional", "saliency")}
    pooled = next(row for row in ioi["competence"] if row["model"] == "bcos" and row["subset"] == "all")
    assert ioi["uncertainty"]["resamples"] == 100 and pooled["accuracy_low"] <= pooled["accuracy"] <= pooled["accuracy_high"]
    assert "### ioi" in text and "all rows of each subset file, 100 bootstrap resamples" in text
    assert "### blimp" in text and "the first 2 rows of each subset file" in text
    assert f"| all | bcos | 4 | {render.with_interval({k: 100 * pooled[k] for k in ('accuracy', 'accuracy_low', 'accuracy_high')}, 'accuracy', 1)} |" in text
    # each cell carries its own experiment's caption; the reading names the best post-hoc method by evidence MRR
    assert [cells[name]["caption"] for name in ("decoders/ioi.json", "faithfulness/tiny.json")] == [
        "tiny Llama decoders, 2 steps.", "tiny BERT, 2 steps."]
    ioi_saliency = next(row for row in ioi["alignment"] if row["method"] == "saliency" and row["subset"] == "all")
    assert (f"evidence MRR B-cos {render.number(next(row for row in ioi['alignment'] if row['method'] == 'bcos' and row['subset'] == 'all')['mrr'], 3)} "
            f"vs the best post-hoc method, saliency on the conventional model, {render.number(ioi_saliency['mrr'], 3)}: "
            "the intervals ") in text.split("### ioi")[1]

    before = {path: path.stat().st_mtime_ns for path in written}
    monkeypatch.setattr(run.train, "main", lambda args: pytest.fail(f"retrained: {args}"))
    monkeypatch.setattr(run.evaluate_command, "main", lambda argv: pytest.fail(f"re-evaluated: {argv}"))
    monkeypatch.setattr(run.evaluate_lm_command, "main", lambda argv: pytest.fail(f"re-evaluated: {argv}"))
    again = run.main([*experiments, *options])
    assert {path: path.stat().st_mtime_ns for path in again} == before
    assert doc.read_text() == text


def test_bad_experiment_names_are_usage_errors(budget, tmp_path, capsys):
    run = load("run")
    with pytest.raises(SystemExit) as exit_info:
        run.main(["faithfullness", "--budget", str(budget), "--work", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown experiment 'faithfullness'; known: faithfulness, b_sweep, ablation, decoders" in capsys.readouterr().err


def test_reuse_splits_at_the_equals_sign_before_an_existing_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run.py"])
    run = load("run")
    export = tmp_path / "runs" / "hatexplain-bcos-b=2.0" / "hf_export"
    export.mkdir(parents=True)
    assert run.parse_reuse(f"hatexplain-bcos-b=2.0={export}") == ("hatexplain-bcos-b=2.0", export)
    assert run.parse_reuse(f"sst2-bcos={export}") == ("sst2-bcos", export)
    with pytest.raises(argparse.ArgumentTypeError, match="--reuse takes KEY=FOLDER with an existing export folder"):
        run.parse_reuse(f"sst2-bcos={tmp_path / 'missing'}")


def test_the_faithfulness_reading_names_the_methods_that_beat_b_cos():
    render = load("render")

    def row(method: str, comp: tuple, suff: tuple, seqpg: tuple) -> dict:
        # (value, paired low, paired high) of B-cos − method per score
        return {"method": method, "model": "conventional", "comprehensiveness": comp[0],
                **{f"bcos_minus_{name}{suffix}": bound for name, bounds in (
                    ("comprehensiveness", comp[1:]), ("sufficiency", suff), ("seqpg", seqpg))
                   for suffix, bound in zip(("_low", "_high"), bounds)}}

    rows = [row("lime", (50.0, -1.0, 2.0), (0.5, 2.0), (-0.1, 0.1)),     # Suff: B-cos higher (worse), outside noise
            row("occlusion", (40.0, 3.0, 9.0), (-3.0, -1.0), (-0.2, -0.05)),  # SeqPG: B-cos lower, outside noise
            {"method": "saliency", "model": "conventional", "comprehensiveness": 30.0}]  # no intervals at all
    text = render.reading(rows, ["comprehensiveness", "sufficiency", "seqpg", "entropy"])
    assert ("Comp: the strongest post-hoc method is **lime**; B-cos − it: tie (the interval includes 0); "
            "Suff ↓: behind lime; SeqPG ↑: behind occlusion. Goal (B-cos ahead in Comp with the paired interval "
            "excluding 0, and best or tied-best in Suff and SeqPG): **not reached**.") in text
    rows[0].update(bcos_minus_comprehensiveness_low=0.5)  # ahead in Comp, still behind lime in Suff
    assert "B-cos − it: B-cos ahead; Suff ↓: behind lime. Goal" in render.reading(rows[:1], ["comprehensiveness",
                                                                                           "sufficiency"])
    assert "**not reached**" in render.reading(rows[:1], ["comprehensiveness", "sufficiency"])
    rows[0].update(bcos_minus_sufficiency_low=-1.0, bcos_minus_sufficiency_high=-0.5)  # now ahead in Suff too
    assert "Suff ↓: best or tied-best. Goal" in render.reading(rows[:1], ["comprehensiveness", "sufficiency"])
    assert "**reached**" in render.reading(rows[:1], ["comprehensiveness", "sufficiency"])
    rows[0].update(bcos_minus_plausibility_auprc_low=-0.2, bcos_minus_plausibility_auprc_high=-0.1)
    auprc = render.reading(rows[:1], ["comprehensiveness", "sufficiency", "plausibility_auprc"])
    assert "AUPRC ↑: behind lime" in auprc and "**reached**" in auprc  # reported, not part of the goal
    both = render.reading([rows[0], rows[2]], ["comprehensiveness", "sufficiency"])  # saliency: no interval
    assert "Suff ↓: best or tied-best among those with an interval (none against saliency)" in both
    assert "**not reached**" in both
    assert "Suff ↓: undetermined (no interval)" in render.reading(rows[2:], ["comprehensiveness", "sufficiency"])


def sweep_cell(b: float, entropy: float, special_share: float) -> dict:
    """A b-sweep cell with only what the trend reading reads."""
    return {"cell": f"b = {b}", "evaluation": {"models": {"bcos": {"bcos": {"b": b}}}, "results": [
        {"method": "bcos", "entropy": entropy, "special_token_share": special_share}]}}


def test_the_trend_over_b_orders_rows_by_b_and_checks_monotonicity():
    render = load("render")
    # given out of order; ordered by b: entropy 0.8 > 0.7 > 0.6 falls, special share 0.1, 0.3, 0.2 is not monotone
    cells = [sweep_cell(2.0, 0.6, 0.2), sweep_cell(1.0, 0.8, 0.1), sweep_cell(1.5, 0.7, 0.3)]
    assert render.trend_over_b(cells) == [
        "Trend over b (point estimates of single trainings, b = 1.0, 1.5, 2.0): entropy falls monotonically with b "
        "(0.800 → 0.700 → 0.600; as in the paper); special share is not monotone with b (0.100 → 0.300 → 0.200; "
        "the paper: it rises).", ""]
    assert render.trend_over_b(cells[:2]) == []  # two rows show no trend


def test_option_values_reach_train_py_unquoted():
    run = load("run")
    assert [run.flag_value(value) for value in ("ce", False, 1.0, None)] == ["ce", "false", "1.0", "null"]


def test_an_interrupted_training_continues_from_its_last_checkpoint(tiny, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(sys, "argv", ["run.py"])
    run = load("run")
    config = tiny_config(tmp_path, tiny, {"bcos": True}, max_steps=4, val_check_interval=2)
    budget = {"configs": {"bcos": str(config)}, "train_overrides": []}
    model, work = run.TrainedModel("tiny", "bcos"), tmp_path / "work"
    runs, real_main = work / "runs" / model.key, run.train.main

    def stopped_at_step_2(args):  # stopped after its validation (checkpoint, export of the best) at step 2
        real_main([*args, "--trainer.max_steps", "2"])
        raise KeyboardInterrupt

    monkeypatch.setattr(run.train, "main", stopped_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        run.train_model(model, budget, work)
    last = runs / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 2
    monkeypatch.setattr(run.train, "main", real_main)
    export = run.train_model(model, budget, work)
    record = json.loads((work / "models" / f"{model.key}.json").read_text())
    assert (record["steps"], record["resumed_from"]) == (4, str(last))
    # continued in its own folder to step 4 (a fresh start would have trained in version_1)
    assert export == runs / "version_0" / "hf_export" and (export / "config.json").is_file()
    assert torch.load(last, weights_only=False)["global_step"] == 4 and not (runs / "version_1").exists()
    assert run.train_model(model, budget, work) == export  # recorded: not trained again

    # a checkpoint left by a training with other arguments is not continued: a new run
    (work / "models" / f"{model.key}.json").unlink()
    started = runs / "train_args.json"
    started.write_text(json.dumps({"train_args": ["fit", "--model.b", "2.0"]}))
    assert run.train_model(model, budget, work) == runs / "version_1" / "hf_export"
    assert json.loads((work / "models" / f"{model.key}.json").read_text())["resumed_from"] is None
