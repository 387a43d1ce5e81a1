"""Gradient-based post-hoc explainers on the word-embedding layer (Captum): IG, InputXGradient, Saliency.

All three attribute the target logit to the output of ``model.get_input_embeddings()`` and reduce the hidden
dimension to one score per token.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from torch import nn

from .protocol import Explainer, TokenBaselineExplainer


#: the default bound of Integrated Gradients' memory: tokens per forward/backward pass (rows x sequence length)
MAX_TOKENS_PER_PASS = 4096


def ig_passes(n_examples: int, length: int, n_steps: int, max_tokens_per_pass: int) -> tuple[int, int]:
    """How Integrated Gradients splits its ``n_examples · n_steps`` rows of ``length`` tokens so that one
    forward/backward pass holds at most ``max_tokens_per_pass`` tokens (at least one row): returns (examples per
    Captum call, Captum's ``internal_batch_size``). With ``R = max(1, max_tokens_per_pass // length)`` rows per
    pass, ``min(n_examples, R)`` examples go into a call, each pass taking all of them at
    ``min(n_steps, R // examples)`` steps (at least one)."""
    rows = max(1, max_tokens_per_pass // length)
    examples = min(n_examples, rows)
    return examples, examples * max(1, min(n_steps, rows // examples))


class IntegratedGradientsExplainer(TokenBaselineExplainer):
    """Integrated Gradients (``LayerIntegratedGradients`` on the word embeddings), summed over the hidden dim.

    The reference replaces every content token by ``baseline_token_id`` ([PAD] by default) and keeps special
    tokens and padding, so those get exactly 0 (as does any token that equals its reference).

    Args:
        n_steps: integration steps; method: Captum's integration rule ("gausslegendre", "riemann_trapezoid", ...).
        max_tokens_per_pass: bounds the memory: the ``batch · n_steps`` interpolated rows are run in passes of at
            most this many tokens (see :func:`ig_passes`); lower it when IG runs out of memory. None: no bound.
        internal_batch_size: Captum's own chunk size over ``batch * n_steps`` rows, used as given (instead of
            ``max_tokens_per_pass``).
    """

    name = "integrated_gradients"

    def __init__(self, model: nn.Module, special_token_ids: Iterable[int] = (), *, n_steps: int = 50,
                 method: str = "gausslegendre", max_tokens_per_pass: int | None = MAX_TOKENS_PER_PASS,
                 internal_batch_size: int | None = None, baseline_token_id: int | None = None,
                 causal: bool | None = None) -> None:
        super().__init__(model, special_token_ids, baseline_token_id=baseline_token_id, causal=causal)
        for name, value in (("n_steps", n_steps), ("max_tokens_per_pass", max_tokens_per_pass),
                            ("internal_batch_size", internal_batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"integrated_gradients: {name} must be a positive integer, got {value!r}")
        self.n_steps = n_steps
        self.method = method
        self.max_tokens_per_pass = max_tokens_per_pass
        self.internal_batch_size = internal_batch_size

    def _scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: torch.Tensor,
                foil: torch.Tensor | None) -> torch.Tensor:
        if self.internal_batch_size is not None or self.max_tokens_per_pass is None:
            chunk, internal = input_ids.shape[0], self.internal_batch_size
        else:
            chunk, internal = ig_passes(input_ids.shape[0], input_ids.shape[1], self.n_steps,
                                        self.max_tokens_per_pass)
        return torch.cat([self._integrate(input_ids[rows], attention_mask[rows], target[rows],
                                          None if foil is None else foil[rows], internal)
                          for rows in (slice(start, start + chunk) for start in range(0, input_ids.shape[0], chunk))])

    def _integrate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: torch.Tensor,
                   foil: torch.Tensor | None, internal_batch_size: int | None) -> torch.Tensor:
        reference = self.reference_ids(input_ids, attention_mask)
        attributions = LayerIntegratedGradients(self.logits, self.model.get_input_embeddings()).attribute(
            input_ids, baselines=reference, target=target, additional_forward_args=(attention_mask, foil),
            n_steps=self.n_steps, method=self.method, internal_batch_size=internal_batch_size)
        return attributions.sum(dim=-1).masked_fill(input_ids == reference, 0.0)


def embedding_gradients(explainer: Explainer, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        target: torch.Tensor, foil: torch.Tensor | None, multiply_by_inputs: bool) -> torch.Tensor:
    """``[batch, seq, hidden]``: d target logit (minus the foil's) / d word embedding, times the embedding if
    ``multiply_by_inputs``."""
    layer = LayerGradientXActivation(explainer.logits, explainer.model.get_input_embeddings(),
                                     multiply_by_inputs=multiply_by_inputs)
    return layer.attribute(input_ids, target=target, additional_forward_args=(attention_mask, foil))


class InputXGradientExplainer(Explainer):
    """Gradient x input on the word embeddings, summed over the hidden dimension (signed)."""

    name = "input_x_gradient"

    def _scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: torch.Tensor,
                foil: torch.Tensor | None) -> torch.Tensor:
        return embedding_gradients(self, input_ids, attention_mask, target, foil, multiply_by_inputs=True).sum(dim=-1)


class SaliencyExplainer(Explainer):
    """Saliency: the p-norm over the hidden dimension of the gradient at the word embeddings (non-negative).

    Args:
        norm: the p of the norm (2: L2 norm; 1: sum of absolute gradients).
    """

    name = "saliency"

    def __init__(self, model: nn.Module, special_token_ids: Iterable[int] = (), *, norm: float = 2.0,
                 causal: bool | None = None) -> None:
        super().__init__(model, special_token_ids, causal=causal)
        self.norm = norm

    def _scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: torch.Tensor,
                foil: torch.Tensor | None) -> torch.Tensor:
        gradients = embedding_gradients(self, input_ids, attention_mask, target, foil, multiply_by_inputs=False)
        return torch.linalg.vector_norm(gradients, ord=self.norm, dim=-1)
