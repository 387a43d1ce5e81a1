"""Output gains for the B-cos layers of a direct conversion, set from one batch.

A direct conversion multiplies each layer's output by about ``|cos(x, w)|^(B-1)`` and normalises its weight rows;
the pre-trained weights are nearly orthogonal to their inputs, so the converted residual branches start at a few
per cent of their pre-trained size (``BENCHMARKS.md``, the forward-only probe). :func:`calibrate_output_gains`
gives every B-cos layer converted with ``output_gains=True`` the constant gain that makes the root mean square of
its output, on a given batch, equal to that of the plain linear map with the same weight on the same input — the
size the pre-trained layer's output had (without its bias). A constant gain keeps the model dynamic linear, so
explanations stay exact.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import BcosLinear


def gain_layers(model: nn.Module) -> dict[str, BcosLinear]:
    """The B-cos layers of ``model`` that have an output gain, by module name."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, BcosLinear) and module.output_gain is not None}


def rms(tensor: torch.Tensor) -> torch.Tensor:
    """Root mean square over every element, in float64. Shapes: any → scalar."""
    return tensor.detach().double().square().mean().sqrt()


def calibrate_output_gains(model: nn.Module, run: Callable[[], Any]) -> dict[str, float]:
    """Sets the output gain of every gain layer of ``model`` during one call of ``run`` (a forward pass over a
    batch, e.g. ``lambda: model(**batch)``) and returns the gains by layer name.

    Each layer is calibrated on the input it receives in that pass, after the layers before it were calibrated:
    its gain becomes ``RMS(x Wᵀ) / RMS(B-cos output without gain and bias)`` over every position of the batch
    (padding included; both computed in float32 or wider; 1 where both are 0). Runs without gradients.
    Calibrating again (on the same or another batch) replaces the gains.

    Raises:
        ValueError: ``model`` has no B-cos layer with an output gain (convert it with ``bcosify(...,
            output_gains=True)``), or ``run`` did not reach every such layer exactly once.
    """
    layers = gain_layers(model)
    if not layers:
        raise ValueError("the model has no B-cos layer with an output gain: convert it with "
                         "bcosify(model, ..., output_gains=True)")
    gains: dict[str, float] = {}

    def calibrate(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]:
        def hook(layer: BcosLinear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            if name in gains:
                raise ValueError(f"calibrate_output_gains: {name} ran twice in one pass; give a single forward pass")
            bias = 0.0 if layer.bias is None else layer.bias
            ungained = (output - bias) / layer.output_gain
            x = inputs[0]
            dtype = torch.promote_types(x.dtype, torch.float32)
            target = rms(F.linear(x.to(dtype), layer.weight.to(dtype)))
            size = rms(ungained)
            gain = 1.0 if target == 0 and size == 0 else (target / size).item()
            layer.output_gain.fill_(gain)
            gains[name] = layer.output_gain.item()
            return ungained * layer.output_gain + bias
        return hook

    handles = [layer.register_forward_hook(calibrate(name)) for name, layer in layers.items()]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    missed = [name for name in layers if name not in gains]
    if missed:
        raise ValueError(f"calibrate_output_gains: the forward pass did not reach {len(missed)} of the {len(layers)} "
                         f"gain layers (e.g. {missed[0]}); give a run that calls the model itself")
    return gains
