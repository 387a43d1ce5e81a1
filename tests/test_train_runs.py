"""train.py's run folders, interruptions and refusals: two fits started together get two folders and an existing
version is refused; SIGTERM and SIGINT save last.ckpt at the step reached and exit non-zero, and the run resumes from
it; a resume with changed hyperparameters, data longer than the model, an unwritable export folder and invalid
callback parameters are refused before training; without a terminal the run prints progress lines."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from jsonargparse import Namespace

from callbacks import FaithfulnessCallback
from datamodules import LanguageModelingDataModule
from lightning_modules import RunConfigurationError
from lightning_modules.base import check_sequence_length, position_limit
from test_train_cli import REPO, no_command_line, run_train, tiny, tiny_config, train  # noqa: F401 (fixtures)

MAX_STEPS = 4
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def start_train(*args: str, cwd: Path) -> subprocess.Popen:
    """``python train.py *args`` in the background, stdout a pipe (not a terminal), a progress line per step."""
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), *args, "--progress_log.every_n_seconds", "0"],
                            cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def progress_steps(stdout: str) -> list[tuple[int, int]]:
    """The ``(step, total)`` of every progress line."""
    return [(int(step), int(total)) for step, total in re.findall(r"^step (\d+)/(\d+) \(\d+%\)  epoch \d+", stdout, re.M)]


# --- run folders ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def together(tiny, tmp_path_factory) -> dict:
    """Two fits of the same config (run name ``tiny``) started at the same time."""
    folder = tmp_path_factory.mktemp("together")
    config = str(tiny_config(folder, tiny, max_steps=MAX_STEPS))
    runs = [start_train("fit", "--config", config, cwd=folder) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs):
        assert run.returncode == 0, f"{stdout[-2000:]}\n{stderr[-4000:]}"
    return {"root": folder / "runs" / "tiny", "stdouts": [stdout for stdout, _ in outputs]}


@pytest.mark.integration
def test_two_fits_started_together_get_two_folders(together):
    root = together["root"]
    logged = sorted(re.search(r"TensorBoard logs: (\S+)", stdout).group(1) for stdout in together["stdouts"])
    assert logged == [str(root / "version_0"), str(root / "version_1")]
    assert sorted(path.name for path in root.iterdir()) == ["version_0", "version_1"]
    for run in (root / "version_0", root / "version_1"):
        assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == MAX_STEPS
        assert (run / "hf_export" / "config.json").is_file()
        assert "      version: null\n" in (run / "config.yaml").read_text()  # as configured: a new folder per run
    assert len(list((root / "version_0").glob("events.out.tfevents.*"))) == 1  # one run's logs per folder


@pytest.mark.integration
def test_progress_lines_without_a_terminal(together):
    for stdout in together["stdouts"]:
        assert progress_steps(stdout) == [(step, MAX_STEPS) for step in range(1, MAX_STEPS + 1)]
        last = [line for line in stdout.splitlines() if line.startswith(f"step {MAX_STEPS}/")][0]
        assert re.fullmatch(rf"step {MAX_STEPS}/{MAX_STEPS} \(100%\)  epoch 0  train/loss \S+  val/acc \S+  "
                            r"val/loss \S+  \S+ s/step  eta 0:00:00", last), last


def logger_args(save_dir: Path, version: int | None = None) -> Namespace:
    return Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger",
                     init_args=Namespace(save_dir=str(save_dir), name="tiny", version=version))


def test_runs_claim_distinct_folders_before_writing_anything(tmp_path):
    # both configured before either run writes: TensorBoardLogger alone would give both version_0
    first, second = logger_args(tmp_path), logger_args(tmp_path)
    train.claim_run_folder(first, None)
    train.claim_run_folder(second, None)
    assert (first.init_args.version, second.init_args.version) == (0, 1)
    assert sorted(path.name for path in (tmp_path / "tiny").iterdir()) == ["version_0", "version_1"]


def test_a_fit_into_an_existing_version_is_refused(tiny, tmp_path, capsys, no_command_line):
    run = tmp_path / "runs" / "tiny" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("the earlier run's config\n")
    config = str(tiny_config(tmp_path, tiny))
    with pytest.raises(SystemExit) as exit_info:
        train.main(["fit", "--config", config, "--trainer.logger.init_args.version", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"train.py: error: the run folder {run} exists: a new run would overwrite its checkpoints, export and config. "
        "Continue that run with --ckpt_path last, or leave trainer.logger.init_args.version unset for a new folder\n")
    assert (run / "config.yaml").read_text() == "the earlier run's config\n"
    assert sorted(path.name for path in run.parent.iterdir()) == ["version_0"]
    # resuming from that folder is allowed
    train.claim_run_folder(logger_args(tmp_path / "runs", 0), str(run / "checkpoints" / "last.ckpt"))
    train.claim_run_folder(logger_args(tmp_path / "runs", 0), "last")


# --- signals ----------------------------------------------------------------------------------------------------

def stop_after_steps(config: str, cwd: Path, signum: int, steps: int, max_steps: int) -> tuple[int, str]:
    """Starts a fit of ``max_steps``, sends ``signum`` once its progress shows ``steps`` steps; its exit status
    and stdout."""
    run = start_train("fit", "--config", config, "--trainer.max_steps", str(max_steps),
                      "--trainer.val_check_interval", "8", cwd=cwd)
    lines = []
    for line in run.stdout:
        lines.append(line)
        if line.startswith(f"step {steps}/"):
            run.send_signal(signum)
            break
    stdout, stderr = run.communicate(timeout=300)  # generous: a loaded 2-core machine is slow to shut down
    assert run.returncode is not None, stderr[-3000:]
    return run.returncode, "".join(lines) + stdout


@pytest.mark.integration
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 128 + 15), (signal.SIGINT, 1)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_the_step_reached_and_exits_non_zero(tiny, tmp_path, signum, status):
    max_steps = 16  # a validation (every 8 steps) at the end: last.ckpt is the final state
    config = str(tiny_config(tmp_path, tiny))
    code, stdout = stop_after_steps(config, tmp_path, signum, 3, max_steps)
    assert code == status
    reached = progress_steps(stdout)[-1][0]
    assert 3 <= reached < max_steps
    run = tmp_path / "runs" / "tiny" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == reached
    if signum != signal.SIGTERM:
        return
    stdout = run_train("fit", "--config", config, "--trainer.max_steps", str(max_steps), "--trainer.val_check_interval",
                       "8", "--progress_log.every_n_seconds", "0", "--ckpt_path", str(last), cwd=tmp_path)
    resumed = run.parent / "version_1"
    assert f"TensorBoard logs: {resumed}" in stdout
    assert [step for step, _ in progress_steps(stdout)] == list(range(reached + 1, max_steps + 1))
    assert torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == max_steps


# --- refusals before training -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory) -> dict:
    """A 2-step fit (in-process) whose run folder a resume may continue."""
    folder = tmp_path_factory.mktemp("trained")
    config = str(tiny_config(folder, tiny, max_steps=2))
    argv = sys.argv
    sys.argv = ["train.py"]
    try:
        train.main(["fit", "--config", config])
    finally:
        sys.argv = argv
    return {"config": config, "run": folder / "runs" / "tiny" / "version_0"}


def refused(args: list[str], capsys) -> str:
    """The one-line error of a ``train.main(args)`` that exits with status 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("train.py: error: ")
    return error.removeprefix("train.py: error: ")


