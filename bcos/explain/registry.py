"""Explainers by name: ``get_explainer("lime", model, tokenizer, n_samples=100)``."""
from __future__ import annotations

import inspect
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


#: explainer parameters that count something (steps, samples, a batch size, a window): positive integers
COUNT_PARAMETERS = ("n_steps", "n_samples", "perturbations_per_eval", "internal_batch_size", "window")


def explainer_parameters(name: str) -> set[str]:
    """The keyword parameters the explainer ``name`` takes (its constructor's and those it passes on)."""
    names: set[str] = set()
    for cls in EXPLAINERS[name].__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(vars(cls)["__init__"]).parameters.values()
        names |= {parameter.name for parameter in parameters if parameter.kind is parameter.KEYWORD_ONLY}
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
            break
    return names


def check_explainer_params(name: str, params: Mapping[str, Any]) -> None:
    """Raises ValueError for an unknown explainer, a parameter it does not take, or a count
    (:data:`COUNT_PARAMETERS`) that is not a positive integer (None is kept where it means the default)."""
    if name not in EXPLAINERS:
        raise ValueError(f"unknown explainer {name!r}; known explainers: {', '.join(EXPLAINERS)}")
    unknown = sorted(set(params) - explainer_parameters(name))
    if unknown:
        raise ValueError(f"{name} takes no parameter {', '.join(unknown)}; its parameters: "
                         f"{', '.join(sorted(explainer_parameters(name)))}")
    for key in COUNT_PARAMETERS:
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} {key} must be a positive integer, got {value!r}")


def get_explainer(name: str, model: nn.Module, tokenizer_or_special_ids=None, **params) -> Explainer:
    """Build the explainer ``name`` for ``model``.

    Args:
        tokenizer_or_special_ids: a tokenizer (special tokens: :func:`tokenizer_special_ids`), an iterable of
            special-token ids, or None (no special tokens).
        **params: the explainer's constructor parameters (``n_steps``, ``n_samples``, ``baseline_token_id``, ...).

    Raises:
        ValueError: see :func:`check_explainer_params`.
    """
    check_explainer_params(name, params)
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
