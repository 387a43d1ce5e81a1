"""``bcosify``: convert a loaded transformers model into a B-cos model, in place."""
from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..nn import BCOS_ATTENTION, BcosLinear, DynamicActivation, GatedActivation, SplitLinear, register_bcos_attention
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
        output_gains: give every B-cos layer a constant output gain (1 until
            :func:`~bcos.convert.calibrate_output_gains` sets it), e.g. to give the converted branches back the
            size the pre-trained ones had.
    """

    b: float = 2.0
    layer_b: dict[str, float] = field(default_factory=dict)
    remove_biases: bool = True
    normalize_weights: bool = True
    keep_head_activations: bool = False
    keep_activations: bool = False
    eps: float = 1e-6
    output_gains: bool = False

    def __post_init__(self) -> None:
        for name, b in [("b", self.b), *((f"layer_b[{pattern!r}]", b) for pattern, b in self.layer_b.items())]:
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 1:
                raise ValueError(f"{name} must be a finite number >= 1 (B=1 is a plain linear layer; the paper uses "
                                 f"B=2), got {b!r}")
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {self.eps!r}")

    def check_layer_b(self, layer_names: list[str]) -> None:
        """Raises ValueError for a ``layer_b`` pattern that matches none of ``layer_names`` (the B-cos layers)."""
        for pattern in self.layer_b:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in layer_names):
                examples = ", ".join(layer_names[:3] + layer_names[-2:] if len(layer_names) > 5 else layer_names)
                raise ValueError(f"layer_b pattern {pattern!r} matches none of the model's {len(layer_names)} B-cos "
                                 f"layers (e.g. {examples}); patterns are fnmatch patterns over full module names, "
                                 "e.g. '*.attention.*' or 'bert.encoder.layer.0.*'")

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
                           bias=not options.remove_biases, eps=options.eps, output_gain=options.output_gains,
                           device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if layer.bias is not None:
                layer.bias.copy_(module.bias)
        return layer
    return BcosLinear.from_linear(module, b=b, normalize_weights=options.normalize_weights,
                                  keep_bias=not options.remove_biases, eps=options.eps,
                                  output_gain=options.output_gains)


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


def is_activation_module(module: nn.Module) -> bool:
    """An activation module of torch or transformers (``nn.Tanh``, ``GELUActivation``, ...)."""
    return type(module).__module__ in ("torch.nn.modules.activation", "transformers.activations")


def is_norm_module(module: nn.Module) -> bool:
    """A normalisation module: ``nn.LayerNorm``, any ``*Norm`` class of a modeling file."""
    return isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()


def _unknown(kind: str, name: str, module: nn.Module, adapter: Adapter, slot: str) -> ValueError:
    return ValueError(
        f"bcosify: {kind} {name!r} ({type(module).__name__}) of {adapter.model_type} has no role in its adapter; "
        f"refusing to convert partially (keeping it would silently break the B-cos form). Add it to the "
        f"adapter's {slot} in bcos/convert/adapters.py, or report this model class.")


def _replacement(name: str, module: nn.Module, adapter: Adapter, activation: str, options: BcosOptions
                 ) -> nn.Module | None:
    """The module that replaces ``module`` (None: leave it). Raises on a linear layer, norm or activation with no
    role in the adapter."""
    if isinstance(module, (nn.Linear, Conv1D)):
        if _matches(name, adapter.bcos_linears):
            return _to_bcos_linear(module, options.b_for(name), options)
        if _matches(name, adapter.plain_linears):
            return _to_plain_linear(module, options)
        raise _unknown("linear layer", name, module, adapter, "bcos_linears or plain_linears")
    if is_norm_module(module):
        converter = adapter.norms.get(type(module).__name__)
        if converter is None:
            raise _unknown("norm", name, module, adapter, "norms")
        return converter(module, not options.remove_biases)
    if _matches(name, adapter.head_activations):
        return None if options.keep_head_activations else nn.Identity()
    if _matches(name, adapter.gated_activations):
        return None if options.keep_activations else GatedActivation(activation, module)
    if _matches(name, adapter.dynamic_activations):
        return None if options.keep_activations else DynamicActivation(module)
    if is_activation_module(module):
        raise _unknown("activation", name, module, adapter, "gated_activations, dynamic_activations or "
                                                           "head_activations")
    return None


def unhandled_softcaps(model: nn.Module, adapter: Adapter) -> list[tuple[str, float]]:
    """``(config key, cap)`` of each soft-cap ``c·tanh(x/c)`` (a tanh in the forward path) that ``model``'s config
    turns on and its adapter does not handle."""
    return [(key, value) for key, value in model.config.to_dict().items()
            if "softcap" in key and value is not None and key not in adapter.softcaps]


def _check_softcaps(model: nn.Module, adapter: Adapter) -> None:
    unhandled = unhandled_softcaps(model, adapter)
    if unhandled:
        key, value = unhandled[0]
        raise ValueError(f"bcosify: {type(model).__name__} applies a soft-cap c·tanh(x/c) ({key}={value}) that "
                         f"the {adapter.model_type} adapter does not handle; it would stay a nonlinearity in the "
                         "forward path. Set it to None (retraining) or add its handling to the adapter.")


def _split_fused_linears(model: nn.Module, adapter: Adapter, report: ConversionReport) -> None:
    """Replace each fused projection named in ``adapter.split_linears`` by a :class:`~bcos.nn.SplitLinear`."""
    for name, module in list(model.named_modules()):
        parts = next((names for pattern, names in adapter.split_linears.items()
                      if fnmatch.fnmatchcase(name, pattern)), None)
        if parts is not None:
            split = SplitLinear.from_linear(module, parts)
            _set_submodule(model, name, split)
            report.add(name, module, split)


def bcos_layer_names(model: nn.Module, adapter: Adapter) -> list[str]:
    """The names the B-cos linear layers of ``model`` (not yet converted) will have: what ``layer_b`` patterns
    match, fused projections counted by their parts."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, Conv1D)):
            parts = next((parts for pattern, parts in adapter.split_linears.items()
                          if fnmatch.fnmatchcase(name, pattern)), None)
            names += [f"{name}.{part}" for part in parts] if parts else [name]
    return [name for name in names if _matches(name, adapter.bcos_linears)]


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
    output_gains: bool = False,
) -> nn.Module:
    """Convert a loaded transformers model into a B-cos model, in place, and return it.

    Supported: BERT, DistilBERT, RoBERTa, ModernBERT (base model, sequence classification, masked LM) and GPT-2,
    Llama, Qwen2, Qwen3, Mistral, Gemma, Gemma 2, Gemma 3 (text), Phi-3 (base model, causal LM, sequence
    classification); ``supported_architectures()`` lists the classes. Every linear layer on the value/residual
    path becomes a :class:`~bcos.nn.BcosLinear` initialised from its pre-trained weights; biases are removed;
    LayerNorm is centred without β, RMSNorm and activations become dynamic scales; head activations are dropped;
    attention runs through the registered B-cos attention function. See ``BcosOptions`` for the options. A norm,
    activation module, linear layer or soft-cap the architecture's adapter does not know raises instead of being
    kept. Check a conversion with :func:`bcos.verify` (``bcos.verify(bcosify(copy.deepcopy(m)), original=m)``).

    The report of what changed is ``model.bcos_report`` (print it); the options are stored in
    ``model.config.bcos`` so that :func:`bcos.load_pretrained` can rebuild a saved model.

    Raises:
        ValueError: for an unsupported architecture (naming the supported ones), an already converted model, a
            module with no role in the adapter, a B (``b`` or in ``layer_b``) that is not a finite number >= 1, a
            ``layer_b`` pattern that matches no B-cos layer.
    """
    adapter = adapter_for(model)
    if getattr(model.config, "bcos", None) is not None:
        raise ValueError("this model is already a B-cos model (model.config.bcos is set); bcosify it only once")
    _check_softcaps(model, adapter)
    options = BcosOptions(b=b, layer_b=dict(layer_b or {}), remove_biases=remove_biases,
                          normalize_weights=normalize_weights, keep_head_activations=keep_head_activations,
                          keep_activations=keep_activations, eps=eps, output_gains=output_gains)
    options.check_layer_b(bcos_layer_names(model, adapter))
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
    _split_fused_linears(model, adapter, report)

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
