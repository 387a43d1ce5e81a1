"""Fine-tune B-cos (or conventional) sequence classifiers, or continue training decoder LMs, with LightningCLI.

    python train.py fit --config configs/quickstart.yaml
    python train.py fit --config configs/decoders/smollm2_bcos.yaml            # a decoder LM (configs/decoders/)
    python train.py fit --config configs/minilm_sst2_bcos.yaml --trainer.max_steps 1000
    python train.py fit --config configs/quickstart.yaml --ckpt_path last     # resume the latest run
    python train.py test --config configs/quickstart.yaml --ckpt_path runs/quickstart/version_0/checkpoints/last.ckpt
    python train.py fit --config configs/minilm_sst2_bcos.yaml --trainer.strategy ddp --trainer.devices 2
    python train.py fit --config configs/quickstart.yaml --print_config

The model is named once (``model.model_name_or_path``; the data's tokenizer follows it), and so is the number
of labels (``model.num_labels``; by default inferred from the data). TensorBoard logs go to
``runs/<name>/version_<n>/``, checkpoints to its ``checkpoints/`` (the best by ``val/acc``, and ``last.ckpt``:
the state at the latest validation) and the best model in Hugging Face format to its ``hf_export/``.
``fit --ckpt_path last`` continues the newest run of that name that has a ``last.ckpt`` (optimizer, schedule
and step count included). Several ``--config`` files compose, later ones overriding earlier ones.

A config whose ``model`` is ``class_path: lightning_modules.CausalLanguageModel`` (the decoder configs) runs
:class:`CausalLMTrainCLI` instead: ``lightning_modules.CausalLanguageModel`` on
``datamodules.LanguageModelingDataModule``, checkpoints by ``val/loss``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml
from jsonargparse import Namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from datamodules import LanguageModelingDataModule, TextClassificationDataModule
from lightning_modules import CausalLanguageModel, HFExport, SequenceClassifier


def continue_latest_version(logger: object) -> None:
    """For ``fit --ckpt_path last`` with an unversioned TensorBoard logger: reuse the newest version folder that
    holds a ``checkpoints/last.ckpt`` (Lightning looks for ``last`` in the run's own, otherwise new, folder)."""
    if not isinstance(logger, Namespace) or not str(logger.get("class_path", "")).endswith("TensorBoardLogger"):
        return
    args = logger.init_args
    if args.get("version") is not None:
        return
    lasts = sorted(Path(args.save_dir, args.get("name") or "").glob("version_*/checkpoints/last.ckpt"),
                   key=lambda path: path.stat().st_mtime)
    if lasts:
        args.version = int(lasts[-1].parents[1].name.removeprefix("version_"))


class TrainCLI(LightningCLI):
    """LightningCLI with a ModelCheckpoint on ``val/acc``, the Hugging Face export, a learning-rate monitor and the
    tokenizer linked to the model."""

    monitor = {"checkpoint.monitor": "val/acc", "checkpoint.mode": "max"}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(self.monitor)
        # Lightning 2.6 refreshes ModelCheckpoint's own last.ckpt only when a new best is saved; resuming needs
        # the latest state, so last.ckpt comes from a second checkpoint that saves at every validation
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults({"last_checkpoint.filename": "last", "last_checkpoint.monitor": None,
                             "last_checkpoint.enable_version_counter": False})
        parser.add_lightning_class_args(HFExport, "export")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        self.link_model_and_data(parser)

    def link_model_and_data(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.model_name_or_path", "data.tokenizer")
        # set once on the model (None: inferred from the data); the data checks its labels against it
        parser.link_arguments("model.num_labels", "data.num_labels")

    def before_instantiate_classes(self) -> None:
        if self.subcommand == "fit" and self.config.fit.ckpt_path == "last":
            continue_latest_version(self.config.fit.trainer.logger)

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


class CausalLMTrainCLI(TrainCLI):
    """:class:`TrainCLI` for decoder LMs: the model and data are given by ``class_path`` (subclasses of
    ``CausalLanguageModel`` and ``LanguageModelingDataModule``), the best checkpoint has the lowest ``val/loss``."""

    monitor = {"checkpoint.monitor": "val/loss", "checkpoint.mode": "min"}

    def link_model_and_data(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.init_args.model_name_or_path", "data.init_args.tokenizer")


def _config_files(args: list[str]) -> list[str]:
    """The files given to ``--config`` / ``-c`` in ``args``."""
    files = [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    return files + [value for flag, value in zip(args, args[1:]) if flag in ("--config", "-c")]


def selects_causal_lm(args: list[str]) -> bool:
    """Whether a config file in ``args`` (or ``--model X`` / ``--model=X``) names ``CausalLanguageModel`` as the model's class."""
    named = [value for flag, value in zip(args, args[1:]) if flag == "--model"]
    named += [arg.split("=", 1)[1] for arg in args if arg.startswith("--model=")]
    for path in _config_files(args):
        config = yaml.safe_load(Path(path).read_text()) if Path(path).is_file() else None
        model = config.get("model") if isinstance(config, dict) else None
        if isinstance(model, dict):
            named.append(str(model.get("class_path", "")))
    return any(name.endswith("CausalLanguageModel") for name in named)


def main(args: list[str] | None = None) -> TrainCLI:
    """Runs the CLI on ``args`` (default: the command line) and returns it (``.trainer``, ``.model``)."""
    causal = selects_causal_lm(sys.argv[1:] if args is None else args)
    return (CausalLMTrainCLI if causal else TrainCLI)(
        CausalLanguageModel if causal else SequenceClassifier,
        LanguageModelingDataModule if causal else TextClassificationDataModule,
        subclass_mode_model=causal,
        subclass_mode_data=causal,
        trainer_defaults={"logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                                     "init_args": {"save_dir": "runs"}}},
        parser_kwargs={"allow_abbrev": False},  # a misspelt option is an error, not a prefix of another
        save_config_kwargs={"overwrite": True},  # a resumed run writes into its earlier folder
        args=args,
    )


if __name__ == "__main__":
    main()
