"""Fine-tune B-cos (or conventional) sequence classifiers, or continue training decoder LMs, with LightningCLI.

    python train.py fit --config configs/base.yaml --config configs/data/sst2.yaml              # B-cos MiniLM, SST-2
    python train.py fit --config configs/base.yaml --config configs/data/sst2.yaml --config configs/conventional.yaml
    python train.py fit --config configs/base.yaml --config configs/data/sst2.yaml --trainer.max_steps 1000
    python train.py fit --config configs/base.yaml --config configs/data/sst2.yaml --ckpt_path last  # resume
    python train.py fit --config configs/base.yaml --config configs/data/sst2.yaml --trainer.strategy ddp --trainer.devices 2
    python train.py fit --config configs/decoders/base.yaml --config configs/decoders/smollm2.yaml  # a decoder LM
    python train.py fit --config configs/base.yaml --config configs/data/sst2.yaml --print_config

The model is named once (``model.model_name_or_path``; the data's tokenizer follows it), and so is the number
of labels (``model.num_labels``; by default inferred from the data). TensorBoard logs go to
``runs/<name>/version_<n>/`` (a folder of its own per run: ``claim_run_folder``; a logger given no name:
``<model>_<dataset>_<bcos|conventional>``, ``default_run_name``), checkpoints to its ``checkpoints/``
(the best by the module's monitor, and ``last.ckpt``: the state at the latest validation, or at the step reached when
SIGINT, SIGTERM or an exception stopped the run) and the best model in Hugging Face format to its ``hf_export/``.
``fit --ckpt_path last`` continues the newest run of that name that has a ``last.ckpt`` (optimizer, schedule
and step count included), with the model hyperparameters it was trained with (others are refused). Several
``--config`` files compose, later ones overriding earlier ones. Without a terminal, ``ProgressLog`` prints progress
lines instead of a progress bar. Exit status: 2 for a run configured so that it cannot work (one message), 143 after
SIGTERM, 1 after SIGINT.

The model and the data are classes chosen by ``class_path`` (subclass mode): by default
``lightning_modules.SequenceClassifier`` on ``datamodules.TextClassificationDataModule`` (a config may then give
their arguments directly, without ``class_path``); the decoder configs name ``lightning_modules.CausalLanguageModel``
on ``datamodules.LanguageModelingDataModule``. The best checkpoint is chosen by the module's ``monitor`` (``val/acc``
for the classifier, ``val/loss`` for the causal LM) unless ``--checkpoint.monitor`` says otherwise.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from jsonargparse.typing import import_object
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from callbacks import HFExport, ProgressLog
from lightning_modules import BcosModule, RunConfigurationError

DEFAULT_MODEL = "lightning_modules.SequenceClassifier"
DEFAULT_DATA = "datamodules.TextClassificationDataModule"
#: the name TensorBoardLogger and CSVLogger give a run when none is configured
UNNAMED_RUN = "lightning_logs"


def _run_logger_args(logger: object) -> Namespace | None:
    """The init_args of a logger configured to write into ``save_dir/name/version_<n>`` (TensorBoardLogger,
    CSVLogger), else None."""
    if not isinstance(logger, Namespace) or not str(logger.get("class_path", "")).endswith(
            ("TensorBoardLogger", "CSVLogger")):
        return None
    return logger.init_args


def _run_folder(args: Namespace, version: int | str) -> Path:
    return Path(args.save_dir, args.get("name") or "", version if isinstance(version, str) else f"version_{version}")


def latest_last_checkpoint(runs: Path) -> Path | None:
    """The newest (last written) ``version_<n>/checkpoints/last.ckpt`` under a run name's folder ``runs``, or None:
    what ``fit --ckpt_path last`` continues."""
    lasts = sorted((path for path in Path(runs).glob("version_*/checkpoints/last.ckpt")
                    if path.parents[1].name.removeprefix("version_").isdigit()), key=lambda path: path.stat().st_mtime)
    return lasts[-1] if lasts else None


def continue_latest_version(logger: object) -> None:
    """For ``fit --ckpt_path last`` with an unversioned logger: reuse the newest version folder that holds a
    ``checkpoints/last.ckpt`` (Lightning looks for ``last`` in the run's own, otherwise new, folder)."""
    args = _run_logger_args(logger)
    if args is None or args.get("version") is not None:
        return
    last = latest_last_checkpoint(Path(args.save_dir, args.get("name") or ""))
    if last is not None:
        args.version = int(last.parents[1].name.removeprefix("version_"))


def claim_run_folder(logger: object, ckpt_path: str | None) -> None:
    """Gives the run a folder of its own. An unversioned logger gets the next free ``version_<n>``, claimed with
    ``os.mkdir`` (atomic: of two runs started together each gets its own; on global rank zero only, the other
    ranks follow it); a given version whose folder exists is refused unless the run resumes from that folder
    (``ckpt_path`` "last" or a file in it), since it would overwrite that run's checkpoints, export and config."""
    args = _run_logger_args(logger)
    if args is None:
        return
    if args.get("version") is not None:
        folder = _run_folder(args, args.version)
        resumes_it = ckpt_path == "last" or (ckpt_path is not None and folder.resolve() in Path(ckpt_path).resolve().parents)
        if folder.exists() and not resumes_it:
            raise RunConfigurationError(
                f"the run folder {folder} exists: a new run would overwrite its checkpoints, export and config. "
                "Continue that run with --ckpt_path last, or leave trainer.logger.init_args.version unset for a new "
                "folder")
        return
    if rank_zero_only.rank != 0:
        return
    root = Path(args.save_dir, args.get("name") or "")
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(path.name.removeprefix("version_")) for path in root.glob("version_*")
             if path.name.removeprefix("version_").isdigit()]
    version = max(taken, default=-1) + 1
    while True:
        try:
            os.mkdir(_run_folder(args, version))
            break
        except FileExistsError:
            version += 1
    args.version = version


