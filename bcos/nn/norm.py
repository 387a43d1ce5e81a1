"""Norm layers whose statistics are dynamic weights: centred LayerNorm without β, RMSNorm."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mode import dynamic, is_explanation_mode


class BcosLayerNorm(nn.Module):
    """LayerNorm as a dynamic linear map: ``γ · (x - mean(x)) / σ(x)`` (+ β only when kept for ablations).

    Centring is linear in x; σ is a dynamic weight (a constant in explanation mode).
    Shapes: ``[..., hidden]`` → ``[..., hidden]``.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-5, bias: bool = False) -> None:
        super().__init__()
        self.normalized_shape = (normalized_shape,)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        if bias:
            self.bias = nn.Parameter(torch.zeros(normalized_shape))
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_layer_norm(cls, norm: nn.LayerNorm, keep_bias: bool = False) -> "BcosLayerNorm":
        """Build from an ``nn.LayerNorm``, sharing its γ (and β when kept)."""
        if len(norm.normalized_shape) != 1 or norm.weight is None:
            raise ValueError(f"only affine LayerNorms over the last dimension are supported, got {norm}")
        layer = cls(norm.normalized_shape[0], eps=norm.eps)
        layer.weight = norm.weight
        if keep_bias and norm.bias is not None:
            layer.bias = norm.bias
        return layer

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """``γ · (x - mean(x)) / σ(x)``, without β."""
        if not is_explanation_mode():
            return F.layer_norm(x, self.normalized_shape, self.weight, None, self.eps)
        centred = x - x.mean(dim=-1, keepdim=True)
        std = (centred.square().mean(dim=-1, keepdim=True) + self.eps).sqrt()
        return centred / dynamic(std) * self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.normalized(x)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, bias={self.bias is not None}"


class BcosRMSNorm(nn.Module):
    """RMSNorm ``(offset + γ) · x / rms(x)`` with rms a dynamic weight, computed in float32.

    ``offset`` 0 is Llama's norm (``γ · (x/rms).to(dtype)``); Gemma stores ``γ - 1`` and scales by
    ``1 + γ`` in float32 before casting back (``offset=1``).
    Shapes: ``[..., hidden]`` → ``[..., hidden]``.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6, offset: float = 0.0) -> None:
        super().__init__()
        self.eps = eps
        self.offset = float(offset)
        self.weight = nn.Parameter(torch.ones(hidden_size) - self.offset)

    @classmethod
    def from_rms_norm(cls, norm: nn.Module, offset: float = 0.0) -> "BcosRMSNorm":
        """Build from a Hugging Face ``*RMSNorm`` (attributes ``weight`` and ``variance_epsilon`` or ``eps``),
        sharing γ; ``offset`` is what the norm adds to γ (1 for Gemma's ``1 + γ``)."""
        eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
        if eps is None:
            raise ValueError(f"cannot read the epsilon of {type(norm).__name__}")
        layer = cls(norm.weight.shape[0], eps=eps, offset=offset)
        layer.weight = norm.weight
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_dtype = x.dtype
        x32 = x.to(torch.float32) if input_dtype in (torch.float16, torch.bfloat16) else x
        normalized = x32 * dynamic(torch.rsqrt(x32.square().mean(dim=-1, keepdim=True) + self.eps))
        if self.offset:
            return (normalized * (self.offset + self.weight.to(normalized.dtype))).to(input_dtype)
        return self.weight * normalized.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}" + (f", offset={self.offset}" if self.offset else "")
