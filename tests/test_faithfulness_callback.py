"""FaithfulnessCallback: a tiny ``train.py fit`` logs every configured faithfulness scalar, the explanation times,
the custom-scalars layout and heatmaps to TensorBoard; the callback leaves training exactly as it was."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

import bcos
import train
from callbacks import FaithfulnessCallback
from callbacks.faithfulness import custom_scalars_layout
from datamodules import TextClassificationDataModule
from lightning_modules import SequenceClassifier, export_hf, export_module
from test_train_cli import tiny_config
from test_training import make_tiny_model, write_tiny_data

REPO = Path(__file__).resolve().parents[1]
METHODS = ["bcos", "integrated_gradients", "kernel_shap", "lime"]
METRICS = ["comprehensiveness", "sufficiency", "seqpg", "entropy", "special_token_share"]
CALLBACK = {
    "methods": METHODS,
    "method_params": {"integrated_gradients": {"n_steps": 4}, "kernel_shap": {"n_samples": 12},
                      "lime": {"n_samples": 12, "seed": None}},  # lime on the global RNG: isolation must hold
    "probe_size": 4, "metrics": METRICS, "seqpg_segment_length": 3, "heatmaps": 2,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def train_tiny(base: Path, data: Path, cache: Path, is_bcos: bool = True, steps: int = 40) -> SequenceClassifier:
    """``base`` fine-tuned on the tiny ``data`` until it classifies it correctly (a random tiny model predicts one
    class everywhere, which leaves the pointing game without instances). ``module.trainer`` can still save it."""
    L.seed_everything(0)
    datamodule = TextClassificationDataModule(str(data), str(base), batch_size=8, max_length=32, cache_dir=str(cache))
    module = SequenceClassifier(str(base), bcos=is_bcos, learning_rate=1e-2)
    L.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, logger=False,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(module, datamodule)
    return module.eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """The tiny data, a tiny B-cos model already trained on it and a conventional reference model (Hugging Face
    exports)."""
    root = tmp_path_factory.mktemp("tiny_faithfulness")
    data = write_tiny_data(root / "data", {"train": 32, "validation": 12, "test": 4})
    base = make_tiny_model(root / "base")
    tokenizer = bcos.load_tokenizer(str(base))
    reference = train_tiny(base, data, root / "cache", is_bcos=False, steps=20)
    model = train_tiny(base, data, root / "cache")
    return {"model": export_module(model, tokenizer, root / "model"),
            "reference": export_hf(reference.model, tokenizer, root / "reference"), "data": data,
            "cache": root / "cache"}


def write_config(folder: Path, tiny: dict[str, Path], callback: dict | None = None, **trainer) -> Path:
    """``tiny_config`` with the callback on (``CALLBACK`` updated by ``callback``); ``trainer`` overrides."""
    callbacks = [{"class_path": "callbacks.FaithfulnessCallback", "init_args": {**CALLBACK, **(callback or {})}}]
    return tiny_config(folder, tiny, model={"learning_rate": 1e-4}, callbacks=callbacks, **trainer)


def run_in_process(*args: str) -> None:
    """``train.py *args`` in this process (LightningCLI reads ``sys.argv`` too: keep pytest's out of it)."""
    argv = sys.argv
    sys.argv = ["train.py"]
    try:
        train.main(list(args))
    finally:
        sys.argv = argv


@pytest.fixture(scope="module")
def fitted(tiny, tmp_path_factory) -> Path:
    """``train.py fit`` for 4 steps with validation after steps 2 and 4, with the conventional reference model;
    returns the run folder."""
    folder = tmp_path_factory.mktemp("fit_faithfulness")
    run_in_process("fit", "--config", str(write_config(folder, tiny, {"reference_checkpoint": str(tiny["reference"])})))
    return folder / "runs" / "tiny" / "version_0"


def events(run: Path) -> EventAccumulator:
    (file,) = run.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(file), size_guidance={"tensors": 0, "images": 0, "scalars": 0})
    return accumulator.Reload()


