"""End-to-end tests of train.py: fit on a tiny model writes TensorBoard events, checkpoints and a reloadable
Hugging Face export; resume continues the schedule; DDP with two gloo processes counts validation examples;
bad configs fail with the CLI's own error; the shipped configs compose into the documented runs."""
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


CONFIGS = REPO / "configs"
DATASETS = ("sst2", "imdb", "ag_news", "hatexplain")
#: model overlay and expected model; kind overlay and expected ``bcos`` flag
MODELS = {"minilm": ((), "sentence-transformers/all-MiniLM-L6-v2"), "bert-base": (("bert-base.yaml",), "bert-base-uncased")}
KINDS = {"bcos": ((), True), "conventional": (("conventional.yaml",), False)}
RUNS = [(model, data, kind) for model in MODELS for data in DATASETS for kind in KINDS]


def composed(model: str, data: str, kind: str, *extra: str) -> list[str]:
    """The ``--config`` arguments of a documented run: base, the data set's overlay, then the model's and the kind's."""
    files = ["base.yaml", f"data/{data}.yaml", *MODELS[model][0], *KINDS[kind][0], *extra]
    return [argument for name in files for argument in ("--config", str(CONFIGS / name))]


def printed_config(arguments: list[str], capsys) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        train.main(["fit", *arguments, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("model,data,kind", RUNS, ids=["-".join(run) for run in RUNS])
def test_shipped_configs_compose(model, data, kind, capsys, no_command_line):
    config = printed_config(composed(model, data, kind), capsys)
    assert config["model"]["class_path"] == "lightning_modules.SequenceClassifier"
    init = config["model"]["init_args"]
    assert (init["model_name_or_path"], init["bcos"]) == (MODELS[model][1], KINDS[kind][1])
    overlay = yaml.safe_load((CONFIGS / "data" / f"{data}.yaml").read_text())
    assert config["data"]["init_args"]["dataset"] == data == overlay["data"]["dataset"]
    assert config["seed_everything"] == 42 and config["trainer"]["logger"]["init_args"]["save_dir"] == "runs"
    if model == "bert-base":  # one GPU, three epochs, validated twice per epoch, whatever the data set's CPU schedule
        assert (config["trainer"]["accelerator"], config["trainer"]["max_epochs"], config["trainer"]["max_steps"],
                config["trainer"]["val_check_interval"]) == ("gpu", 3, -1, 0.5)
        assert config["data"]["init_args"]["max_length"] == 512
    else:
        assert config["trainer"]["max_steps"] == overlay["trainer"]["max_steps"]
        assert config["data"]["init_args"]["max_length"] == overlay["data"]["max_length"]


@pytest.mark.parametrize("arguments", [composed("minilm", data, "bcos") for data in DATASETS]
                         + [composed("bert-base", "imdb", "bcos"), composed("minilm", "sst2", "bcos", "quickstart.yaml")],
                         ids=[*DATASETS, "bert-base-imdb", "quickstart"])
def test_every_bcos_config_resolves_to_the_recipe(arguments, capsys, no_command_line):
    model = printed_config(arguments, capsys)["model"]["init_args"]
    resolved = {key: model[key] for key in BCOS_RECIPE}
    assert model["bcos"] is True
    assert resolved == {**BCOS_RECIPE, "logit_scale": None, "learning_rate": None}  # None: the B-cos defaults ...
    module = SequenceClassifier("unused", bcos=True, logit_scale=None, learning_rate=None)
    assert module.log_logit_scale.isnan() and module.hparams.learning_rate == BCOS_RECIPE["learning_rate"]  # ...: these
    assert SequenceClassifier("unused", bcos=False).hparams.learning_rate == CONVENTIONAL_LEARNING_RATE


def dotted_keys(mapping: dict, prefix: str = "") -> set[str]:
    """``{"a": {"b": 1}}`` → ``{"a.b"}`` (lists and scalars are leaves)."""
    keys = set()
    for key, value in mapping.items():
        keys |= dotted_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return keys


def test_each_setting_is_written_once():
    """Each shipped classification config is a layer that sets only its own keys, so a setting cannot drift apart
    between copies: the data overlays set the same few keys, the kind overlay only the flag, nothing but the base the
    seed or the batch sizes' defaults."""
    files = {path.relative_to(CONFIGS).as_posix(): dotted_keys(yaml.safe_load(path.read_text()))
             for path in CONFIGS.rglob("*.yaml") if path.parent.name != "decoders"}
    assert set(files) == {"base.yaml", "conventional.yaml", "bert-base.yaml", "quickstart.yaml",
                          *(f"data/{data}.yaml" for data in DATASETS)}
    overlay_keys = {"trainer.max_steps", "trainer.val_check_interval", "data.dataset", "data.max_length"}
    for data in DATASETS:
        assert files[f"data/{data}.yaml"] - {"data.batch_size"} == overlay_keys  # IMDB's long reviews: a smaller batch
    assert files["conventional.yaml"] == {"model.bcos"}
    assert files["base.yaml"] >= {"seed_everything", "model.model_name_or_path", "model.bcos", "data.batch_size",
                                  "data.eval_batch_size"}
    for name, keys in files.items():
        if name != "base.yaml":
            assert not keys & {"seed_everything", "data.eval_batch_size"}, name
            assert not {key for key in keys if key.startswith("model.")} - {"model.bcos", "model.model_name_or_path"}, name


def test_a_run_without_a_name_is_named_after_its_model_data_and_kind():
    def namespace(**values):
        return train.Namespace(**values)

    assert train.default_run_name(namespace(model_name_or_path="sentence-transformers/all-MiniLM-L6-v2", bcos=True),
                                  namespace(dataset="sst2")) == "all-MiniLM-L6-v2_sst2_bcos"
    assert train.default_run_name(namespace(model_name_or_path="/models/tiny/", bcos=False),
                                  namespace(dataset="/data/reviews.jsonl")) == "tiny_reviews_conventional"
    assert train.default_run_name(namespace(model_name_or_path="gpt2"), namespace(dataset=None)) == "gpt2"
    assert train.default_run_name(namespace(model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct", bcos=True),
                                  namespace(dataset=["sst2", "imdb"])) == "SmolLM2-135M-Instruct_sst2+imdb_bcos"
    assert train.default_run_name(namespace(), namespace(dataset="sst2")) is None


def test_fit_names_an_unnamed_run(tiny, tmp_path, no_command_line):
    config = tiny_config(tmp_path, tiny, {"bcos": True}, max_steps=1, val_check_interval=1)
    train.main(["fit", "--config", str(config), "--trainer.logger.init_args.name", "null"])
    expected = f"{tiny['model'].name}_{tiny['data'].name}_bcos"
    assert [path.name for path in (tmp_path / "runs").iterdir()] == [expected]
    assert (tmp_path / "runs" / expected / "version_0" / "hf_export" / "config.json").is_file()
