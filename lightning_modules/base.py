"""The base of the project's LightningModules: loading and B-cos conversion of the transformers model, the logit
scale, the optimizer and schedule, and the checkpoint guards, shared by the classifier and the causal LM."""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from bcos import BcosAnnealing, BcosOptions, bcosify, calibrate_output_gains, load_model
from bcos.convert import gain_layers
from bcos.convert.annealing import CHECKPOINT_KEY as ANNEALING_KEY
from bcos.handle import probabilities, record_max_length, record_probabilities
from bcos.loader import CHECKPOINT_CONFIG_KEY, CHECKPOINT_LORA_KEY
from bcos.nn import BcosLinear
from lightning_modules.errors import RunConfigurationError
from lightning_modules.optim import (adamw_with_linear_schedule, first_batch_log_scale, parameter_groups,
                                     register_logit_scale)

#: options that change what a model computes; a checkpoint trained with others loads with a warning
MODEL_OPTION_KEYS = ("bcos", "b", "layer_b", "normalize_weights", "remove_biases", "keep_head_activations",
                     "anneal_steps", "logit_scale", "learn_logit_scale", "lora", "output_gains")


def check_anneal_steps(anneal_steps: int | float) -> None:
    """``anneal_steps`` is a number of steps (an int >= 0; 0: convert at once) or a fraction of the training
    steps (a float in (0, 1))."""
    is_steps = isinstance(anneal_steps, int) and not isinstance(anneal_steps, bool) and anneal_steps >= 0
    if not (is_steps or (isinstance(anneal_steps, float) and 0 < anneal_steps < 1)):
        raise ValueError(f"anneal_steps must be a number of steps (an int >= 0) or a fraction of the training steps "
                         f"(a float in (0, 1)), got {anneal_steps!r}")


def register_output_gain_calibration(module: nn.Module, output_gains: bool, bcos: bool, anneal_steps: int | float,
                                     lora: dict[str, Any] | None) -> None:
    """With ``output_gains``, gives ``module`` the buffer ``output_gains_calibrated`` (False until its first batch
    sets the gains; checkpoints hold it, so a resumed run keeps its gains). Refuses it for a conventional model,
    with an annealed conversion (whose layers reach the B-cos form only at the end of the ramp) and with LoRA."""
    if not output_gains:
        return
    if not bcos:
        raise ValueError("output_gains applies to B-cos models only: set bcos: true or output_gains: false")
    if lora:
        raise ValueError("output_gains and lora cannot be combined: the adapters' layers are not calibrated and their "
                         "saved adapters would not carry the gains; set output_gains: false or lora: null")
    if anneal_steps:
        raise ValueError("output_gains and anneal_steps cannot be combined: the gains are set on the first batch "
                         "for the B-cos form, which an annealed conversion reaches only at the end of its ramp; set "
                         "anneal_steps: 0")
    module.register_buffer("output_gains_calibrated", torch.tensor(False))


def position_limit(config: Any) -> int | None:
    """The most tokens one sequence of a model with this transformers config may hold: ``max_position_embeddings``
    (GPT-2's ``n_positions``), less RoBERTa's offset (its position ids start after ``pad_token_id``); None when the
    config names no limit."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and getattr(config, "model_type", None) == "roberta":
        limit -= config.pad_token_id + 1
    return limit


def check_sequence_length(model: nn.Module, datamodule: Any, model_name: str) -> None:
    """Raises RunConfigurationError when the datamodule's examples may hold more tokens than ``model`` has
    positions. The datamodule names the option that bounds them in ``sequence_length_option`` (no such attribute:
    nothing to check)."""
    option = getattr(datamodule, "sequence_length_option", None)
    limit = position_limit(model.config)
    if option is None or limit is None:
        return
    length = datamodule.hparams[option]
    if length > limit:
        raise RunConfigurationError(
            f"data.{option}={length} exceeds the {limit} positions of the model {model_name!r} "
            f"(max_position_embeddings): lower data.{option} to at most {limit}")


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


def normalized_weight_names(module: nn.Module) -> set[str]:
    """The names of the weights of ``module``'s weight-normalised B-cos layers: scale-invariant parameters (only
    their rows' directions act), which an optimizer step turns rather than resizes."""
    return {f"{prefix}.weight" if prefix else "weight" for prefix, layer in module.named_modules()
            if isinstance(layer, BcosLinear) and layer.normalize_weights}


