"""The callback that exports the best model in Hugging Face format, next to the Lightning checkpoints."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from bcos import load_tokenizer
from bcos.convert import annealing_progress
from lightning_modules.errors import RunConfigurationError
from lightning_modules.export import export_module


def check_writable_folder(folder: Path) -> None:
    """Raises RunConfigurationError unless ``folder`` can be (re)written: a writable folder, or one that does not
    exist yet in a folder (created here if missing) that takes new entries."""
    if folder.is_file():
        problem = "it is a file"
    elif folder.is_dir() and not os.access(folder, os.W_OK):
        problem = "it is read-only"
    else:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            problem = f"{error.strerror}: {error.filename}"
        else:
            try:
                tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.").cleanup()
                problem = None
            except OSError as error:
                problem = f"{folder.parent}: {error.strerror}"
    if problem is not None:
        raise RunConfigurationError(f"HFExport cannot write the export folder {folder} ({problem}): give "
                                    "export.dirpath a writable folder")


class HFExport(Callback):
    """Exports the Hugging Face model of the module every time the Trainer's ``ModelCheckpoint`` saves a new
    best checkpoint, so that ``dirpath`` always holds the best model so far (with its tokenizer).

    The module must keep its transformers model in ``.model``. The tokenizer is the datamodule's
    ``tokenizer`` when it has one, else loaded for ``hparams.model_name_or_path``. A model in the middle of an
    annealed B-cos conversion is not exported (it is not yet a B-cos model); if the run ends without any export
    because every best checkpoint came from the ramp, the final model is exported at the end of training.

    Args:
        dirpath: the export folder; by default ``hf_export`` next to the checkpoint folder.
    """

    def __init__(self, dirpath: str | None = None) -> None:
        self.dirpath = dirpath
        self._seen_best: str | None = None
        self._skipped_during_annealing = False

    def export_dir(self, trainer: Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        return Path(trainer.checkpoint_callback.dirpath).parent / "hf_export"

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Refuses an export folder that cannot be written, before any training step."""
        if trainer.is_global_zero:
            check_writable_folder(self.export_dir(trainer))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # a resumed run starts from the restored best: only a new best triggers an export
        self._seen_best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else None

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        # ModelCheckpoint updates best_model_path just before saving the new best: the live model is that best
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best or best == self._seen_best:
            return
        self._seen_best = best
        progress = annealing_progress(pl_module.model)
        if progress is not None:
            if not self._skipped_during_annealing:
                rank_zero_info(f"HFExport: not exporting the best checkpoint so far: the model is at {progress:.0%} "
                               "of its annealed B-cos conversion; exports start once it has ended")
            self._skipped_during_annealing = True
            return
        self._skipped_during_annealing = False
        self._export(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._skipped_during_annealing and annealing_progress(pl_module.model) is None:
            rank_zero_warn("HFExport: every best checkpoint of this run came from the annealing ramp; exporting the "
                           "final (fully converted) model instead of the best one")
            self._skipped_during_annealing = False
            self._export(trainer, pl_module)

    def _export(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            tokenizer = getattr(trainer.datamodule, "tokenizer", None) or load_tokenizer(
                pl_module.hparams.model_name_or_path)
            export_module(pl_module, tokenizer, self.export_dir(trainer))
