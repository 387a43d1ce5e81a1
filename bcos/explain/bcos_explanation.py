"""Exact explanations of B-cos models: contributions = gradient x input at the first transformer block."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..convert.adapters import adapter_for, transformer_blocks
from ..convert.annealing import warn_if_annealing
from ..nn.mode import explanation_mode
from .protocol import check_batch, class_ids, last_real_token, real_positions

Target = int | torch.Tensor | str | None


@dataclass
class Explanation:
    """A batch of explanations.

    Attributes:
        contributions: ``[batch, seq]`` per-token contributions (``[batch, classes, seq]`` for ``target="all"``);
            exactly zero at padding; they sum to ``logit``.
        logit: ``[batch]`` (or ``[batch, classes]``) the explained value: the target logit, minus the foil's
            logit for contrastive explanations.
        target: ``[batch]`` explained class / vocabulary ids (``[classes]`` for ``target="all"``).
        prediction: ``[batch]`` arg-max class (next token for language models).
        probabilities: ``[batch, classes]`` softmax over the explained logits.
        input_ids, attention_mask: ``[batch, seq]`` the explained inputs.
        foil: ``[batch]`` foil ids of contrastive explanations, else None.
        position: ``[batch]`` the explained sequence position for token-level heads, else None.
        complete: False when the model is in the middle of an annealed conversion (``bcos.BcosAnnealing``): it still
            has biases or head nonlinearities, so the contributions do not sum to the logit.
    """

    contributions: torch.Tensor
    logit: torch.Tensor
    target: torch.Tensor
    prediction: torch.Tensor
    probabilities: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    foil: torch.Tensor | None = None
    position: torch.Tensor | None = None
    complete: bool = True

    def completeness_error(self) -> torch.Tensor:
        """``|Σ_t contributions - logit| / max(|logit|, tiny)``, shaped like ``logit``."""
        tiny = torch.finfo(self.logit.dtype).tiny
        return (self.contributions.sum(-1) - self.logit).abs() / self.logit.abs().clamp_min(tiny)


class _BlockInputCapture:
    """Forward pre-hook that records the hidden states entering the first transformer block, made a leaf that
    requires grad when nothing before it does (frozen embeddings, e.g. under LoRA)."""

    def __init__(self) -> None:
        self.hidden_states: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.requires_grad:
            self.hidden_states = hidden
            return None
        self.hidden_states = hidden.detach().requires_grad_(True)
        if args:
            return (self.hidden_states,) + args[1:], kwargs
        return args, {**kwargs, "hidden_states": self.hidden_states}


def _explained_position(logits: torch.Tensor, attention_mask: torch.Tensor, position: int | torch.Tensor | None,
                        causal: bool) -> torch.Tensor:
    batch, seq = attention_mask.shape
    if position is not None:
        index = torch.as_tensor(position, device=logits.device).long()
        index = index.expand(batch) if index.dim() == 0 else index
        if index.shape != (batch,):
            raise ValueError(f"position must be an int or a tensor of shape [batch]=[{batch}], got shape "
                             f"{tuple(index.shape)}")
        return torch.where(index < 0, index + seq, index)
    if not causal:
        raise ValueError("explaining a masked language model needs position= (the index of the masked token)")
    return last_real_token(attention_mask)


def explain(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    target: Target = None,
    *,
    foil: int | torch.Tensor | None = None,
    position: int | torch.Tensor | None = None,
    **model_kwargs,
) -> Explanation:
    """Explain a B-cos model's logits exactly by per-token contributions.

    Args:
        model: a bcosified model with a head (sequence classification, masked LM or causal LM). Call
            ``model.eval()`` first unless dropout noise in the explanation is intended.
        input_ids: ``[batch, seq]`` token ids; attention_mask ``[batch, seq]`` (1 = token, 0 = padding).
        target: None (the prediction), a class index ``0..classes-1`` (int or ``[batch]`` integer tensor), or
            ``"all"`` (every class at once; contributions ``[batch, classes, seq]``).
        foil: contrastive explanation of ``logit[target] - logit[foil]`` (a class index like ``target``).
        position: for token-level heads, the position whose logits are explained (int or ``[batch]``;
            negative counts from the end). Default for causal LMs: the last non-padding token.
        **model_kwargs: passed to the model (e.g. ``token_type_ids``). For decoders ``position_ids`` default to
            the count of preceding real tokens, so left padding does not shift positions.

    Works inside ``torch.no_grad()`` and ``torch.inference_mode()``; leaves no ``.grad`` behind. A model in the
    middle of its annealed conversion is explained with a warning and ``complete=False``.

    Raises:
        ValueError: ``model`` is not a B-cos model (``bcosify`` it, or use a post-hoc explainer of
            :func:`bcos.explain.get_explainer`); an empty batch; a row that is all padding; a target or foil that
            is not an integer class index of the model (negative indices are refused, not read from the end).
    """
    adapter = adapter_for(model)
    if getattr(model.config, "bcos", None) is None:
        raise ValueError(f"{type(model).__name__} is not a B-cos model (model.config.bcos is not set), so its "
                         "logits are not sums of token contributions. Convert it with bcos.bcosify(model) (and "
                         "fine-tune), or explain it with a post-hoc method, e.g. "
                         "bcos.explain.get_explainer('integrated_gradients', model, tokenizer)")
    complete = warn_if_annealing(model)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    check_batch(input_ids, attention_mask)
    if target == "all" and foil is not None:
        raise ValueError('target="all" cannot be combined with a foil; explain one contrast at a time')
    if isinstance(target, str) and target != "all":
        raise ValueError(f'target must be None, an int, a [batch] tensor or "all", got {target!r}')
    capture = _BlockInputCapture()
    handle = transformer_blocks(model, adapter)[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.inference_mode(False), torch.enable_grad(), explanation_mode():
            input_ids, attention_mask = input_ids.clone(), attention_mask.clone()
            model_kwargs = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in model_kwargs.items()}
            if adapter.causal and "position_ids" not in model_kwargs:
                # positions count real tokens only, so a left-padded row is explained as if it stood alone
                model_kwargs["position_ids"] = real_positions(attention_mask)
            logits = model(input_ids=input_ids, attention_mask=attention_mask, **model_kwargs).logits
            explanation = _attribute(logits, capture.hidden_states, input_ids, attention_mask, target, foil,
                                     position, adapter.causal)
    finally:
        handle.remove()
    explanation.complete = complete
    return explanation


def _attribute(logits: torch.Tensor, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               target: Target, foil: int | torch.Tensor | None, position: int | torch.Tensor | None,
               causal: bool) -> Explanation:
    batch = input_ids.shape[0]
    rows = torch.arange(batch, device=logits.device)
    explained_position = None
    if logits.dim() == 3:
        explained_position = _explained_position(logits, attention_mask, position, causal)
        logits = logits[rows, explained_position]
    elif position is not None:
        raise ValueError("position= applies to token-level heads (language models); this model outputs one "
                         "logit vector per sequence")
    probabilities = logits.detach().softmax(dim=-1)
    prediction = probabilities.argmax(dim=-1)
    mask = attention_mask.to(hidden.dtype)

    def contributions_of(explained: torch.Tensor, retain: bool) -> torch.Tensor:
        (grad,) = torch.autograd.grad(explained.sum(), hidden, retain_graph=retain)
        return (grad * hidden).sum(dim=-1).detach() * mask

    if target == "all":
        classes = logits.shape[-1]
        contributions = torch.stack([contributions_of(logits[:, c], retain=c < classes - 1) for c in range(classes)],
                                    dim=1)
        return Explanation(contributions, logits.detach(), torch.arange(classes, device=logits.device), prediction,
                           probabilities, input_ids, attention_mask, None, explained_position)

    classes = logits.shape[-1]
    target_index = prediction if target is None else class_ids(target, batch, logits.device, "target", classes)
    explained = logits[rows, target_index]
    foil_index = None
    if foil is not None:
        foil_index = class_ids(foil, batch, logits.device, "foil", classes)
        explained = explained - logits[rows, foil_index]
    contributions = contributions_of(explained, retain=False)
    return Explanation(contributions, explained.detach(), target_index, prediction, probabilities, input_ids,
                       attention_mask, foil_index, explained_position)
