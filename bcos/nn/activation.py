"""Nonlinearities rewritten as data-dependent scales of their input."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .mode import dynamic, is_explanation_mode


def _gelu_gate(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _gelu_tanh_gate(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _quick_gelu_gate(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(1.702 * x)


def _relu_gate(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


#: Gate g(x) of each activation f(x) = x · g(x), by the names transformers configs use.
GATES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": _gelu_gate,
    "gelu_new": _gelu_tanh_gate,
    "gelu_fast": _gelu_tanh_gate,
    "gelu_pytorch_tanh": _gelu_tanh_gate,
    "quick_gelu": _quick_gelu_gate,
    "relu": _relu_gate,
    "silu": torch.sigmoid,
    "swish": torch.sigmoid,
}


class GatedActivation(nn.Module):
    """``f(x) = x · g(x)`` with the gate ``g(x)`` a dynamic weight (GELU: Φ(x), SiLU: σ(x), ReLU: 1[x>0]).

    Outside explanation mode it runs the original activation module (fast fused kernels); in explanation
    mode it computes ``x · g(x).detach()``. Shapes: elementwise.
    """

    def __init__(self, name: str, activation: nn.Module) -> None:
        super().__init__()
        if name not in GATES:
            raise ValueError(f"no gate form known for activation {name!r}; known: {sorted(GATES)}")
        self.name = name
        self.activation = activation
        self._gate = GATES[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_explanation_mode():
            return x * self._gate(x).detach()
        return self.activation(x)

    def extra_repr(self) -> str:
        return f"gate={self.name}"


class DynamicActivation(nn.Module):
    """An activation whose whole output is a dynamic weight (the SwiGLU gate ``silu(gate_proj(x))``).

    It only ever multiplies a linear path (``up_proj(x)``), so detaching it keeps the model dynamic linear.
    """

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dynamic(self.activation(x))


class LogitSoftcap(nn.Module):
    """Final-logit soft-capping ``c · tanh(z / c)`` (Gemma 2 and 3) as a dynamic scale of ``z``.

    ``c · tanh(z/c) = z · g(z)`` with ``g(z) = tanh(z/c) / (z/c)`` in (0, 1] (1 at z = 0): each logit is scaled
    by a factor of its own, a dynamic weight, so the capped logits stay dynamic linear and keep the pre-trained
    values. Outside explanation mode it computes ``c · tanh(z / c)`` as the model did. Shapes: elementwise.
    """

    def __init__(self, cap: float) -> None:
        super().__init__()
        self.cap = float(cap)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not is_explanation_mode():
            return torch.tanh(z / self.cap) * self.cap
        scaled = z.detach() / self.cap
        gate = torch.where(scaled == 0, torch.ones_like(scaled), torch.tanh(scaled) / scaled)
        return z * gate

    def extra_repr(self) -> str:
        return f"cap={self.cap}"
