"""A LightningModule that fine-tunes a Hugging Face sequence classifier, B-cos or conventional."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from bcos import BcosAnnealing, bcosify, load_model
from lightning_modules.optim import (AUTO_LOGIT_SCALE, adamw_with_linear_schedule, first_batch_log_scale,
                                     parameter_groups, register_logit_scale)

LOSSES = ("bce", "ce")
#: options that change what a model computes; a checkpoint trained with others loads with a warning
MODEL_OPTION_KEYS = ("bcos", "b", "layer_b", "normalize_weights", "remove_biases", "keep_head_activations",
                     "anneal_steps", "logit_scale", "learn_logit_scale")


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


class SequenceClassifier(LightningModule):
    """Fine-tunes ``model_name_or_path`` for sequence classification, optionally converted with ``bcos.bcosify``.

    The model is built as soon as ``num_labels`` is known: in ``__init__`` when given, else in
    ``configure_model`` with the datamodule's ``num_labels`` (stored in the hyperparameters, so checkpoints
    reload with ``SequenceClassifier.load_from_checkpoint``). Logs ``train/loss``, ``val/{loss,acc,f1,
    num_examples}`` and the same for ``test`` (torchmetrics, synced across processes; accuracy is micro,
    F1 macro).

    Args:
        model_name_or_path: a hub id (packaged ids load offline), a model folder or a saved B-cos folder.
        num_labels: number of classes; taken from the datamodule when None.
        bcos: convert the model with ``bcos.bcosify``; the next five arguments are its options.
        b, layer_b, normalize_weights, remove_biases, keep_head_activations: see ``bcos.BcosOptions``.
        anneal_steps: convert gradually over this many optimizer steps with ``bcos.BcosAnnealing`` (from the
            pre-trained function at step 0 to exactly ``bcosify``'s model at the end); 0 converts at once.
        loss: ``"bce"`` (binary cross-entropy on one-hot targets; default for B-cos) or ``"ce"``
            (cross-entropy; default for conventional models).
        logit_scale: the loss and the predicted probabilities see the logits times this factor, an inverse
            temperature; ``"auto"`` (the default for B-cos; 1 for conventional models) sets it once, from the first
            batch the module sees, to 1 / RMS of the model's logits — a freshly converted B-cos model outputs
            logits around 1e-2 (b=1.5) to 1e-4 (b=2), which this brings to RMS 1 whatever b, data or model. With
            annealing it is measured at the start and at the end form and moves between them geometrically with
            the ramp. The model's own logits, predictions and explanations are unscaled; the export records it.
        learn_logit_scale: learn the scale, as its logarithm, with its own learning rate ``logit_scale_lr``
            (under the same warm-up/decay schedule); ``"auto"`` then sets its starting value.
        learning_rate, weight_decay, warmup_fraction: AdamW with linear warm-up over this fraction of the
            total steps, then linear decay to 0; biases, norm weights and the scale get no weight decay.
    """

    def __init__(
        self,
        model_name_or_path: str,
        num_labels: int | None = None,
        bcos: bool = True,
        b: float = 2.0,
        layer_b: dict[str, float] | None = None,
        normalize_weights: bool = True,
        remove_biases: bool = True,
        keep_head_activations: bool = False,
        anneal_steps: int = 0,
        loss: str | None = None,
        logit_scale: float | str | None = None,
        learn_logit_scale: bool = False,
        logit_scale_lr: float = 1e-2,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
    ) -> None:
        super().__init__()
        if loss not in (None, *LOSSES):
            raise ValueError(f"loss must be one of {LOSSES} (or None for the default), got {loss!r}")
        default_scale = AUTO_LOGIT_SCALE if bcos else 1.0
        register_logit_scale(self, default_scale if logit_scale is None else logit_scale, learn_logit_scale)
        self.save_hyperparameters()
        self.loss_name = loss or ("bce" if bcos else "ce")
        self.model: nn.Module | None = None
        self.annealing: BcosAnnealing | None = None
        self.metrics: nn.ModuleDict | None = None
        self._checkpoint_architecture: str | None = None
        if num_labels is not None:
            self._build(num_labels)

    # --- model ------------------------------------------------------------------------------------------

    def _load(self, num_labels: int) -> nn.Module:
        hp = self.hparams
        model = load_model(hp.model_name_or_path, num_labels=num_labels)
        saved_bcos = getattr(model.config, "bcos", None) is not None
        if saved_bcos and not hp.bcos:
            raise ValueError(f"{hp.model_name_or_path!r} is a saved B-cos model but bcos=False was configured")
        if model.config.num_labels != num_labels:
            raise ValueError(f"{hp.model_name_or_path!r} has {model.config.num_labels} labels, "
                             f"but num_labels={num_labels}")
        if hp.bcos and not saved_bcos:
            options = dict(b=hp.b, layer_b=hp.layer_b, normalize_weights=hp.normalize_weights,
                           remove_biases=hp.remove_biases, keep_head_activations=hp.keep_head_activations)
            if hp.anneal_steps:
                self.annealing = BcosAnnealing(model, hp.anneal_steps, **options)
            else:
                bcosify(model, **options)
        return model

    def _build(self, num_labels: int) -> None:
        self.model = self._load(num_labels).train()  # from_pretrained returns eval mode: keep dropout on
        self.metrics = nn.ModuleDict({stage: nn.ModuleDict({
            "acc": MulticlassAccuracy(num_labels, average="micro"),
            "f1": MulticlassF1Score(num_labels, average="macro"),
            "loss": MeanMetric(),
            "num_examples": SumMetric(),
        }) for stage in ("val", "test")})

    def setup(self, stage: str) -> None:
        """Takes ``num_labels`` from the datamodule when not configured; checks it when both are set."""
        datamodule_labels = getattr(self.trainer.datamodule, "num_labels", None)
        if self.hparams.num_labels is None:
            if datamodule_labels is None:
                raise ValueError("num_labels is not set and there is no datamodule with num_labels to take it from")
            self.hparams.num_labels = datamodule_labels
        elif datamodule_labels is not None and datamodule_labels != self.hparams.num_labels:
            raise ValueError(f"the model is configured with num_labels={self.hparams.num_labels} but the data has "
                             f"{datamodule_labels} labels")

    def configure_model(self) -> None:
        """Builds the model when ``num_labels`` came from the datamodule, and names its classes after the
        datamodule's ``label_names`` (so exports and heatmaps show them)."""
        if self.model is None:
            if self.hparams.num_labels is None:
                raise ValueError("num_labels is unknown: pass it, or train with a datamodule that has num_labels")
            self._build(self.hparams.num_labels)
        names = getattr(getattr(self._trainer, "datamodule", None), "label_names", None)
        if names is not None:
            self.model.config.id2label = dict(enumerate(names))
            self.model.config.label2id = {name: index for index, name in enumerate(names)}

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

    def _scheduled_log_scale(self) -> torch.Tensor:
        progress = 1.0 if self.annealing is None else self.annealing.progress
        return torch.lerp(self.auto_log_logit_scales[0], self.auto_log_logit_scales[1], progress)

    def on_train_batch_start(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.set_logit_scale(batch)
        if self.annealing is not None:
            self.advance_annealing(self.trainer.global_step, self.trainer.optimizers)
            self.log("train/anneal_progress", self.annealing.progress, batch_size=batch["labels"].numel())

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
        """The model's logits ``[batch, num_labels]``."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """BCE on one-hot targets (mean over examples and classes) or cross-entropy, per ``loss``, of the logits
        times ``logit_scale``."""
        logits = logits * self.logit_scale
        if self.loss_name == "bce":
            return F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, logits.shape[-1]).to(logits.dtype))
        return F.cross_entropy(logits, labels)

    # --- steps ------------------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["labels"].numel())
        if self.hparams.learn_logit_scale:
            self.log("train/logit_scale", self.logit_scale.detach(), batch_size=batch["labels"].numel())
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        self.set_logit_scale(batch)
        labels = batch["labels"]
        logits = self(batch["input_ids"], batch["attention_mask"])
        metrics = self.metrics[stage]
        metrics["acc"].update(logits, labels)
        metrics["f1"].update(logits, labels)
        metrics["loss"].update(self.loss(logits, labels), weight=labels.numel())
        metrics["num_examples"].update(labels.numel())
        for name, metric in metrics.items():
            self.log(f"{stage}/{name}", metric, prog_bar=stage == "val" and name in ("acc", "loss"),
                     batch_size=labels.numel())

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """``logits``, ``probabilities`` (sigmoid for BCE, softmax for CE, of the scaled logits) and
        ``prediction`` per example."""
        self.set_logit_scale(batch)
        logits = self(batch["input_ids"], batch["attention_mask"])
        scaled = logits * self.logit_scale
        probabilities = scaled.sigmoid() if self.loss_name == "bce" else scaled.softmax(-1)
        return {"logits": logits, "probabilities": probabilities, "prediction": logits.argmax(-1)}

    def configure_optimizers(self) -> dict:
        return self.optimizer_for(int(self.trainer.estimated_stepping_batches))

    def optimizer_for(self, total_steps: int) -> dict:
        """AdamW and its warm-up/decay schedule over ``total_steps`` (the ``configure_optimizers`` answer)."""
        hp = self.hparams
        extra = {"log_logit_scale": {"lr": hp.logit_scale_lr}} if hp.learn_logit_scale else None
        return adamw_with_linear_schedule(parameter_groups(self, hp.weight_decay, extra), hp.learning_rate,
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
        """One line naming the model, e.g. ``B-cos (b=2.0) BertForSequenceClassification from 'x', 2 labels``."""
        hp = self.hparams
        kind = f"B-cos (b={hp.b})" if hp.bcos else "conventional"
        return f"{kind} {type(self.model).__name__} from {hp.model_name_or_path!r}, {hp.num_labels} labels"

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["architecture"] = self.architecture()
        if self.annealing is not None:
            checkpoint["bcos_annealing"] = self.annealing.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remembers the checkpoint's architecture (for errors) and warns about differing model options."""
        self._checkpoint_architecture = checkpoint.get("architecture")
        if self.annealing is not None and "bcos_annealing" in checkpoint:
            self.annealing.load_state_dict(checkpoint["bcos_annealing"])  # a finished ramp: the model's final form
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
