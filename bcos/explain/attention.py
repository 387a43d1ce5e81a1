"""Attention weights as an explanation: one row of a layer's attention probabilities, averaged over heads."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .protocol import Explainer, last_real_token


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Run ``model`` with eager attention (the only implementation that returns probabilities), then restore
    the previous implementation (e.g. ``sdpa`` or B-cos ``bcos_attention``, whose probabilities are the same)."""
    previous = model.config._attn_implementation
    if previous != "eager":
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if previous != "eager":
            model.set_attn_implementation(previous)


class AttentionExplainer(Explainer):
    """Attention probabilities of layer ``layer`` (default: the last), head mean, from the query row of the first
    real token for encoders ([CLS]) and of the last real token for decoders. Class-agnostic: the target and
    the foil are ignored. Non-negative; a row sums to 1 over the real tokens.

    The model is switched to eager attention for the call (``output_attentions=True`` needs it) and switched back.
    """

    name = "attention"

    def __init__(self, model: nn.Module, special_token_ids: Iterable[int] = (), *, layer: int = -1,
                 causal: bool | None = None) -> None:
        super().__init__(model, special_token_ids, causal=causal)
        self.layer = layer

    def _scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: torch.Tensor,
                foil: torch.Tensor | None) -> torch.Tensor:
        with eager_attention(self.model), torch.no_grad():
            attentions = self.model_outputs(input_ids, attention_mask, output_attentions=True).attentions
        probabilities = attentions[self.layer]  # [batch, heads, query, key]
        query = last_real_token(attention_mask) if self.causal else attention_mask.long().argmax(dim=-1)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        return probabilities[rows, :, query, :].mean(dim=1)
