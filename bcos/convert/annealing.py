"""Annealed conversion: start from a model that computes exactly what the pre-trained one did, and move it to
the B-cos form during fine-tuning (the B-cosification recipe of Arya et al., 2024, for language models).

``BcosAnnealing(model, steps, b=...)`` converts ``model`` in place into its progress-0 form — B-cos layers with
``b=1``, biases, raw weights and head activations: the original function — and each ``step()`` moves every
annealed module a ``1/steps`` further towards the target: ``b`` rises linearly from 1, the weight rows are
divided by ``‖w‖^progress`` (when the target normalises them), biases are multiplied by ``1 - progress`` and head
activations become ``(1 - progress)·f(x) + progress·x``. At the last step every annealed module is replaced by
its final form, so the model is then exactly what ``bcosify(model, b=...)`` gives (no bias parameter left,
``config.bcos`` the same): the ramp leaves no trace in saved models.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, replace
from typing import Iterator

import torch
from torch import nn

from ..nn import BcosLayerNorm, BcosLinear, bcos_transform
from .adapters import adapter_for
from .bcosify import BcosOptions, _matches, _set_submodule, bcos_layer_names, bcosify


class AnnealedLinear(BcosLinear):
    """A linear layer between ``W x + β`` (progress 0) and its converted form (progress 1): a B-cos layer of
    ``target_b`` (normalised when ``normalize_weights``), or — for ``bcos=False`` (Q, K, V) — a plain linear
    layer without bias. Keeps the parameter names ``weight`` and ``bias``.

    Shapes: ``[..., in_features]`` → ``[..., out_features]``.
    """

    def __init__(self, linear: BcosLinear | nn.Linear, target_b: float, normalize_weights: bool, remove_bias: bool,
                 bcos: bool, eps: float) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.target_b, self.target_normalized, self.remove_bias, self.bcos = target_b, normalize_weights, remove_bias, bcos
        self.normalize_weights, self.eps = normalize_weights, eps
        self._register_output_gain(False)
        self.progress = 0.0

    @property
    def b(self) -> float:
        return 1.0 + self.progress * (self.target_b - 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = bcos_transform(x, self.weight, self.b, self.eps, self.progress if self.target_normalized else 0.0)
        if self.bias is not None:
            out = out + (1.0 - self.progress if self.remove_bias else 1.0) * self.bias
        return out

    def final(self) -> nn.Module:
        """The converted layer, sharing the weight (and the bias, when it is kept)."""
        if not self.bcos:  # annealed only when its bias is removed
            layer = nn.Linear(self.in_features, self.out_features, bias=False, device=self.weight.device,
                              dtype=self.weight.dtype)
            layer.weight = self.weight
            return layer
        return BcosLinear.from_linear(self, b=self.target_b, normalize_weights=self.target_normalized,
                                      keep_bias=not self.remove_bias, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, progress={self.progress:.3f}, target_b={self.target_b}"


class AnnealedLayerNorm(BcosLayerNorm):
    """A centred LayerNorm whose β is multiplied by ``1 - progress``. Shapes: ``[..., hidden]`` → same."""

    def __init__(self, norm: BcosLayerNorm) -> None:
        super().__init__(norm.normalized_shape[0], eps=norm.eps)
        self.weight, self.bias = norm.weight, norm.bias
        self.progress = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalized(x) + (1.0 - self.progress) * self.bias

    def final(self) -> BcosLayerNorm:
        return BcosLayerNorm.from_layer_norm(self, keep_bias=False)


class FadedActivation(nn.Module):
    """``(1 - progress) · f(x) + progress · x``: a head nonlinearity fading into the identity. Elementwise."""

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.activation = activation
        self.progress = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.lerp(self.activation(x), x, self.progress)

    def final(self) -> nn.Module:
        return nn.Identity()

    def extra_repr(self) -> str:
        return f"progress={self.progress:.3f}"


ANNEALED_MODULES = (AnnealedLinear, AnnealedLayerNorm, FadedActivation)
#: the entry of a Lightning checkpoint that holds ``BcosAnnealing.state_dict()``
CHECKPOINT_KEY = "bcos_annealing"


def annealed_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs of ``model`` that are still annealing."""
    return ((name, module) for name, module in model.named_modules() if isinstance(module, ANNEALED_MODULES))


def annealing_progress(model: nn.Module) -> float | None:
    """The progress (in [0, 1)) of a model whose annealed conversion has not ended, else None."""
    return next((float(module.progress) for _, module in annealed_modules(model)), None)


def warn_if_annealing(model: nn.Module) -> bool:
    """Warns that explanations of a model in the middle of its annealed conversion are not complete (its biases
    and head nonlinearities are still partly there); returns whether they are complete."""
    progress = annealing_progress(model)
    if progress is None:
        return True
    warnings.warn(f"the model is in the middle of its annealed B-cos conversion (progress {progress:.2f}): it still "
                  "has biases or head nonlinearities, so the contributions do not sum exactly to the logit; explain "
                  "it once the annealing has ended", stacklevel=3)
    return False


