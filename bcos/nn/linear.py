"""The B-cos linear layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mode import is_explanation_mode


class BcosScale(torch.autograd.Function):
    """``y = lin · (c² + ε)^p`` with ``c = lin / den`` and ``p = (B-1)/2``, with a hand-derived backward.

    With ``s = (c² + ε)^p`` and ``q = 2p c² / (c² + ε)``: ``∂y/∂lin = s (1 + q)`` and ``∂y/∂den = -s q c``.
    In explanation mode ``s`` is a constant: ``∂y/∂lin = s`` and ``den`` gets no gradient.
    Fusing this saves the elementwise passes autograd would record for div, square, pow and mul.

    Shapes: ``lin [..., out]``; ``den`` broadcastable to it (``[..., 1]`` or ``[..., out]``).
    """

    @staticmethod
    def forward(ctx, lin: torch.Tensor, den: torch.Tensor, exponent: float, eps: float, constant_scale: bool):
        cos = lin / den
        shifted = cos.square().add_(eps)
        scale = shifted.sqrt() if exponent == 0.5 else shifted.pow(exponent)
        ctx.constant_scale, ctx.exponent, ctx.den_shape = constant_scale, exponent, den.shape
        if constant_scale:
            ctx.save_for_backward(scale)
        else:
            ctx.save_for_backward(cos, shifted, scale)
        return lin * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.constant_scale:
            (scale,) = ctx.saved_tensors
            return grad * scale, None, None, None, None
        cos, shifted, scale = ctx.saved_tensors
        grad_scaled = grad * scale
        q = cos.square().mul_(2 * ctx.exponent).div_(shifted)
        grad_lin = grad_scaled * (1 + q)
        grad_den = None
        if ctx.needs_input_grad[1]:
            grad_den = -(grad_scaled * q * cos)
            grad_den = grad_den.sum_to_size(ctx.den_shape)
        return grad_lin, grad_den, None, None, None


def bcos_transform(x: torch.Tensor, weight: torch.Tensor, b: float, eps: float, normalization: float = 1.0
                   ) -> torch.Tensor:
    """``(w'ᵀx) · (cos(x, w)² + ε)^((B-1)/2)`` with the rows ``w' = w / ‖w‖^normalization``.

    ``normalization`` 1 uses unit-norm rows (the B-cos form), 0 the raw rows (so ``b=1`` is ``F.linear``);
    values in between are the steps of an annealed conversion. The cosine does not depend on it.
    Shapes: ``x [..., in]``, ``weight [out, in]`` → ``[..., out]``.
    """
    row_norm = None
    if normalization == 1.0:
        weight = F.normalize(weight, dim=1)
    elif normalization == 0.0:
        row_norm = weight.norm(dim=1)
    else:
        weight = weight / weight.norm(dim=1, keepdim=True).clamp_min(eps).pow(normalization)
        row_norm = weight.norm(dim=1)
    out = F.linear(x, weight)
    if b != 1.0:
        den = x.norm(dim=-1, keepdim=True) + eps
        if row_norm is not None:
            den = den * row_norm.clamp_min(eps)  # a zero row (e.g. a tied padding row) gives 0
        out = BcosScale.apply(out, den, (b - 1.0) / 2.0, eps, is_explanation_mode())
    return out


class BcosLinear(nn.Module):
    """B-cos linear layer: ``out = (ŵᵀx) · (cos(x, w)² + ε)^((B-1)/2)``.

    The factor is the (smoothed) ``|cos(x, w)|^(B-1)`` of the B-cos transform, a dynamic weight that is
    treated as a constant in explanation mode. ``ε`` inside the power keeps its derivative finite at
    ``cos = 0`` (without it training at 1 < B < 2 turns to NaN).

    Args:
        in_features, out_features: sizes as in ``nn.Linear``.
        b: the alignment pressure B (1 gives a linear layer).
        normalize_weights: use unit-norm rows ŵ = w/‖w‖ on the linear path (the B-cos default);
            when false the raw rows are used, so ``b=1`` reproduces the original layer exactly.
        bias: keep an additive bias (only for ablations: a bias breaks the dynamic-linear form).
        eps: the ε inside the power and in the cosine's denominator.
        output_gain: multiply the output by a constant scalar, the buffer ``output_gain`` (1 until set, e.g. by
            :func:`bcos.convert.calibrate_output_gains`); a constant keeps the layer dynamic linear.

    Shapes: input ``[..., in_features]`` → output ``[..., out_features]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        b: float = 2.0,
        normalize_weights: bool = True,
        bias: bool = False,
        eps: float = 1e-6,
        output_gain: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.b = float(b)
        self.normalize_weights = normalize_weights
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self._register_output_gain(output_gain)

    def _register_output_gain(self, output_gain: bool) -> None:
        gain = torch.ones((), device=self.weight.device, dtype=self.weight.dtype) if output_gain else None
        self.register_buffer("output_gain", gain)

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, b: float = 2.0, normalize_weights: bool = True, keep_bias: bool = False,
        eps: float = 1e-6, output_gain: bool = False,
    ) -> "BcosLinear":
        """Build from an ``nn.Linear``, sharing its weight parameter (so tied weights stay tied)."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features = linear.in_features, linear.out_features
        layer.b, layer.normalize_weights, layer.eps = float(b), normalize_weights, eps
        layer.weight = linear.weight
        if keep_bias and linear.bias is not None:
            layer.bias = linear.bias
        else:
            layer.register_parameter("bias", None)
        layer._register_output_gain(output_gain)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x, self.weight)

    def transform(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """This layer's B-cos transform with ``weight [out, in]`` in place of its own (e.g. with a LoRA update)."""
        out = bcos_transform(x, weight, self.b, self.eps, 1.0 if self.normalize_weights else 0.0)
        if self.output_gain is not None:
            out = out * self.output_gain
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, b={self.b}, "
            f"normalize_weights={self.normalize_weights}, bias={self.bias is not None}"
            + (", output_gain=True" if self.output_gain is not None else "")
        )


class SplitLinear(nn.Module):
    """A fused projection split into its parts: ``cat([part(x) for part in parts], -1)``.

    Fused projections such as Phi-3's ``gate_up_proj`` or ModernBERT's ``Wi`` compute a gate (a dynamic weight,
    kept linear) and a value path (a B-cos layer) in one matrix; split, each part gets its own role.
    Shapes: ``[..., in_features]`` → ``[..., Σ part out_features]``.
    """

    def __init__(self, parts: dict[str, nn.Module]) -> None:
        super().__init__()
        self.part_names = tuple(parts)
        for name, part in parts.items():
            self.add_module(name, part)

    @classmethod
    def from_linear(cls, linear: nn.Linear, names: tuple[str, ...]) -> "SplitLinear":
        """Split ``linear``'s output rows into ``len(names)`` equal chunks (copies of its weight and bias)."""
        if linear.out_features % len(names):
            raise ValueError(f"cannot split {linear} into {len(names)} equal parts")
        size = linear.out_features // len(names)
        parts = {}
        for index, name in enumerate(names):
            rows = slice(index * size, (index + 1) * size)
            part = nn.Linear(linear.in_features, size, bias=linear.bias is not None, device=linear.weight.device,
                             dtype=linear.weight.dtype)
            with torch.no_grad():
                part.weight.copy_(linear.weight[rows])
                if linear.bias is not None:
                    part.bias.copy_(linear.bias[rows])
            parts[name] = part
        return cls(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, name)(x) for name in self.part_names], dim=-1)

    def extra_repr(self) -> str:
        return f"parts={self.part_names}"
