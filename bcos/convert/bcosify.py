"""``bcosify``: convert a loaded transformers model into a B-cos model, in place."""
from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..nn import BCOS_ATTENTION, BcosLayerNorm, BcosLinear, BcosRMSNorm, DynamicActivation, GatedActivation
from ..nn import register_bcos_attention
from .adapters import Adapter, adapter_for


@dataclass(frozen=True)
class BcosOptions:
    """Conversion options, stored in ``model.config.bcos`` so that a saved model can be rebuilt.

    Attributes:
        b: the B of every B-cos linear layer.
        layer_b: per-layer B as ``{fnmatch pattern over module names: b}``; the first matching pattern wins.
        remove_biases: remove every bias (the B-cos form); false keeps them (ablations, exactness checks).
        normalize_weights: B-cos layers use unit-norm weight rows.
        keep_head_activations: keep pooler tanh / classifier ReLU / tanh (ablations).
        keep_activations: keep hidden activations as ordinary nonlinearities instead of gated ones.
        eps: ε of the B-cos layers.
    """

    b: float = 2.0
    layer_b: dict[str, float] = field(default_factory=dict)
    remove_biases: bool = True
    normalize_weights: bool = True
    keep_head_activations: bool = False
    keep_activations: bool = False
    eps: float = 1e-6

    def b_for(self, module_name: str) -> float:
        for pattern, b in self.layer_b.items():
            if fnmatch.fnmatchcase(module_name, pattern):
                return float(b)
        return float(self.b)


def _describe(module: nn.Module | str) -> str:
    if isinstance(module, str):
        return module
    details = module.extra_repr()
    return f"{type(module).__name__}({details})" if details else type(module).__name__