class BcosAnnealing:
    """Converts ``model`` in place into a B-cos model over ``steps`` training steps (see the module docstring).

    Call :meth:`step` once per optimizer step; :meth:`state_dict` / :meth:`load_state_dict` carry the position
    through checkpoints (loading a finished state finalises the model, so its parameters match). ``steps=0``
    converts at once, exactly like ``bcosify``.

    Args:
        model: a loaded transformers model of a supported architecture (not yet converted).
        steps: number of steps of the ramp.
        b, layer_b, remove_biases, normalize_weights, keep_head_activations, keep_activations, eps: the target,
            as for :func:`bcosify`.
    """

    def __init__(self, model: nn.Module, steps: int, b: float = 2.0, *, layer_b: dict[str, float] | None = None,
                 remove_biases: bool = True, normalize_weights: bool = True, keep_head_activations: bool = False,
                 keep_activations: bool = False, eps: float = 1e-6) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative int, got {steps!r}")
        self.model, self.steps, self.completed = model, steps, 0
        self.target = BcosOptions(b=b, layer_b=dict(layer_b or {}), remove_biases=remove_biases,
                                  normalize_weights=normalize_weights, keep_head_activations=keep_head_activations,
                                  keep_activations=keep_activations, eps=eps)
        adapter = adapter_for(model)
        self.target.check_layer_b(bcos_layer_names(model, adapter))
        start = replace(self.target, b=1.0, layer_b={}, remove_biases=False, normalize_weights=False,
                        keep_head_activations=True)
        bcosify(model, **asdict(start))
        for name, module in list(model.named_modules()):
            annealed = self._annealed(name, module, adapter)
            if annealed is not None:
                _set_submodule(model, name, annealed)
        self._set_progress(0.0)
        self._record()
        if steps == 0:
            self._finalize()

    def _annealed(self, name: str, module: nn.Module, adapter) -> nn.Module | None:
        target = self.target
        if isinstance(module, BcosLinear):
            return AnnealedLinear(module, target.b_for(name), target.normalize_weights, target.remove_biases,
                                  bcos=True, eps=target.eps)
        if isinstance(module, nn.Linear) and module.bias is not None and target.remove_biases \
                and _matches(name, adapter.plain_linears):
            return AnnealedLinear(module, 1.0, normalize_weights=False, remove_bias=True, bcos=False, eps=target.eps)
        if isinstance(module, BcosLayerNorm) and module.bias is not None and target.remove_biases:
            return AnnealedLayerNorm(module)
        if _matches(name, adapter.head_activations) and not target.keep_head_activations:
            return FadedActivation(module)
        return None

    @property
    def progress(self) -> float:
        """Fraction of the ramp done, in [0, 1]."""
        return 1.0 if self.steps == 0 else min(1.0, self.completed / self.steps)

    @property
    def finished(self) -> bool:
        return self.completed >= self.steps

    def _set_progress(self, progress: float) -> None:
        for _, module in annealed_modules(self.model):
            module.progress = progress

    def _record(self) -> None:
        """``config.bcos`` names the target (what ``bcosify`` records) and, while the ramp runs, its position, so
        that a model saved mid-ramp is refused by the loaders instead of being rebuilt as something it is not."""
        self.model.config.bcos = {"architecture": type(self.model).__name__, **asdict(self.target)}
        if not self.finished:
            self.model.config.bcos["annealing"] = self.state_dict()

    def _finalize(self) -> None:
        for name, module in list(annealed_modules(self.model)):
            _set_submodule(self.model, name, module.final())
        self._record()

    def step(self) -> None:
        """Advance one step; at the last one the model becomes its final B-cos form."""
        if self.finished:
            return
        self.completed += 1
        self._set_progress(self.progress)
        self._record()
        if self.finished:
            self._finalize()

    class _Preview:
        def __init__(self, annealing: "BcosAnnealing", progress: float) -> None:
            self.annealing, self.at = annealing, progress

        def __enter__(self) -> None:
            self.annealing._set_progress(self.at)

        def __exit__(self, *exc_info: object) -> None:
            self.annealing._set_progress(self.annealing.progress)

    def preview(self, progress: float) -> "BcosAnnealing._Preview":
        """Context manager: the model computes as at ``progress`` (e.g. 1.0: its final form) inside the block."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        return self._Preview(self, progress)

    def set_length(self, steps: int) -> None:
        """Sets the number of steps of a ramp that has not started yet (e.g. once the length of training is known)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        if self.completed or self.finished:
            raise ValueError(f"the ramp has already started ({self.completed} of {self.steps} steps); its length is fixed")
        self.steps = steps
        self._record()

    def state_dict(self) -> dict[str, int]:
        return {"completed": self.completed, "steps": self.steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the saved ramp (``state`` from :meth:`state_dict`, its length included) on a model built by the
        same annealing."""
        if self.finished and annealing_progress(self.model) is None and state["completed"] < state["steps"]:
            raise ValueError("this model has already finished its annealing; it cannot go back to step "
                             f"{state['completed']}")
        self.steps, self.completed = int(state["steps"]), int(state["completed"])
        if self.finished:
            if annealing_progress(self.model) is not None:
                self._finalize()
        else:
            self._set_progress(self.progress)
            self._record()
