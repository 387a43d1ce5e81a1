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
``runs/<name>/version_<n>/``, checkpoints to its ``checkpoints/`` (the best by the module's monitor, and ``last.ckpt``:
the state at the latest validation) and the best model in Hugging Face format to its ``hf_export/``.
``fit --ckpt_path last`` continues the newest run of that name that has a ``last.ckpt`` (optimizer, schedule
and step count included). Several ``--config`` files compose, later ones overriding earlier ones.

The model and the data are classes chosen by ``class_path`` (subclass mode): by default
``lightning_modules.SequenceClassifier`` on ``datamodules.TextClassificationDataModule`` (a config may then give
their arguments directly, without ``class_path``); the decoder configs name ``lightning_modules.CausalLanguageModel``
on ``datamodules.LanguageModelingDataModule``. The best checkpoint is chosen by the module's ``monitor`` (``val/acc``
for the classifier, ``val/loss`` for the causal LM) unless ``--checkpoint.monitor`` says otherwise.
"""
from __future__ import annotations

from pathlib import Path

from jsonargparse import Namespace
from jsonargparse.typing import import_object
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from callbacks import HFExport
from lightning_modules import BcosModule

DEFAULT_MODEL = "lightning_modules.SequenceClassifier"
DEFAULT_DATA = "datamodules.TextClassificationDataModule"


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
    """LightningCLI with a ModelCheckpoint on the module's ``monitor``, the Hugging Face export, a learning-rate
    monitor and the tokenizer (and a classifier's ``num_labels``) linked from the model to the data."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL}, "data": {"class_path": DEFAULT_DATA}})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # Lightning 2.6 refreshes ModelCheckpoint's own last.ckpt only when a new best is saved; resuming needs
        # the latest state, so last.ckpt comes from a second checkpoint that saves at every validation
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults({"last_checkpoint.filename": "last", "last_checkpoint.monitor": None,
                             "last_checkpoint.enable_version_counter": False})
        parser.add_lightning_class_args(HFExport, "export")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.link_arguments("model.init_args.model_name_or_path", "data.init_args.tokenizer")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        model, data = config.model.init_args, config.data.init_args
        # set once on the model (None: inferred from the data); the data checks its labels against it
        if model.get("num_labels") is not None and "num_labels" in data:
            data.num_labels = model.num_labels
        if config.checkpoint.monitor is None:
            config.checkpoint.monitor, config.checkpoint.mode = import_object(config.model.class_path).monitor
        if self.subcommand == "fit" and config.ckpt_path == "last":
            continue_latest_version(config.trainer.logger)

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
    """Runs the CLI on ``args`` (default: the command line) and returns it (``.trainer``, ``.model``)."""
    return TrainCLI(
        BcosModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults={"logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                                     "init_args": {"save_dir": "runs"}}},
        parser_kwargs={"allow_abbrev": False},  # a misspelt option is an error, not a prefix of another
        save_config_kwargs={"overwrite": True},  # a resumed run writes into its earlier folder
        args=args,
    )


if __name__ == "__main__":
    main()