class BcosModule(LightningModule):
    """A LightningModule around a transformers model in ``.model``, B-cosified when ``hparams.bcos``.

    Subclasses save their hyperparameters (``model_name_or_path``, ``bcos`` and the ``bcos.BcosOptions`` they take,
    ``learn_logit_scale``, ``logit_scale_lr``, ``learning_rate``, ``weight_decay``, ``warmup_fraction``, optionally
    ``anneal_steps``, ``lora``) and call :meth:`register_logit_scale`; ``link`` names the link function of their
    loss (``softmax`` or ``sigmoid``). With ``anneal_steps`` the conversion is a ``bcos.BcosAnnealing`` moved to the
    trainer's step count at the start of every training batch (its position is saved in checkpoints). With ``lora``
    (``bcos.convert.lora.add_lora`` options, e.g. ``{"r": 8, "lora_alpha": 16}``) only LoRA adapters and a new
    classification head train; ``.model`` holds the adapters (explain it directly) and ``.peft_model`` is its
    ``peft.PeftModel`` wrapper; exports merge the adapters and keep them in ``lora_adapter/`` too.
    """

    link: str = "softmax"
    #: the logged metric that picks the best checkpoint, and whether higher (``max``) or lower is better
    monitor: tuple[str, str] = ("val/loss", "min")
    model: nn.Module | None
    annealing: BcosAnnealing | None = None
    #: the ``peft.PeftModel`` around ``.model`` when ``lora`` is configured (kept out of the module tree, which
    #: holds the same layers through ``.model``) and the resolved options it was built with
    peft_model = None
    lora_options: dict[str, Any] | None = None
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
            options = {f.name: hp[f.name] for f in fields(BcosOptions) if f.name in hp}
            if hp.get("anneal_steps"):  # a fraction gets its length in optimizer_for, once training's is known
                steps = hp.anneal_steps if isinstance(hp.anneal_steps, int) else 1
                options.pop("output_gains", None)  # refused with annealing (register_output_gain_calibration)
                self.annealing = BcosAnnealing(model, steps, **options)
            else:
                bcosify(model, **options)
        elif saved_bcos and hp.get("output_gains"):
            if not gain_layers(model):
                raise ValueError(f"{hp.model_name_or_path!r} is a saved B-cos model without output gains, but "
                                 "output_gains=True was configured: set output_gains: false to train it further")
            self.output_gains_calibrated.fill_(True)  # its trained gains are kept
        if hp.get("lora"):
            self._add_lora(model, new_head=task == "sequence-classification")
        return model

    def _add_lora(self, model: nn.Module, new_head: bool) -> None:
        """Freezes ``model`` and adds the configured LoRA adapters (a new classification head trains fully)."""
        from bcos.convert.lora import add_lora, head_module_names

        if self.annealing is not None:
            raise ValueError("lora and anneal_steps cannot be combined: the adapters attach to the B-cos layers, which "
                             "an annealed conversion only creates at the end of its ramp; set anneal_steps: 0")
        options = dict(self.hparams.lora)
        if new_head:
            options.setdefault("modules_to_save", head_module_names(model))
        object.__setattr__(self, "peft_model", add_lora(model, **options))  # not a submodule: .model holds it
        self.lora_options = options

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.exp()

    def set_logit_scale(self, batch: dict[str, torch.Tensor]) -> None:
        """With ``logit_scale="auto"``, sets the scale from ``batch`` the first time (no-op afterwards): the log
        scales at the start and at the end of the annealing (the same without annealing) are
        ``first_batch_log_scale`` of the model's logits in eval mode, taken from rank 0 under DDP."""
        auto = getattr(self, "auto_log_logit_scales", None)
        if auto is None or not auto.isnan().any():
            return
        training = self.model.training
        self.model.eval()
        with torch.no_grad():
            start = first_batch_log_scale(self(batch["input_ids"], batch["attention_mask"]))
            end = start
            if self.annealing is not None and not self.annealing.finished:
                with self.annealing.preview(1.0):
                    end = first_batch_log_scale(self(batch["input_ids"], batch["attention_mask"]))
        self.model.train(training)
        values = torch.stack([start, end]).to(auto)
        if self._trainer is not None:
            values = self.trainer.strategy.broadcast(values, src=0)
        auto.copy_(values)
        with torch.no_grad():
            self.log_logit_scale.copy_(values[0] if self.hparams.learn_logit_scale else self._scheduled_log_scale())

    def calibrate_output_gains(self, batch: dict[str, torch.Tensor]) -> None:
        """With ``output_gains``, sets the B-cos layers' output gains from ``batch`` the first time (no-op
        afterwards; ``bcos.convert.calibrate_output_gains`` in eval mode), taken from rank 0 under DDP."""
        done = getattr(self, "output_gains_calibrated", None)
        if done is None or bool(done):
            return
        training = self.model.training
        self.model.eval()
        try:
            calibrate_output_gains(self.model, lambda: self(batch["input_ids"], batch["attention_mask"]))
        finally:
            self.model.train(training)
        layers = list(gain_layers(self.model).values())
        gains = torch.stack([layer.output_gain for layer in layers])
        if self._trainer is not None:
            gains = self.trainer.strategy.broadcast(gains, src=0)
        for layer, gain in zip(layers, gains):
            layer.output_gain.copy_(gain)
        done.fill_(True)

    def calibrate(self, batch: dict[str, torch.Tensor]) -> None:
        """The settings taken from the first batch the module sees: the output gains, then (on the gained model)
        the automatic logit scale. No-op once they are set."""
        self.calibrate_output_gains(batch)
        self.set_logit_scale(batch)

    def _scheduled_log_scale(self) -> torch.Tensor:
        progress = 1.0 if self.annealing is None else self.annealing.progress
        return torch.lerp(self.auto_log_logit_scales[0], self.auto_log_logit_scales[1], progress)

    def on_train_batch_start(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.calibrate(batch)
        if self.annealing is not None:
            self.advance_annealing(self.trainer.global_step, self.trainer.optimizers)
            self.log("train/anneal_progress", self.annealing.progress, batch_size=batch["input_ids"].shape[0])

    def advance_annealing(self, step: int, optimizers: list[torch.optim.Optimizer]) -> None:
        """Moves the annealing to optimizer step ``step`` (an automatic logit scale moves with it). When it ends,
        the removed parameters (the biases) leave ``optimizers`` too, so that their state matches a fresh
        ``configure_optimizers`` of the converted model (resuming works)."""
        if self.annealing is None or self.annealing.finished:
            return
        while self.annealing.completed < step and not self.annealing.finished:
            self.annealing.step()
        if hasattr(self, "auto_log_logit_scales") and not self.hparams.learn_logit_scale:
            with torch.no_grad():
                self.log_logit_scale.copy_(self._scheduled_log_scale())
        if not self.annealing.finished:
            return
        kept = {id(param) for param in self.parameters()}
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                for param in [p for p in group["params"] if id(p) not in kept]:
                    optimizer.state.pop(param, None)
                group["params"] = [p for p in group["params"] if id(p) in kept]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The model's logits (``[batch, num_labels]`` or ``[batch, seq, vocab]``)."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``link(logit_scale · logits)``: the probabilities the model is trained for (``bcos.handle``)."""
        return probabilities(logits, self.logit_scale, self.link)

    def log_logit_scale_if_learned(self, batch_size: int) -> None:
        if self.hparams.learn_logit_scale:
            self.log("train/logit_scale", self.logit_scale.detach(), batch_size=batch_size)

    def configure_model(self) -> None:
        """Refuses data whose examples may be longer than the model's positions (before any training step)."""
        datamodule = getattr(self._trainer, "datamodule", None)
        if datamodule is not None:
            check_sequence_length(self.model, datamodule, self.hparams.model_name_or_path)

    # --- optimization -----------------------------------------------------------------------------------

    def configure_optimizers(self) -> dict:
        return self.optimizer_for(int(self.trainer.estimated_stepping_batches))

    def optimizer_for(self, total_steps: int) -> dict:
        """AdamW and its warm-up/decay schedule over ``total_steps`` (the ``configure_optimizers`` answer); an
        ``anneal_steps`` fraction that has not started becomes its share of ``total_steps``."""
        hp = self.hparams
        if self.annealing is not None and isinstance(hp.anneal_steps, float) and self.annealing.completed == 0:
            self.annealing.set_length(max(1, round(hp.anneal_steps * total_steps)))
        extra = {"log_logit_scale": {"lr": hp.logit_scale_lr}} if hp.learn_logit_scale else None
        other_rate = hp.get("unnormalized_learning_rate")
        normalized = normalized_weight_names(self)
        rate_of = None if other_rate is None else (lambda name: None if name in normalized else other_rate)
        return adamw_with_linear_schedule(parameter_groups(self, hp.weight_decay, extra, rate_of), hp.learning_rate,
                                          hp.warmup_fraction, total_steps)

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
        """Records the architecture (for errors) and the transformers config with the logit scale, link and tokens
        per example, from which ``bcos.load`` rebuilds the model without Lightning."""
        checkpoint["architecture"] = self.architecture()
        # train.py runs in subclass mode, and Lightning 2.6 hands a checkpoint's `_class_path` hyperparameters back
        # to jsonargparse as `dict_kwargs`, which it refuses for these classes (`validate --ckpt_path` fails): the
        # configured class_path holds the class anyway
        (checkpoint.get(self.CHECKPOINT_HYPER_PARAMS_KEY) or {}).pop("_class_path", None)
        if self.annealing is not None:
            checkpoint[ANNEALING_KEY] = self.annealing.state_dict()
        config = self.model.config.to_dict()
        config["architectures"] = [type(self.model).__name__]
        record_probabilities(config, float(self.logit_scale), self.link)
        max_length = self.trained_max_length()
        if max_length is not None:
            record_max_length(config, max_length)
        checkpoint[CHECKPOINT_CONFIG_KEY] = config
        if self.lora_options is not None:
            checkpoint[CHECKPOINT_LORA_KEY] = self.lora_options

    def trained_max_length(self) -> int | None:
        """The tokens per training example: the datamodule's ``max_length`` (or a language model's ``block_size``);
        None without a datamodule that has one."""
        hparams = getattr(getattr(self._trainer, "datamodule", None), "hparams", None) or {}
        value = hparams.get("max_length", hparams.get("block_size"))
        return None if value is None else int(value)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remembers the checkpoint's architecture (for errors); a fit that resumes the checkpoint must configure
        its hyperparameters (RunConfigurationError naming those that differ), other loads warn about differing
        model options."""
        self._checkpoint_architecture = checkpoint.get("architecture")
        saved = checkpoint.get(self.CHECKPOINT_HYPER_PARAMS_KEY) or {}
        if self._trainer is not None and self.trainer.state.fn == "fit":
            self._check_resumed_hyperparameters(saved)
        if self.annealing is not None and ANNEALING_KEY in checkpoint:
            self.annealing.load_state_dict(checkpoint[ANNEALING_KEY])  # a finished ramp: the model's final form
        differing = [key for key in MODEL_OPTION_KEYS if key in saved and saved[key] != self.hparams.get(key)]
        if differing:
            rank_zero_warn("the checkpoint was trained with other model options: " + ", ".join(
                f"{key}={saved[key]!r} (configured {self.hparams.get(key)!r})" for key in differing))

    def _check_resumed_hyperparameters(self, saved: Mapping[str, Any]) -> None:
        """Resuming continues the checkpoint's training (its optimizer and schedule hold its learning rate): a
        configuration that says otherwise would misstate what ran."""
        keys = {key for key in {*saved, *self.hparams} if not key.startswith("_")}
        defaults = {name: parameter.default for name, parameter in inspect.signature(type(self)).parameters.items()}
        ran = {key: saved.get(key, defaults.get(key)) for key in keys}  # an option added later ran with its default
        differing = sorted(key for key in keys if ran[key] != self.hparams.get(key))
        if differing:
            raise RunConfigurationError(
                f"the checkpoint {self.trainer.ckpt_path} was trained with other hyperparameters than this run "
                "configures: " + ", ".join(f"{key}={ran[key]!r} (configured {self.hparams.get(key)!r})"
                                           for key in differing)
                + ". A resumed run continues that training: configure the checkpoint's values (its run folder's "
                  "config.yaml holds them), or start a new run without --ckpt_path")

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
