"""A LightningModule that fine-tunes a Hugging Face sequence classifier, B-cos or conventional."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from lightning_modules.base import BcosModule, check_anneal_steps, register_output_gain_calibration
from lightning_modules.optim import AUTO_LOGIT_SCALE

LOSSES = ("bce", "ce")
#: the B-cos training recipe measured in BENCHMARKS.md (issue 10), SequenceClassifier's defaults: b = 1.5, a direct
#: conversion (annealing was no better at 200 steps), the automatic logit scale, and a learning rate 10x the
#: conventional one (a direct conversion switches the pre-trained FFNs nearly off; re-growing them needs it)
BCOS_RECIPE = {"b": 1.5, "anneal_steps": 0, "logit_scale": AUTO_LOGIT_SCALE, "learning_rate": 1e-3}
#: the learning rate of conventional fine-tuning when none is given (MiniLM on SST-2: the better of 5e-5 and 1e-4)
CONVENTIONAL_LEARNING_RATE = 1e-4


class SequenceClassifier(BcosModule):
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
        anneal_steps: convert gradually with ``bcos.BcosAnnealing`` (from the pre-trained function at step 0 to
            exactly ``bcosify``'s model at the end) over this many optimizer steps (an int; 0 converts at once) or
            this fraction of the training steps (a float in (0, 1)).
        loss: ``"bce"`` (binary cross-entropy on one-hot targets; default for B-cos) or ``"ce"``
            (cross-entropy; default for conventional models).
        logit_scale: the loss and the predicted probabilities see the logits times this factor, an inverse
            temperature; ``"auto"`` (the default for B-cos; 1 for conventional models) sets it once, from the first
            batch the module sees, to 1 / RMS of the model's logits — a freshly converted B-cos MiniLM outputs
            logits of RMS 3e-3 (b=1.5) to 3e-4 (b=2), which this brings to RMS 1 whatever b, data or model. With
            annealing it is measured at the start and at the end form and moves between them geometrically with
            the ramp. The model's own logits, predictions and explanations are unscaled; the export records it.
        learn_logit_scale: learn the scale, as its logarithm, with its own learning rate ``logit_scale_lr``
            (under the same warm-up/decay schedule); ``"auto"`` then sets its starting value.
        learning_rate, weight_decay, warmup_fraction: AdamW (None: the default learning rate of the model's kind,
            below) with linear warm-up over this fraction of the
            total steps, then linear decay to 0; biases, norm weights and the scale get no weight decay.
        unnormalized_learning_rate: the learning rate of every parameter that is not the weight of a
            weight-normalised B-cos layer (embeddings, norm gains, unnormalised layers; None: ``learning_rate``).
            Normalised weights are scale-invariant, an AdamW step turns their rows by about lr·√fan-in/‖w‖;
            the other parameters take steps of absolute size lr, as in a conventional model.

    The defaults of ``b``, ``anneal_steps``, ``logit_scale`` and (for B-cos models) ``learning_rate`` are
    ``BCOS_RECIPE``; a conventional model's learning rate defaults to ``CONVENTIONAL_LEARNING_RATE``.
        lora: train LoRA adapters (peft; the ``lora`` extra) instead of the whole model: the options of
            ``bcos.convert.lora.add_lora`` (``r``, ``lora_alpha``, ``target_modules``, ...), e.g. ``{"r": 8}``.
            The adapters sit on every linear layer of the transformer blocks; a new classification head trains
            fully. Exports merge the adapters and keep them in ``lora_adapter/``.
        output_gains: give every B-cos layer a constant output gain, set on the first batch so that its output
            has the root mean square of the plain linear map with the same weight on the same input
            (``bcos.convert.calibrate_output_gains``): the converted residual branches start at their pre-trained
            size instead of a few per cent of it. B-cos models with a direct conversion and without LoRA only;
            exports keep the gains.
    """

    monitor = ("val/acc", "max")

    def __init__(
        self,
        model_name_or_path: str,
        num_labels: int | None = None,
        bcos: bool = True,
        b: float = BCOS_RECIPE["b"],
        layer_b: dict[str, float] | None = None,
        normalize_weights: bool = True,
        remove_biases: bool = True,
        keep_head_activations: bool = False,
        anneal_steps: int | float = BCOS_RECIPE["anneal_steps"],
        loss: str | None = None,
        logit_scale: float | str | None = None,
        learn_logit_scale: bool = False,
        logit_scale_lr: float = 1e-2,
        learning_rate: float | None = None,
        unnormalized_learning_rate: float | None = None,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        lora: dict[str, Any] | None = None,
        output_gains: bool = False,
    ) -> None:
        super().__init__()
        if loss not in (None, *LOSSES):
            raise ValueError(f"loss must be one of {LOSSES} (or None for the default), got {loss!r}")
        check_anneal_steps(anneal_steps)
        register_output_gain_calibration(self, output_gains, bcos, anneal_steps, lora)
        default_scale = BCOS_RECIPE["logit_scale"] if bcos else 1.0
        self.register_logit_scale(default_scale if logit_scale is None else logit_scale, learn_logit_scale)
        self.save_hyperparameters()
        if learning_rate is None:  # recorded resolved, so checkpoints and exports say what was used
            self.hparams.learning_rate = BCOS_RECIPE["learning_rate"] if bcos else CONVENTIONAL_LEARNING_RATE
        self.loss_name = loss or ("bce" if bcos else "ce")
        self.link = "sigmoid" if self.loss_name == "bce" else "softmax"
        self.model: nn.Module | None = None
        self.metrics: nn.ModuleDict | None = None
        if num_labels is not None:
            self._build(num_labels)

    # --- model ------------------------------------------------------------------------------------------

    def _build(self, num_labels: int) -> None:
        model = self._load("sequence-classification", num_labels=num_labels)
        if model.config.num_labels != num_labels:
            raise ValueError(f"{self.hparams.model_name_or_path!r} has {model.config.num_labels} labels, "
                             f"but num_labels={num_labels}")
        self.model = model.train()  # from_pretrained returns eval mode: keep dropout on
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
        """Builds the model when ``num_labels`` came from the datamodule, checks the data's length against it
        (``BcosModule.configure_model``), and names its classes after the datamodule's ``label_names`` (so exports and
        heatmaps show them)."""
        if self.model is None:
            if self.hparams.num_labels is None:
                raise ValueError("num_labels is unknown: pass it, or train with a datamodule that has num_labels")
            self._build(self.hparams.num_labels)
        super().configure_model()
        names = getattr(getattr(self._trainer, "datamodule", None), "label_names", None)
        if names is not None:
            self.model.config.id2label = dict(enumerate(names))
            self.model.config.label2id = {name: index for index, name in enumerate(names)}

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
        self.log_logit_scale_if_learned(batch["labels"].numel())
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        self.calibrate(batch)
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
        """``logits``, ``probabilities`` (:meth:`probabilities`: sigmoid for BCE, softmax for CE, of the scaled
        logits) and ``prediction`` per example."""
        self.calibrate(batch)
        logits = self(batch["input_ids"], batch["attention_mask"])
        return {"logits": logits, "probabilities": self.probabilities(logits), "prediction": logits.argmax(-1)}

    # --- checkpoints ------------------------------------------------------------------------------------

    def architecture(self) -> str:
        """One line naming the model, e.g. ``B-cos (b=2.0) BertForSequenceClassification from 'x', 2 labels``."""
        return f"{super().architecture()}, {self.hparams.num_labels} labels"