RESUME_ADVICE = (". A resumed run continues that training: configure the checkpoint's values (its run folder's "
                 "config.yaml holds them), or start a new run without --ckpt_path")


def test_resume_last_with_another_learning_rate_is_refused_and_keeps_the_config(trained, capsys, no_command_line):
    config_yaml = (trained["run"] / "config.yaml").read_text()
    error = refused(["fit", "--config", trained["config"], "--ckpt_path", "last", "--model.learning_rate", "0.002"],
                    capsys)
    last = trained["run"] / "checkpoints" / "last.ckpt"
    assert error == (f"the checkpoint {last} was trained with other hyperparameters than this run configures: "
                     "learning_rate=0.001 (configured 0.002)" + RESUME_ADVICE)
    assert (trained["run"] / "config.yaml").read_text() == config_yaml


def test_resume_from_a_file_with_changed_model_options_is_refused(trained, capsys, no_command_line):
    last = str(trained["run"] / "checkpoints" / "last.ckpt")
    error = refused(["fit", "--config", trained["config"], "--ckpt_path", last, "--model.b", "2.0",
                     "--model.weight_decay", "0.1"], capsys)
    assert error == (f"the checkpoint {last} was trained with other hyperparameters than this run configures: "
                     "b=1.5 (configured 2.0), weight_decay=0.01 (configured 0.1)" + RESUME_ADVICE)


