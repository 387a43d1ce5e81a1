"""Explanation mode: while active, every dynamic weight of a B-cos model is treated as a constant.

A B-cos model computes ``y = W(x) x``. Its layers compute their data-dependent factors (the B-cos
scale, norm statistics, activation gates, attention probabilities) and multiply them onto a linear
path. In explanation mode those factors are detached from the autograd graph, so the gradient of an
output with respect to the input is exactly ``W(x)`` and gradient x input sums to the output.
"""
from __future__ import annotations

import contextlib
import threading

import torch

_state = threading.local()


def is_explanation_mode() -> bool:
    """Whether explanation mode is active in the current thread."""
    return getattr(_state, "active", False)


class explanation_mode(contextlib.ContextDecorator):
    """Context manager (and decorator) that turns explanation mode on, restoring the previous state on exit.

    Example::

        with bcos.explanation_mode():
            logits = model(input_ids).logits   # dynamic weights are constants for autograd

        @bcos.explanation_mode()
        def attribute(...): ...
    """

    def __init__(self, active: bool = True) -> None:
        self.active = active
        self._previous: list[bool] = []

    def __enter__(self) -> "explanation_mode":
        self._previous.append(is_explanation_mode())
        _state.active = self.active
        return self

    def __exit__(self, *exc_info: object) -> None:
        _state.active = self._previous.pop()


def dynamic(weight: torch.Tensor) -> torch.Tensor:
    """Mark ``weight`` as a dynamic weight: returned as is normally, detached in explanation mode."""
    return weight.detach() if is_explanation_mode() else weight
