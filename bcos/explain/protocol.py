"""The explainer protocol: every method maps ``(input_ids, attention_mask, target)`` to per-token scores.

An explainer wraps a model that is called as ``model(input_ids=..., attention_mask=..., [position_ids=...])``
and returns logits (a tensor or an output with ``.logits``): ``[batch, classes]`` for sequence classifiers,
``[batch, seq, vocab]`` for causal language models (then the logits at the last real token are explained).
Post-hoc methods explain the *target logit* (not its probability), or with a ``foil`` the contrast
``logit[target] - logit[foil]`` ("why this token rather than that one").
"""
from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..handle import model_logits
from ..kinds import is_decoder
from ..tokens import content_mask, pad_token_id, last_real_token, real_positions, tokenizer_special_ids

__all__ = ["AttributionResult", "Explainer", "TokenBaselineExplainer", "check_batch", "class_ids", "content_mask",
           "is_causal", "last_real_token", "real_positions", "tokenizer_special_ids"]


@dataclass
class AttributionResult:
    """Per-token attribution scores of one explainer call.

    Attributes:
        scores: ``[batch, seq]`` float scores; exactly 0 at padding.
        target: ``[batch]`` the explained class (or vocabulary item for language models).
        seconds: wall time of the whole ``attribute`` call (CUDA synchronised).
        foil: ``[batch]`` the foil of a contrastive explanation, else None.
    """

    scores: torch.Tensor
    target: torch.Tensor
    seconds: float
    foil: torch.Tensor | None = None


def is_causal(model: nn.Module) -> bool:
    """Whether ``model`` is of a decoder-only family (:func:`bcos.kinds.is_decoder`, from transformers' model
    mappings): any decoder transformers can load, with or without a B-cos adapter."""
    return is_decoder(model)


def check_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    """Raises ValueError unless ``input_ids`` is a non-empty ``[batch, seq]`` batch, ``attention_mask`` has its shape,
    and every row has at least one real token (a row that is all padding has nothing to explain)."""
    if input_ids.dim() != 2 or input_ids.numel() == 0:
        raise ValueError(f"input_ids must be a non-empty [batch, seq] tensor, got shape {tuple(input_ids.shape)}; "
                         "give at least one tokenized text")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has "
                         f"{tuple(input_ids.shape)}; pass the mask the tokenizer returned with the ids")
    empty = (attention_mask == 0).all(dim=-1).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"row(s) {empty} of the batch are all padding (attention_mask all 0): there is no token to "
                         "explain; drop those rows")


def class_ids(value: int | torch.Tensor, batch: int, device: torch.device, name: str = "target",
              classes: int | None = None) -> torch.Tensor:
    """``[batch]`` class (or vocabulary) ids from an int or a ``[batch]`` tensor of integers.

    Raises:
        ValueError: not an integer, not one id per row, negative, or (when ``classes`` is given) ``>= classes``.
    """
    if isinstance(value, (float, bool)):
        raise ValueError(f"{name} must be an integer class index, got {value!r}")
    index = torch.as_tensor(value, device=device)
    if index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
        raise ValueError(f"{name} must hold integer class indices, got a {index.dtype} tensor")
    index = index.long()
    if index.dim() == 0:
        index = index.expand(batch)
    if index.shape != (batch,):
        raise ValueError(f"{name} must be an int or a tensor of shape [batch]=[{batch}], got shape {tuple(index.shape)}")
    if bool((index < 0).any()):
        raise ValueError(f"{name} {index[index < 0].tolist()} is negative; give class indices counted from 0 "
                         "(negative indices do not count from the end)")
    if classes is not None and bool((index >= classes).any()):
        raise ValueError(f"{name} {index[index >= classes].tolist()} is outside the model's {classes} classes "
                         f"(0..{classes - 1})")
    return index.clone()


