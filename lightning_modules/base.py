"""The base of the project's LightningModules: loading and B-cos conversion of the transformers model, the logit
scale, the optimizer and schedule, and the checkpoint guards, shared by the classifier and the causal LM."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from bcos import BcosOptions, bcosify, load_model
from bcos.handle import probabilities, record_probabilities
from bcos.loader import CHECKPOINT_CONFIG_KEY
from lightning_modules.optim import adamw_with_linear_schedule, parameter_groups, register_logit_scale

#: options that change what a model computes; a checkpoint trained with others loads with a warning
MODEL_OPTION_KEYS = ("bcos", "b", "layer_b", "normalize_weights", "remove_biases", "keep_head_activations",
                     "logit_scale", "learn_logit_scale")


def _state_dict_difference(expected: Mapping[str, torch.Tensor], given: Mapping[str, Any]) -> str:
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    reshaped = sorted(f"{k} {tuple(given[k].shape)} vs {tuple(expected[k].shape)}" for k in set(expected) & set(given)
                      if hasattr(given[k], "shape") and given[k].shape != expected[k].shape)
    parts = [(f"{len(keys)} {what}", keys[:3]) for what, keys in
             (("keys of the configured model missing from the checkpoint", missing),
              ("keys in the checkpoint that the configured model lacks", unexpected),
              ("tensors of another shape (checkpoint vs configured)", reshaped)) if keys]
    return "; ".join(f"{label} (e.g. {', '.join(examples)})" for label, examples in parts)


class BcosModule(LightningModule):
    """A LightningModule around a transformers model in ``.model``, B-cosified when ``hparams.bcos``.

    Subclasses save their hyperparameters (``model_name_or_path``, ``bcos`` and the ``bcos.BcosOptions`` they take,
    ``learn_logit_scale``, ``logit_scale_lr``, ``learning_rate``, ``weight_decay``, ``warmup_fraction``) and call
    :meth:`register_logit_scale`; ``link`` names the link function of their loss (``softmax`` or ``sigmoid``).
    """

    link: str = "softmax"
    #: the logged metric that picks the best checkpoint, and whether higher (``max``) or lower is better
    monitor: tuple[str, str] = ("val/loss", "min")
    model: nn.Module | None
    _checkpoint_architecture: str | None = None

    def register_logit_scale(self, logit_scale: float, learn: bool) -> None:
        """The loss's inverse temperature, stored as ``log_logit_scale`` (see ``optim.register_logit_scale``)."""
        register_logit_scale(self, logit_scale, learn)

    # --- model ------------------------------------------------------------------------------------------

    def _load(self, task: str, **kwargs) -> nn.Module:
        """``model_name_or_path`` loaded for ``task`` and converted with the configured B-cos options (a saved
        B-cos model is loaded as it is)."""
        hp = self.hparams
        model = load_model(hp.model_name_or_path, task=task, **kwargs)
        saved_bcos = getattr(model.config, "bcos", None) is not None
        if saved_bcos and not hp.bcos:
            raise ValueError(f"{hp.model_name_or_path!r} is a saved B-cos model but bcos=False was configured")
        if hp.bcos and not saved_bcos:
            bcosify(model, **{f.name: hp[f.name] for f in fields(BcosOptions) if f.name in hp})
        return model

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.exp()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The model's logits (``[batch, num_labels]`` or ``[batch, seq, vocab]``)."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``link(logit_scale · logits)``: the probabilities the model is trained for (``bcos.handle``)."""
        return probabilities(logits, self.logit_scale, self.link)

    def log_logit_scale_if_learned(self, batch_size: int) -> None:
        if self.hparams.learn_logit_scale:
            self.log("train/logit_scale", self.logit_scale.detach(), batch_size=batch_size)

    # --- optimization -----------------------------------------------------------------------------------

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        extra = {"log_logit_scale": {"lr": hp.logit_scale_lr}} if hp.learn_logit_scale else None
        return adamw_with_linear_schedule(parameter_groups(self, hp.weight_decay, extra), hp.learning_rate,
                                          hp.warmup_fraction, int(self.trainer.estimated_stepping_batches))

    def on_train_start(self) -> None:
        """Puts the schedule's learning rate into the optimizer: a run resumed with another ``max_steps`` has a new
        schedule but restored the old one's last learning rate."""
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            lrs = [base * rule(scheduler.last_epoch) for base, rule in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
            for group, lr in zip(scheduler.optimizer.param_groups, lrs):
                group["lr"] = lr
            scheduler._last_lr = lrs

    # --- checkpoints ------------------------------------------------------------------------------------

    def architecture(self) -> str:
        """One line naming the model, e.g. ``B-cos (b=2.0) BertForSequenceClassification from 'x'``."""
        hp = self.hparams
        kind = f"B-cos (b={hp.b})" if hp.bcos else "conventional"
        return f"{kind} {type(self.model).__name__} from {hp.model_name_or_path!r}"

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Records the architecture (for errors) and the transformers config with the logit scale and link, from
        which ``bcos.load`` rebuilds the model without Lightning."""
        checkpoint["architecture"] = self.architecture()
        # train.py runs in subclass mode, and Lightning 2.6 hands a checkpoint's `_class_path` hyperparameters back
        # to jsonargparse as `dict_kwargs`, which it refuses for these classes (`validate --ckpt_path` fails): the
        # configured class_path holds the class anyway
        (checkpoint.get(self.CHECKPOINT_HYPER_PARAMS_KEY) or {}).pop("_class_path", None)
        config = self.model.config.to_dict()
        config["architectures"] = [type(self.model).__name__]
        record_probabilities(config, float(self.logit_scale), self.link)
        checkpoint[CHECKPOINT_CONFIG_KEY] = config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remembers the checkpoint's architecture (for errors) and warns about differing model options."""
        self._checkpoint_architecture = checkpoint.get("architecture")
        saved = checkpoint.get(self.CHECKPOINT_HYPER_PARAMS_KEY) or {}
        differing = [key for key in MODEL_OPTION_KEYS if key in saved and saved[key] != self.hparams.get(key)]
        if differing:
            rank_zero_warn("the checkpoint was trained with other model options: " + ", ".join(
                f"{key}={saved[key]!r} (configured {self.hparams.get(key)!r})" for key in differing))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``; a checkpoint of another architecture raises a ValueError naming both."""
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except RuntimeError as error:
            raise ValueError(
                f"The checkpoint holds {self._checkpoint_architecture or 'a model of another architecture'}, which "
                f"does not fit the configured {self.architecture()}: "
                f"{_state_dict_difference(self.state_dict(), state_dict)}"
            ) from error
