"""The model handle: a transformers model with its tokenizer, its kind, and what its probabilities are.

``Model.probabilities(logits)`` is the one definition of a model's probabilities: the link function (``softmax``
for models trained with cross-entropy, ``sigmoid`` for B-cos models trained with BCE on one-hot targets) of the
logits times the logit scale the model was trained with. Both are recorded in the model's config
(:func:`record_probabilities`) by the training export and the Lightning checkpoints, and read back by the loader
(:func:`bcos.load`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .kinds import Kind, is_decoder, kind_of
from .tokens import last_real_token, pad_token_id, real_positions, tokenizer_special_ids

LINKS = ("softmax", "sigmoid")


def probabilities(logits: torch.Tensor, logit_scale: float | torch.Tensor = 1.0, link: str = "softmax") -> torch.Tensor:
    """``[..., classes]`` probabilities of ``logits [..., classes]``: ``link(logit_scale · logits)``, computed in at
    least float32."""
    if link not in LINKS:
        raise ValueError(f"unknown link function {link!r}; choose one of {', '.join(LINKS)}")
    scaled = logits.to(torch.promote_types(logits.dtype, torch.float32)) * logit_scale
    return scaled.sigmoid() if link == "sigmoid" else scaled.softmax(dim=-1)


def record_probabilities(config: Any, logit_scale: float, link: str) -> None:
    """Write the logit scale and link function into ``config`` (a transformers config or its dict), where
    :func:`recorded_probabilities` finds them."""
    if link not in LINKS:
        raise ValueError(f"unknown link function {link!r}; choose one of {', '.join(LINKS)}")
    values = {"logit_scale": float(logit_scale), "link_function": link}
    if isinstance(config, dict):
        config.update(values)
    else:
        for name, value in values.items():
            setattr(config, name, value)


def recorded_probabilities(config: Any) -> tuple[float | None, str]:
    """The ``(logit_scale, link)`` recorded in ``config`` (a config or its dict); scale None when none is recorded,
    link ``softmax`` when none is."""
    get = config.get if isinstance(config, dict) else lambda name: getattr(config, name, None)
    scale, link = get("logit_scale"), get("link_function") or "softmax"
    return (None if scale is None else float(scale)), link


#: the config entry that records the tokens per example a model was trained with (the run's ``max_length``)
MAX_LENGTH_KEY = "trained_max_length"


def record_max_length(config: Any, max_length: int) -> None:
    """Write the tokens per example the model was trained with into ``config`` (a config or its dict)."""
    if isinstance(config, dict):
        config[MAX_LENGTH_KEY] = int(max_length)
    else:
        setattr(config, MAX_LENGTH_KEY, int(max_length))


def recorded_max_length(config: Any) -> int | None:
    """The tokens per example recorded in ``config`` (a config or its dict) by :func:`record_max_length`, else
    None."""
    value = config.get(MAX_LENGTH_KEY) if isinstance(config, dict) else getattr(config, MAX_LENGTH_KEY, None)
    return None if value is None else int(value)


def model_logits(model: nn.Module, causal: bool, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 **kwargs) -> torch.Tensor:
    """The logits a prediction is read from, ``[batch, classes]``. A decoder (``causal``) gets position ids counted
    over real tokens (left padding), and a causal LM's next-token logits ``[batch, vocab]`` are those at the last
    real token.

    Raises:
        ValueError: the model gives token-level logits but is not a decoder (a masked LM needs a position).
    """
    if causal:
        kwargs.setdefault("position_ids", real_positions(attention_mask))
    outputs = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    logits = getattr(outputs, "logits", outputs)
    if logits.dim() == 3:
        if not causal:
            raise ValueError("token-level logits of an encoder (masked LM) need a position; explain a sequence "
                             "classifier or a causal language model")
        logits = logits[torch.arange(logits.shape[0], device=logits.device), last_real_token(attention_mask)]
    return logits


@dataclass
class Model:
    """A loaded model and everything its consumers need to know about it (build one with :func:`bcos.load`).

    Attributes:
        model: the transformers model (a sequence classifier, masked LM or causal LM; B-cos or conventional).
        tokenizer: its tokenizer.
        logit_scale: the inverse temperature the model was trained with (a B-cos model's logits are small without
            it); see :meth:`probabilities`.
        source: where the model came from (for reports).
        kind: ``sequence-classification``, ``causal-lm`` or ``masked-lm``; None: derived from the model's class
            (:func:`bcos.kinds.kind_of`).
        link: ``softmax`` or ``sigmoid``, the link function the model was trained with.

    ``max_length`` (a property) is the tokens per example the model was trained with, when its config records it.
    """

    model: nn.Module
    tokenizer: Any
    logit_scale: float = 1.0
    source: str = ""
    kind: Kind | None = None
    link: str = "softmax"

    def __post_init__(self) -> None:
        if self.kind is None:
            self.kind = kind_of(self.model)
        if self.kind is None:
            raise ValueError(f"{type(self.model).__name__} is not a sequence classifier, masked LM or causal LM of "
                             "transformers; pass kind=... explicitly")
        if self.link not in LINKS:
            raise ValueError(f"unknown link function {self.link!r}; choose one of {', '.join(LINKS)}")

    @property
    def is_bcos(self) -> bool:
        return getattr(self.model.config, "bcos", None) is not None

    @property
    def max_length(self) -> int | None:
        """The tokens per example the model was trained with (:func:`recorded_max_length`), None when unrecorded."""
        return recorded_max_length(self.model.config)

    @property
    def is_causal(self) -> bool:
        """Whether this is a causal LM (its predictions are next tokens)."""
        return self.kind == "causal-lm"

    @property
    def is_decoder(self) -> bool:
        """Whether the model's family is decoder-only (:func:`bcos.kinds.is_decoder`)."""
        return is_decoder(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``[..., classes]``: ``link(logit_scale · logits)`` (see :func:`probabilities`)."""
        return probabilities(logits, self.logit_scale, self.link)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[batch, classes]`` prediction logits (see :func:`model_logits`)."""
        return model_logits(self.model, self.is_decoder, input_ids, attention_mask)

    @torch.no_grad()
    def predict_proba(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[batch, classes]`` probabilities of the prediction (:meth:`probabilities` of :meth:`logits`)."""
        return self.probabilities(self.logits(input_ids, attention_mask))

    @torch.no_grad()
    def predict_softmax(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[batch, classes]`` ``softmax(logit_scale · logits)``: the probability the faithfulness metrics use
        whatever the link (DESIGN §5), so that their scores compare across models."""
        return probabilities(self.logits(input_ids, attention_mask), self.logit_scale, "softmax")

    def erasure_settings(self) -> dict[str, Any]:
        """[MASK] replacement for tokenizers that have a mask token (encoders), deletion otherwise (decoders)."""
        tokenizer = self.tokenizer
        mode = "replace" if tokenizer.mask_token_id is not None else "delete"
        return {"mode": mode, "replacement_id": tokenizer.mask_token_id, "pad_token_id": pad_token_id(tokenizer) or 0,
                "padding_side": tokenizer.padding_side, "special_token_ids": tokenizer_special_ids(tokenizer)}
