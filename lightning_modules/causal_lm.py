"""A LightningModule that continues the language-model training of a Hugging Face decoder, B-cos or conventional."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import SumMetric

from lightning_modules.base import BcosModule


def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of predicting token ``t+1`` from the logits at ``t``.

    Args:
        logits: ``[batch, seq, vocab]``; input_ids, attention_mask: ``[batch, seq]`` (only pairs of two real tokens
            count: neither a padding target nor a prediction from padding, as in left padding).
        reduction: ``"mean"`` over the predicted tokens (:func:`predicted_tokens`), or ``"sum"``.
    """
    targets = input_ids[:, 1:].masked_fill(~predicted_tokens(attention_mask), -100)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100, reduction=reduction)


def predicted_tokens(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[batch, seq - 1]`` bool: whether token ``t+1`` is predicted from a real token ``t`` (both unmasked)."""
    return (attention_mask[:, 1:] != 0) & (attention_mask[:, :-1] != 0)


class CausalLanguageModel(BcosModule):
    """Continues next-token training of ``model_name_or_path`` (GPT-2, Llama), optionally B-cosified first.

    Logs ``train/loss`` and, on held-out blocks, ``val/loss`` (mean cross-entropy per predicted token),
    ``val/perplexity`` (its exponential) and ``val/num_tokens`` (the same for ``test``).

    Args:
        model_name_or_path: a hub id (packaged ids load offline), a model folder or a saved B-cos folder.
        bcos: convert the model with ``bcos.bcosify``; ``b``, ``layer_b``, ``normalize_weights``,
            ``remove_biases`` are its options (``bcos.BcosOptions``). The paper B-cosifies decoders with b = 1.1.
            Weights are not normalised by default: converted SmolLM2 (b = 1.1) starts at a held-out perplexity of
            257 unnormalised and 49,887 normalised (the original: 142), see BENCHMARKS.md.
        logit_scale: the loss sees the logits times this factor (an inverse temperature, recorded in the
            Hugging Face export); the model's own logits and explanations are unscaled.
        learn_logit_scale: learn the scale, as its logarithm, with its own learning rate ``logit_scale_lr``.
        learning_rate, weight_decay, warmup_fraction: AdamW with linear warm-up over this fraction of the
            total steps, then linear decay to 0.
        lora: train LoRA adapters (peft; the ``lora`` extra) instead of the whole model: the options of
            ``bcos.convert.lora.add_lora`` (``r``, ``lora_alpha``, ``target_modules``, ...), e.g. ``{"r": 8}``.
            The adapters sit on every linear layer of the transformer blocks; a new classification head trains
            fully. Exports merge the adapters and keep them in ``lora_adapter/``.
    """

    def __init__(
        self,
        model_name_or_path: str,
        bcos: bool = True,
        b: float = 1.1,
        layer_b: dict[str, float] | None = None,
        normalize_weights: bool = False,
        remove_biases: bool = True,
        logit_scale: float = 1.0,
        learn_logit_scale: bool = False,
        logit_scale_lr: float = 1e-2,
        learning_rate: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        lora: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.register_logit_scale(logit_scale, learn_logit_scale)
        self.save_hyperparameters()
        self.model = self._load("causal-lm").train()  # from_pretrained returns eval mode: keep dropout on
        self.metrics = nn.ModuleDict({stage: nn.ModuleDict({"loss_sum": SumMetric(), "num_tokens": SumMetric()})
                                      for stage in ("val", "test")})

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"]) * self.logit_scale
        loss = next_token_loss(logits, batch["input_ids"], batch["attention_mask"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        self.log_logit_scale_if_learned(batch["input_ids"].shape[0])
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        logits = self(batch["input_ids"], batch["attention_mask"]) * self.logit_scale
        metrics = self.metrics[stage]
        metrics["loss_sum"].update(next_token_loss(logits, batch["input_ids"], batch["attention_mask"], "sum"))
        metrics["num_tokens"].update(predicted_tokens(batch["attention_mask"]).sum())

    def _log_epoch(self, stage: str) -> None:
        metrics = self.metrics[stage]
        num_tokens = metrics["num_tokens"].compute()
        loss = metrics["loss_sum"].compute() / num_tokens
        self.log_dict({f"{stage}/loss": loss, f"{stage}/perplexity": loss.exp(), f"{stage}/num_tokens": num_tokens},
                      prog_bar=stage == "val")
        for metric in metrics.values():
            metric.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