def test_fit_logs_every_configured_scalar_layout_and_heatmaps(fitted):
    logged = events(fitted)
    tags = logged.Tags()
    names = METHODS + [f"{method}@reference" for method in METHODS if method != "bcos"]
    for name in names:
        for metric in METRICS:
            values = [event.value for event in logged.Scalars(f"faithfulness/{metric}/{name}")]
            assert len(values) == 2 and all(math.isfinite(value) for value in values), (metric, name, values)
        times = [event.value for event in logged.Scalars(f"explain_time/{name}")]
        assert len(times) == 2 and all(value > 0 for value in times)
    assert len([tag for tag in tags["scalars"] if tag.startswith("faithfulness/")]) == len(names) * len(METRICS)
    # the reference model does not change: scored once, logged every time
    reference = [event.value for event in logged.Scalars("faithfulness/comprehensiveness/lime@reference")]
    assert reference[0] == reference[1]
    # logged with the validation metrics, not during the sanity check
    steps = [event.step for event in logged.Scalars("faithfulness/sufficiency/lime")]
    assert steps == [event.step for event in logged.Scalars("val/acc")]

    (layout_event,) = logged.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(layout_event.tensor_proto.string_val[0])
    charts = {category.title: {chart.title: list(chart.multiline.tag) for chart in category.chart}
              for category in layout.category}
    assert charts["faithfulness"] == {metric: [f"^faithfulness/{metric}/"] for metric in METRICS}
    assert charts["explain_time"] == {"seconds per example": ["^explain_time/"]}
    assert charts["predictions"] == {f"class {k}": [f"^predictions/class_{k}/"] for k in range(2)}
    # the predicted-class shares of the model and the reference, and the probe's label shares (labels 0, 1, 0, 1)
    rates = {name: [[event.value for event in logged.Scalars(f"predictions/class_{k}/{name}")] for k in range(2)]
             for name in ("predicted", "predicted@reference", "labelled")}
    assert rates["labelled"] == [[0.5, 0.5], [0.5, 0.5]]
    for name in ("predicted", "predicted@reference"):
        assert all(share in (0.0, 0.25, 0.5, 0.75, 1.0) for shares in rates[name] for share in shares)
        assert [a + b for a, b in zip(*rates[name])] == [1.0, 1.0]
    assert rates["predicted@reference"][0][0] == rates["predicted@reference"][0][1]  # computed once
    assert {"heatmaps/example_0", "heatmaps/example_1"} <= set(tags["images"])
    assert len(logged.Images("heatmaps/example_0")) == 2


def test_custom_scalars_layout_puts_all_methods_of_a_metric_in_one_chart():
    layout = custom_scalars_layout(["comprehensiveness", "plausibility_auprc"])
    assert layout["faithfulness"]["plausibility_auprc"] == ["Multiline", ["^faithfulness/plausibility_auprc/"]]


def final_weights(tiny, callbacks: list) -> dict[str, torch.Tensor]:
    L.seed_everything(0)
    data = TextClassificationDataModule(str(tiny["data"]), str(tiny["model"]), batch_size=8, max_length=32,
                                        cache_dir=str(tiny["cache"]))
    module = SequenceClassifier(str(tiny["model"]), learning_rate=1e-4)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=4, val_check_interval=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=callbacks)
    trainer.fit(module, data)
    return {name: tensor.clone() for name, tensor in module.state_dict().items()}


def test_the_callback_does_not_change_training(tiny):
    callback = FaithfulnessCallback(**CALLBACK)
    with_callback = final_weights(tiny, [callback])
    assert callback._validations == 2  # it ran after steps 2 and 4
    without = final_weights(tiny, [])
    assert with_callback.keys() == without.keys()
    for name in without:
        torch.testing.assert_close(with_callback[name], without[name], rtol=0, atol=0, msg=name)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="unknown methods \\['lime2'\\]; known methods: bcos, integrated_gradients"):
        FaithfulnessCallback(methods=["bcos", "lime2"])
    with pytest.raises(ValueError, match="not configured: \\['occlusion'\\]"):
        FaithfulnessCallback(methods=["bcos"], method_params={"occlusion": {"window": 2}})
    with pytest.raises(ValueError, match="unknown metrics \\['aopc'\\]"):
        FaithfulnessCallback(metrics=["aopc"])


def faithfulness_scalars(run: Path) -> dict[str, list[float]]:
    logged = events(run)
    return {tag: [event.value for event in logged.Scalars(tag)] for tag in logged.Tags()["scalars"]
            if tag.startswith("faithfulness/")}


def test_ddp_rank_zero_scores_the_whole_probe_once(tiny, tmp_path):
    """``validate`` on two gloo processes logs what one process logs: rank zero explains the whole probe while the
    other rank waits, so no example is duplicated or missing."""
    # a fixed logit scale: the automatic one comes from the first batch a process sees, which sharding changes
    run_in_process("validate", "--config", str(write_config(tmp_path / "single", tiny)), "--model.logit_scale", "100")
    config = write_config(tmp_path / "ddp", tiny, strategy="ddp", devices=2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "validate", "--config", str(config),
                           "--model.logit_scale", "100"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-5000:]
    single = faithfulness_scalars(tmp_path / "single" / "runs" / "tiny" / "version_0")
    ddp = faithfulness_scalars(tmp_path / "ddp" / "runs" / "tiny" / "version_0")
    assert len(single) == len(METHODS) * len(METRICS) and ddp.keys() == single.keys()
    for tag, values in single.items():
        assert ddp[tag] == pytest.approx(values, rel=1e-4, abs=1e-6), tag
