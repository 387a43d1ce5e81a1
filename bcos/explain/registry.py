"""Explainers by name: ``get_explainer("lime", model, tokenizer, n_samples=100)``."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from ..handle import Model

from .attention import AttentionExplainer
from .bcos_explainer import BcosExplainer
from .gradient import InputXGradientExplainer, IntegratedGradientsExplainer, SaliencyExplainer
from .perturbation import KernelShapExplainer, LimeExplainer, OcclusionExplainer, ShapleySamplingExplainer
from .protocol import Explainer, tokenizer_special_ids

#: name -> explainer class, in the order of the paper's tables.
EXPLAINERS: dict[str, type[Explainer]] = {
    cls.name: cls
    for cls in (BcosExplainer, IntegratedGradientsExplainer, KernelShapExplainer, ShapleySamplingExplainer,
                LimeExplainer, InputXGradientExplainer, SaliencyExplainer, OcclusionExplainer, AttentionExplainer)
}


def get_explainer(name: str, model: nn.Module, tokenizer_or_special_ids=None, **params) -> Explainer:
    """Build the explainer ``name`` for ``model``.

    Args:
        tokenizer_or_special_ids: a tokenizer (special tokens: :func:`tokenizer_special_ids`), an iterable of
            special-token ids, or None (no special tokens).
        **params: the explainer's constructor parameters (``n_steps``, ``n_samples``, ``baseline_token_id``, ...).
    """
    if name not in EXPLAINERS:
        raise ValueError(f"unknown explainer {name!r}; known explainers: {', '.join(EXPLAINERS)}")
    if tokenizer_or_special_ids is None:
        special_token_ids: Iterable[int] = ()
    elif hasattr(tokenizer_or_special_ids, "all_special_ids"):
        special_token_ids = tokenizer_special_ids(tokenizer_or_special_ids)
    else:
        special_token_ids = tokenizer_or_special_ids
    return EXPLAINERS[name](model, special_token_ids, **params)


def explainer_for(handle: Model, name: str, params: Mapping[str, Any] | None = None) -> Explainer:
    """The explainer ``name`` for a loaded model (its tokenizer's special tokens), with constructor ``params``."""
    return get_explainer(name, handle.model, handle.tokenizer, **(params or {}))