@dataclass
class ConversionReport:
    """What bcosify changed: one ``(module name, before, after)`` row per replaced module."""

    model_class: str
    options: BcosOptions
    changes: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, name: str, before: nn.Module | str, after: nn.Module | str) -> None:
        self.changes.append((name, _describe(before), _describe(after)))

    def counts(self) -> dict[str, int]:
        """How many modules became each kind, e.g. ``{"BcosLinear": 37, ...}``."""
        result: dict[str, int] = {}
        for _, _, after in self.changes:
            kind = after.split("(")[0]
            result[kind] = result.get(kind, 0) + 1
        return result

    def __str__(self) -> str:
        width = max((len(name) for name, _, _ in self.changes), default=10)
        lines = [f"bcosify report for {self.model_class} with {self.options}"]
        lines += [f"  {name:<{width}}  {before}  ->  {after}" for name, before, after in self.changes]
        lines.append("  totals: " + ", ".join(f"{kind} x{n}" for kind, n in sorted(self.counts().items())))
        return "\n".join(lines)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _to_bcos_linear(module: nn.Module, b: float, options: BcosOptions) -> BcosLinear:
    if isinstance(module, Conv1D):
        weight = module.weight.detach().t().contiguous()
        layer = BcosLinear(weight.shape[1], weight.shape[0], b=b, normalize_weights=options.normalize_weights,
                           bias=not options.remove_biases, eps=options.eps, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if layer.bias is not None:
                layer.bias.copy_(module.bias)
        return layer
    return BcosLinear.from_linear(module, b=b, normalize_weights=options.normalize_weights,
                                  keep_bias=not options.remove_biases, eps=options.eps)


def _to_plain_linear(module: nn.Module, options: BcosOptions) -> nn.Module:
    keep_bias = not options.remove_biases and module.bias is not None
    if isinstance(module, Conv1D):
        weight = module.weight.detach().t()
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=keep_bias, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if keep_bias:
                layer.bias.copy_(module.bias)
        return layer
    if keep_bias or module.bias is None:
        return module
    layer = nn.Linear(module.in_features, module.out_features, bias=False, device=module.weight.device,
                      dtype=module.weight.dtype)
    layer.weight = module.weight
    return layer


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _replacement(name: str, module: nn.Module, adapter: Adapter, activation: str, options: BcosOptions
                 ) -> nn.Module | None:
    """The module that replaces ``module`` (None: leave it). Raises on a linear layer with no role."""
    if isinstance(module, (nn.Linear, Conv1D)):
        if _matches(name, adapter.bcos_linears):
            return _to_bcos_linear(module, options.b_for(name), options)
        if _matches(name, adapter.plain_linears):
            return _to_plain_linear(module, options)
        raise ValueError(f"bcosify: linear layer {name!r} of {adapter.model_type} has no known role; refusing to "
                         "convert partially. Please report this model class.")
    if isinstance(module, nn.LayerNorm):
        return BcosLayerNorm.from_layer_norm(module, keep_bias=not options.remove_biases)
    if type(module).__name__.endswith("RMSNorm"):
        return BcosRMSNorm.from_rms_norm(module)
    if _matches(name, adapter.head_activations):
        return None if options.keep_head_activations else nn.Identity()
    if options.keep_activations:
        return None
    if _matches(name, adapter.gated_activations):
        return GatedActivation(activation, module)
    if _matches(name, adapter.dynamic_activations):
        return DynamicActivation(module)
    return None


def bcosify(
    model: nn.Module,
    b: float = 2.0,
    *,
    layer_b: dict[str, float] | None = None,
    remove_biases: bool = True,
    normalize_weights: bool = True,
    keep_head_activations: bool = False,
    keep_activations: bool = False,
    eps: float = 1e-6,
) -> nn.Module:
    """Convert a loaded transformers model into a B-cos model, in place, and return it.

    Supported: BERT, DistilBERT, RoBERTa (base model, sequence classification, masked LM) and GPT-2, Llama
    (base model, causal LM, sequence classification). Every linear layer on the value/residual path becomes a
    :class:`~bcos.nn.BcosLinear` initialised from its pre-trained weights; biases are removed; LayerNorm is
    centred without β, RMSNorm and activations become dynamic scales; head activations are dropped; attention
    runs through the registered B-cos attention function. See ``BcosOptions`` for the options.

    The report of what changed is ``model.bcos_report`` (print it); the options are stored in
    ``model.config.bcos`` so that :func:`bcos.load_pretrained` can rebuild a saved model.

    Raises:
        ValueError: for an unsupported architecture (naming the supported ones) or an already converted model.
    """
    adapter = adapter_for(model)
    if getattr(model.config, "bcos", None) is not None:
        raise ValueError("this model is already a B-cos model (model.config.bcos is set); bcosify it only once")
    options = BcosOptions(b=b, layer_b=dict(layer_b or {}), remove_biases=remove_biases,
                          normalize_weights=normalize_weights, keep_head_activations=keep_head_activations,
                          keep_activations=keep_activations, eps=eps)
    report = ConversionReport(type(model).__name__, options)

    override = adapter.class_overrides.get(type(model).__name__)
    if override is not None:
        override(model)
        report.add("(forward)", "head nonlinearity applied functionally", "head nonlinearity as a module")
    for name, module in list(model.named_modules()):
        builder = adapter.head_replacements.get(type(module).__name__)
        if builder is not None:
            replacement = builder(module)
            _set_submodule(model, name, replacement)
            report.add(name, module, replacement)

    activation = getattr(model.config, adapter.activation_key)
    for name, module in list(model.named_modules()):
        replacement = _replacement(name, module, adapter, activation, options)
        if replacement is not None and replacement is not module:
            _set_submodule(model, name, replacement)
            report.add(name, module, replacement)

    register_bcos_attention()
    model.set_attn_implementation(BCOS_ATTENTION)
    report.add("(attention)", "sdpa/eager", BCOS_ATTENTION)
    model.config.bcos = {"architecture": type(model).__name__, **asdict(options)}
    model.bcos_report = report
    return model