def test_an_option_the_checkpoint_predates_counts_as_its_default(trained, tmp_path, capsys, no_command_line):
    checkpoint = torch.load(trained["run"] / "checkpoints" / "last.ckpt", weights_only=False)  # written by this test
    del checkpoint["hyper_parameters"]["output_gains"]  # a checkpoint from before the option existed
    older = tmp_path / "older.ckpt"
    torch.save(checkpoint, older)
    error = refused(["fit", "--config", trained["config"], "--ckpt_path", str(older), "--model.output_gains", "true"],
                    capsys)
    assert error == (f"the checkpoint {older} was trained with other hyperparameters than this run configures: "
                     "output_gains=False (configured True)" + RESUME_ADVICE)


def test_max_length_beyond_the_models_positions_is_refused(tiny, tmp_path, capsys, no_command_line):
    error = refused(["fit", "--config", str(tiny_config(tmp_path, tiny)), "--data.max_length", "256"], capsys)
    assert error == (f"data.max_length=256 exceeds the 128 positions of the model {str(tiny['model'])!r} "
                     "(max_position_embeddings): lower data.max_length to at most 128")
    assert not list((tmp_path / "runs").glob("*/*/checkpoints/*.ckpt"))


def test_position_limits():
    assert position_limit(transformers.BertConfig(max_position_embeddings=128)) == 128
    assert position_limit(transformers.GPT2Config(n_positions=64)) == 64
    # RoBERTa's position ids start after the padding id: 514 positions hold 512 tokens
    assert position_limit(transformers.RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512


def test_a_block_size_beyond_a_decoders_positions_is_refused(tmp_path):
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_positions=64, n_embd=8, n_layer=1, n_head=2))
    data = LanguageModelingDataModule(str(tmp_path), "unused", block_size=100)
    with pytest.raises(RunConfigurationError) as error:
        check_sequence_length(model, data, "tiny-gpt2")
    assert str(error.value) == ("data.block_size=100 exceeds the 64 positions of the model 'tiny-gpt2' "
                                "(max_position_embeddings): lower data.block_size to at most 64")
    check_sequence_length(model, LanguageModelingDataModule(str(tmp_path), "unused", block_size=64), "tiny-gpt2")


def test_an_unwritable_export_folder_is_refused(tiny, tmp_path, capsys, no_command_line):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    export = blocker / "export"
    error = refused(["fit", "--config", str(tiny_config(tmp_path, tiny)), "--export.dirpath", str(export)], capsys)
    assert error == (f"HFExport cannot write the export folder {export} (File exists: {blocker}): give "
                     "export.dirpath a writable folder")
    assert not list((tmp_path / "runs").glob("*/*/checkpoints/*.ckpt"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_export_folder_is_refused(tmp_path):
    from callbacks.export import check_writable_folder

    tmp_path.chmod(0o555)
    try:
        with pytest.raises(RunConfigurationError, match=re.escape(
                f"HFExport cannot write the export folder {tmp_path / 'export'} ({tmp_path}: Permission denied)")):
            check_writable_folder(tmp_path / "export")
    finally:
        tmp_path.chmod(0o755)


@pytest.mark.parametrize("kwargs, message", [
    ({"methods": ["lime"], "method_params": {"lime": {"n_samples": -3}}}, "lime n_samples must be a positive integer, got -3"),
    ({"methods": ["integrated_gradients"], "method_params": {"integrated_gradients": {"n_steps": 0}}},
     "integrated_gradients n_steps must be a positive integer, got 0"),
    ({"methods": ["kernel_shap"], "method_params": {"kernel_shap": {"n_sample": 10}}},
     "kernel_shap takes no parameter n_sample; its parameters: alpha, baseline_token_id, causal, n_samples, "
     "perturbations_per_eval, seed"),
    ({"probe_size": 0}, "FaithfulnessCallback probe_size must be at least 1, got 0"),
    ({"every_n_validations": -1}, "FaithfulnessCallback every_n_validations must be at least 1, got -1"),
    ({"heatmaps": -2}, "FaithfulnessCallback heatmaps must be at least 0, got -2"),
])
def test_invalid_callback_parameters_are_refused_when_constructed(kwargs, message):
    with pytest.raises(ValueError) as error:
        FaithfulnessCallback(**kwargs)
    assert str(error.value) == message


def test_invalid_callback_parameters_in_a_config_are_a_usage_error(tiny, tmp_path, capsys, no_command_line):
    callbacks = tmp_path / "callbacks.yaml"
    callbacks.write_text("trainer:\n  callbacks:\n    - class_path: callbacks.FaithfulnessCallback\n      init_args:\n"
                         "        methods: [lime]\n        method_params: {lime: {n_samples: -3}}\n")
    error = refused(["fit", "--config", str(tiny_config(tmp_path, tiny)), "--config", str(callbacks)], capsys)
    assert error == "lime n_samples must be a positive integer, got -3"
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.ckpt"))