def default_run_name(model: Namespace, data: Namespace) -> str | None:
    """``<model>_<dataset>_<bcos|conventional>`` (e.g. ``all-MiniLM-L6-v2_sst2_bcos``) from the model's and the data's
    ``init_args``, for a logger given no name; None when the model names no ``model_name_or_path``."""
    source = model.get("model_name_or_path")
    if not source:
        return None
    parts = [Path(str(source).rstrip("/")).name]
    datasets = data.get("dataset")
    if datasets:
        datasets = datasets if isinstance(datasets, (list, tuple)) else [datasets]
        parts.append("+".join(Path(str(dataset).rstrip("/")).stem for dataset in datasets))
    if model.get("bcos") is not None:
        parts.append("bcos" if model.bcos else "conventional")
    return "_".join(parts)


class RunConfig(SaveConfigCallback):
    """Writes ``config.yaml`` into the run folder, for ``fit`` once training starts: a run refused before (a
    resumed checkpoint trained with other hyperparameters, data longer than the model) leaves the folder's config
    as it was."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            super().setup(trainer, pl_module, stage)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().setup(trainer, pl_module, "fit")


class TrainCLI(LightningCLI):
    """LightningCLI with a ModelCheckpoint on the module's ``monitor``, the Hugging Face export, a learning-rate
    monitor and the tokenizer (and a classifier's ``num_labels``) linked from the model to the data."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL}, "data": {"class_path": DEFAULT_DATA}})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # Lightning 2.6 refreshes ModelCheckpoint's own last.ckpt only when a new best is saved; resuming needs
        # the latest state, so last.ckpt comes from a second checkpoint that saves at every validation
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        # ... and on an exception (SIGINT, SIGTERM, a crash) the state at the last completed step
        parser.set_defaults({"last_checkpoint.filename": "last", "last_checkpoint.monitor": None,
                             "last_checkpoint.enable_version_counter": False, "last_checkpoint.save_on_exception": True})
        parser.add_lightning_class_args(HFExport, "export")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(ProgressLog, "progress_log")
        parser.link_arguments("model.init_args.model_name_or_path", "data.init_args.tokenizer")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """LightningCLI's, with the model and data classes a config chose as the defaults: jsonargparse gives the
        arguments a chosen class shares with the default class (``SequenceClassifier``, ``TextClassificationDataModule``)
        the default class's values, not the chosen class's (jsonargparse issue #460; a decoder config would train with
        SequenceClassifier's b). So a first parse finds the chosen classes and, when they are not the defaults, a
        second parse with them as the defaults gives every argument a config does not set its own class's default."""
        if isinstance(args, (dict, Namespace)):
            return super().parse_arguments(parser, args)
        argv = sys.argv[1:] if args is None else list(args)
        probe = [arg for arg in argv if not arg.startswith("--print_config")]  # printed after the final parse only
        self.config = parser.parse_args(probe)
        subcommand = self.config.get("subcommand")
        if subcommand is not None:
            chosen = {key: self.config[subcommand][key].class_path for key in ("model", "data")}
            if chosen != {"model": DEFAULT_MODEL, "data": DEFAULT_DATA}:
                self._subcommand_parsers[subcommand].set_defaults(
                    {key: {"class_path": class_path} for key, class_path in chosen.items()})
            elif probe == argv:
                return
        self.config = parser.parse_args(argv)

    def _parse_ckpt_path(self) -> None:
        """LightningCLI replaces the configured model hyperparameters by a checkpoint's; a ``fit`` that resumes keeps
        the configured ones instead, and refuses to start when they differ (``BcosModule.on_load_checkpoint``)."""
        if self.config.get("subcommand") != "fit":
            super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        model, data = config.model.init_args, config.data.init_args
        # set once on the model (None: inferred from the data); the data checks its labels against it
        if model.get("num_labels") is not None and "num_labels" in data:
            data.num_labels = model.num_labels
        if config.checkpoint.monitor is None:
            config.checkpoint.monitor, config.checkpoint.mode = import_object(config.model.class_path).monitor
        args = _run_logger_args(config.trainer.logger)
        self._configured_version = None if args is None else args.get("version")
        if args is not None and args.get("name") in (None, UNNAMED_RUN):
            args.name = default_run_name(model, data) or args.get("name")
        if self.subcommand == "fit" and config.ckpt_path == "last":
            continue_latest_version(config.trainer.logger)
        claim_run_folder(config.trainer.logger, config.get("ckpt_path"))

    def instantiate_classes(self) -> None:
        """LightningCLI's; a class refusing its configured arguments (a ValueError of its constructor, which
        jsonargparse wraps) is a RunConfigurationError with the constructor's own message."""
        try:
            super().instantiate_classes()
        except ValueError as error:
            cause: BaseException = error
            while isinstance(cause.__cause__ or cause.__context__, ValueError):
                cause = cause.__cause__ or cause.__context__
            raise RunConfigurationError(str(cause)) from error

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        args = _run_logger_args(self.config[self.subcommand].trainer.logger)
        if args is not None:  # config.yaml records the version as configured (None: a new folder per run)
            args.version = self._configured_version

    def after_fit(self) -> None:
        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        if trainer.logger is not None:
            print(f"TensorBoard logs: {trainer.logger.log_dir}   (tensorboard --logdir {trainer.logger.save_dir})")
        if trainer.checkpoint_callback is not None:
            print(f"Best checkpoint:  {trainer.checkpoint_callback.best_model_path}")
        for callback in trainer.callbacks:
            if isinstance(callback, HFExport) and callback.export_dir(trainer).is_dir():
                print(f"Hugging Face export of the best model: {callback.export_dir(trainer)}")


def main(args: list[str] | None = None) -> TrainCLI:
    """Runs the CLI on ``args`` (default: the command line) and returns it (``.trainer``, ``.model``). A run
    configured so that it cannot work exits with status 2 and one message; one stopped by SIGTERM exits with
    128 + 15 = 143 (Lightning's own exit after SIGINT: status 1), both after ``last.ckpt`` saved the state of the
    last completed step (when a step was completed)."""
    try:
        return TrainCLI(
            BcosModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            # a progress bar in a file or a job's log shows only its last frame: ProgressLog prints lines there
            trainer_defaults={"logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                                         "init_args": {"save_dir": "runs"}},
                              "enable_progress_bar": sys.stdout.isatty()},
            parser_kwargs={"allow_abbrev": False},  # a misspelt option is an error, not a prefix of another
            save_config_callback=RunConfig,
            save_config_kwargs={"overwrite": True},  # only a resumed run reaches an existing folder (claim_run_folder)
            args=args,
        )
    except RunConfigurationError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except SIGTERMException:
        print("train.py: stopped by SIGTERM", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":
    main()