class Explainer(ABC):
    """Base class: timing, target resolution, padding and the model call shared by all methods.

    Args:
        model: the model to explain (in eval mode unless noise is intended).
        special_token_ids: ids of special tokens ([CLS], [SEP], BOS, ...); methods that perturb tokens never
            perturb them, and IG keeps them in its reference.
        causal: whether the model is a decoder (position ids counted over real tokens, LM logits at the last
            real token); default: :func:`is_causal`.

    Scores come back in the model's floating dtype promoted to at least float32.
    """

    name: ClassVar[str]

    def __init__(self, model: nn.Module, special_token_ids: Iterable[int] = (), *, causal: bool | None = None) -> None:
        self.model = model
        self.special_token_ids = tuple(int(i) for i in special_token_ids)
        self.causal = is_causal(model) if causal is None else causal
        parameter_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        self.dtype = torch.promote_types(parameter_dtype, torch.float32)

    def attribute(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  target: int | torch.Tensor | None = None, foil: int | torch.Tensor | None = None) -> AttributionResult:
        """Explain ``target`` (``[batch]``, an int, or None for the predicted class) for ``input_ids [batch, seq]``;
        with ``foil`` (``[batch]`` or an int) explain ``logit[target] - logit[foil]``.

        Works inside ``torch.no_grad()`` / ``torch.inference_mode()``; leaves no ``.grad`` behind.
        """
        start = time.perf_counter()
        with torch.inference_mode(False), torch.enable_grad():
            input_ids = input_ids.clone()
            attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.clone()
            check_batch(input_ids, attention_mask)
            if target is None:
                with torch.no_grad():
                    target = self.logits(input_ids, attention_mask).argmax(dim=-1)
            batch, device = input_ids.shape[0], input_ids.device
            target = class_ids(target, batch, device, "target")
            foil = None if foil is None else class_ids(foil, batch, device, "foil")
            scores = self._scores(input_ids, attention_mask, target, foil).detach()
        scores = scores.to(self.dtype).masked_fill(attention_mask == 0, 0.0)
        if scores.is_cuda:
            torch.cuda.synchronize(scores.device)
        return AttributionResult(scores, target, time.perf_counter() - start, foil)

    @abstractmethod
    def _scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: torch.Tensor,
                foil: torch.Tensor | None) -> torch.Tensor:
        """``[batch, seq]`` scores for ``target [batch]`` (contrasted with ``foil [batch]`` when given; padding is
        zeroed by the caller)."""

    def model_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
        """The model's raw outputs; decoders get position ids counted over real tokens."""
        if self.causal:
            kwargs.setdefault("position_ids", real_positions(attention_mask))
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               foil: torch.Tensor | None = None) -> torch.Tensor:
        """``[batch, classes]`` logits; for language models those at the last real token. With ``foil`` (``[batch]``
        or one id) every logit minus the foil's, so that column ``target`` is the contrast."""
        logits = model_logits(self.model, self.causal, input_ids, attention_mask)
        if foil is not None:
            logits = logits - logits.gather(-1, foil.reshape(-1, 1).expand(logits.shape[0], 1))
        return logits

    def content(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[batch, seq]`` bool: real, non-special tokens."""
        return content_mask(input_ids, attention_mask, self.special_token_ids)


class TokenBaselineExplainer(Explainer):
    """An explainer that compares the input with a reference where content tokens become ``baseline_token_id``.

    Args:
        baseline_token_id: the replacement token; default ``config.pad_token_id`` (else ``eos_token_id``).
            Pass the [MASK] id to use masking for encoders.
    """

    def __init__(self, model: nn.Module, special_token_ids: Iterable[int] = (), *, baseline_token_id: int | None = None,
                 causal: bool | None = None) -> None:
        super().__init__(model, special_token_ids, causal=causal)
        if baseline_token_id is None:
            baseline_token_id = pad_token_id(getattr(model, "config", None))
            if baseline_token_id is None:
                raise ValueError("the model config has neither pad_token_id nor eos_token_id: pass baseline_token_id")
        self.baseline_token_id = int(baseline_token_id)

    def reference_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[batch, seq]``: the baseline token at content positions; special tokens and padding kept."""
        return input_ids.masked_fill(self.content(input_ids, attention_mask), self.baseline_token_id)


def __getattr__(name: str):
    if name == "Attribution":  # renamed: Captum's base class of attribution methods has that name
        warnings.warn("bcos.explain.Attribution is deprecated; it is bcos.explain.AttributionResult", FutureWarning,
                      stacklevel=2)
        return AttributionResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
