"""End-to-end tests of train.py: fit on a tiny model writes TensorBoard events, checkpoints and a reloadable
Hugging Face export; resume continues the schedule; DDP with two gloo processes counts validation examples;
bad configs fail with the CLI's own error; every shipped config parses."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import bcos
from lightning_modules import SequenceClassifier
from lightning_modules.sequence_classifier import BCOS_RECIPE, CONVENTIONAL_LEARNING_RATE
from lightning_modules.optim import linear_warmup_decay
from test_training import make_tiny_model, write_tiny_data

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("train", REPO / "train.py")  # a script, not a package
train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train)
VALIDATION_SIZE = 21  # odd: two processes must not count a padded duplicate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_cli")
    data = write_tiny_data(root / "data", {"train": 64, "validation": VALIDATION_SIZE, "test": 10})
    return {"model": make_tiny_model(root / "model"), "data": data, "cache": root / "cache"}


def tiny_config(folder: Path, tiny: dict[str, Path], model: dict | None = None, **trainer) -> Path:
    """A config for ``tiny``'s model and data, logging to ``folder/runs/tiny``; ``model`` and ``trainer``
    override model and trainer options."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 4, "val_check_interval": 2,
                    "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
                    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                               "init_args": {"save_dir": str(folder / "runs"), "name": "tiny"}},
                    **trainer},
        "model": {"model_name_or_path": str(tiny["model"]), "learning_rate": 1e-3, **(model or {})},
        "data": {"dataset": str(tiny["data"]), "batch_size": 8, "max_length": 32, "cache_dir": str(tiny["cache"])},
    }
    path = folder / "tiny.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def run_train(*args: str, cwd: Path, timeout: int = 180) -> str:
    """Runs ``python train.py *args`` offline; returns its stdout, failing with its output when it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"train.py {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of every TensorBoard event file in ``run_dir``, as ``tag -> [(step, value)]`` in order."""
    result: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*"), key=lambda path: path.stat().st_mtime):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            result.setdefault(tag, []).extend((event.step, event.value) for event in accumulator.Scalars(tag))
    return result


@pytest.fixture
def no_command_line(monkeypatch):
    """In-process CLI runs get their arguments from ``main(args)``, not from pytest's command line."""
    monkeypatch.setattr(sys, "argv", ["train.py"])


@pytest.fixture(scope="module")
def fitted(tiny, tmp_path_factory) -> dict:
    """One ``train.py fit`` on the tiny config: its stdout and run folder."""
    folder = tmp_path_factory.mktemp("fit")
    config = tiny_config(folder, tiny)
    stdout = run_train("fit", "--config", str(config), cwd=folder)
    return {"stdout": stdout, "run": folder / "runs" / "tiny" / "version_0", "config": str(config)}


def test_fit_writes_tensorboard_checkpoints_and_a_reloadable_export(fitted, tiny):
    run = fitted["run"]
    assert f"TensorBoard logs: {run}" in fitted["stdout"]
    assert f"Hugging Face export of the best model: {run / 'hf_export'}" in fitted["stdout"]
    assert "monitor: val/acc" in (run / "config.yaml").read_text()  # SequenceClassifier.monitor

    logged = scalars(run)
    assert [step for step, _ in logged["val/acc"]] == [1, 3]  # validation after steps 2 and 4
    assert all(math.isfinite(value) and 0 <= value <= 1 for _, value in logged["val/acc"] + logged["val/f1"])
    assert [value for _, value in logged["val/num_examples"]] == [VALIDATION_SIZE] * 2
    assert len(logged["train/loss"]) == 4 and all(math.isfinite(value) for _, value in logged["train/loss"])

    best = re.search(r"Best checkpoint:\s+(\S+)", fitted["stdout"]).group(1)
    assert Path(best).parent == run / "checkpoints" and (run / "checkpoints" / "last.ckpt").is_file()
    module = SequenceClassifier.load_from_checkpoint(best).eval()
    exported = bcos.load_pretrained(run / "hf_export")
    tokenizer = bcos.load_tokenizer(str(run / "hf_export"))
    batch = tokenizer(["a good film today", "a dull film"], padding=True, return_tensors="pt")
    expected = module.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    got = exported(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert exported.config.bcos["b"] == 1.5  # the recipe's b
    assert exported.config.id2label == {0: "negative", 1: "positive"}  # the data's label names
    assert exported.config.logit_scale == pytest.approx(module.logit_scale.item())


def test_validate_test_and_predict_from_the_best_checkpoint(fitted, no_command_line):
    logged = dict(scalars(fitted["run"])["val/acc"])
    best = re.search(r"Best checkpoint:\s+(\S+)", fitted["stdout"]).group(1)
    best_step = int(re.search(r"step=(\d+)", best).group(1))
    config = fitted["config"]

    validated = train.main(["validate", "--config", config, "--ckpt_path", best]).trainer.callback_metrics
    assert validated["val/acc"].item() == pytest.approx(logged[best_step - 1], abs=1e-7)
    assert validated["val/num_examples"].item() == VALIDATION_SIZE
    tested = train.main(["test", "--config", config, "--ckpt_path", best]).trainer.callback_metrics
    assert {"test/acc", "test/f1", "test/loss", "test/num_examples"} <= set(tested)
    assert tested["test/num_examples"].item() == 10

    predictions = train.main(["predict", "--config", config, "--ckpt_path", best]).trainer.predict_loop.predictions
    assert sum(len(batch["prediction"]) for batch in predictions) == 10
    probabilities = torch.cat([batch["probabilities"] for batch in predictions])
    assert probabilities.shape == (10, 2) and ((probabilities >= 0) & (probabilities <= 1)).all()
    labels = torch.cat([batch["prediction"] for batch in predictions])
    assert torch.equal(labels, torch.cat([batch["logits"] for batch in predictions]).argmax(-1))


def test_resume_continues_steps_and_schedule(tiny, tmp_path):
    steps, base_lr = 4, 1e-3
    config = tiny_config(tmp_path, tiny, max_steps=steps)
    run_train("fit", "--config", str(config), cwd=tmp_path)
    stdout = run_train("fit", "--config", str(config), "--trainer.max_steps", str(2 * steps), "--ckpt_path", "last",
                       cwd=tmp_path)
    run = tmp_path / "runs" / "tiny" / "version_0"
    assert f"TensorBoard logs: {run}" in stdout and not (run.parent / "version_1").exists()
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 * steps
    assert last["lr_schedulers"][0]["last_epoch"] == 2 * steps

    learning_rates = dict(scalars(run)["lr-AdamW/pg1"])
    warmup = int(0.1 * 2 * steps)
    expected = {step: base_lr * linear_warmup_decay(step, warmup, 2 * steps) for step in range(steps, 2 * steps)}
    assert {step: learning_rates[step] for step in expected} == pytest.approx(expected)
    assert learning_rates[steps] > 0.5 * base_lr  # not a restarted warm-up (which starts at 0)


@pytest.fixture(scope="module")
def ddp_run(tiny, tmp_path_factory) -> dict[str, list[tuple[int, float]]]:
    folder = tmp_path_factory.mktemp("ddp")
    config = tiny_config(folder, tiny, strategy="ddp", devices=2)
    stdout = run_train("fit", "--config", str(config), cwd=folder, timeout=120)
    assert stdout.count("TensorBoard logs:") == 1  # printed by rank zero only
    return scalars(folder / "runs" / "tiny" / "version_0")


def test_ddp_on_two_cpu_processes_logs_the_same_metrics(ddp_run, fitted):
    assert set(ddp_run) == set(scalars(fitted["run"]))
    assert all(math.isfinite(value) for _, value in ddp_run["val/acc"])


def test_ddp_counts_every_validation_example_once(ddp_run):
    assert [value for _, value in ddp_run["val/num_examples"]] == [VALIDATION_SIZE] * 2


def test_unknown_config_key_fails_with_the_cli_error(tiny, tmp_path, capsys, no_command_line):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  learning_rat: 0.1\n")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["fit", "--config", str(tiny_config(tmp_path, tiny)), "--config", str(bad)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert ("Problem with given class_path 'lightning_modules.SequenceClassifier':\n        Option 'learning_rat' is not "
            "accepted") in error and 'error: Parser key "model"' in error
    with pytest.raises(SystemExit):
        train.main(["fit", "--config", str(tiny_config(tmp_path, tiny)), "--trainer.max_step", "3"])
    assert "error: unrecognized arguments: --trainer.max_step 3" in capsys.readouterr().err


CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_shipped_configs_parse(config, capsys, no_command_line):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    model = re.search(r"^    model_name_or_path: (\S+)$", printed, re.M).group(1)  # under init_args
    bcos_flag = re.search(r"^    bcos: (true|false)$", printed, re.M).group(1)
    dataset = re.search(r"^    dataset: (\S+)$", printed, re.M).group(1)
    if config.stem == "quickstart":
        assert (model, bcos_flag, dataset) == ("sentence-transformers/all-MiniLM-L6-v2", "true", "sst2")
    else:
        family, data_name, kind = config.stem.split("_", 1)[0], *config.stem.split("_", 1)[1].rsplit("_", 1)
        assert model == {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "bert-base": "bert-base-uncased"}[family]
        assert (bcos_flag, dataset) == ({"bcos": "true", "conventional": "false"}[kind], data_name)
    assert "class_path: lightning_modules.SequenceClassifier" in printed and "save_dir: runs" in printed


@pytest.mark.parametrize("config", [path for path in CONFIGS if path.stem.endswith("_bcos") or path.stem == "quickstart"],
                         ids=lambda path: path.stem)
def test_every_bcos_config_resolves_to_the_recipe(config, capsys, no_command_line):
    with pytest.raises(SystemExit):
        train.main(["fit", "--config", str(config), "--print_config"])
    model = yaml.safe_load(capsys.readouterr().out)["model"]
    model = model.get("init_args", model)
    resolved = {key: model[key] for key in BCOS_RECIPE}
    assert model["bcos"] is True
    assert resolved == {**BCOS_RECIPE, "logit_scale": None, "learning_rate": None}  # None: the B-cos defaults ...
    module = SequenceClassifier("unused", bcos=True, logit_scale=None, learning_rate=None)
    assert module.log_logit_scale.isnan() and module.hparams.learning_rate == BCOS_RECIPE["learning_rate"]  # ...: these
    assert SequenceClassifier("unused", bcos=False).hparams.learning_rate == CONVENTIONAL_LEARNING_RATE


def test_every_experiment_has_a_config():
    names = {path.stem for path in CONFIGS}
    expected = {f"{family}_{data}_{kind}" for family in ("minilm", "bert-base")
                for data in ("sst2", "imdb", "ag_news", "hatexplain") for kind in ("bcos", "conventional")}
    assert expected | {"quickstart"} == names
