"""``bcos.verify``: check that a converted model is a B-cos model, on a random padded batch.

It checks what the B-cos promise rests on: no bias left, no unconverted nonlinearity (norm, activation module,
soft-cap, non-B-cos attention), completeness (contributions at the first block's input sum to the explained
output) and, given the original model, that the architecture's conversion is exact (a b=1 conversion with
everything kept computes what the original did). Completeness is recomputed here from gradient × input,
independently of :func:`bcos.explain`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from .convert.adapters import Adapter, adapter_for, transformer_blocks
from .convert.bcosify import bcosify, is_activation_module, is_norm_module, unhandled_softcaps
from .nn import BCOS_ATTENTION, BcosLayerNorm, BcosRMSNorm, DynamicActivation, GatedActivation, explanation_mode

#: Completeness tolerance by dtype, relative to max(|y|, Σ_t |contribution_t|) (a contrast y can be ~0 while its
#: terms are not). In half precision the forward itself rounds between the dynamic-linear steps: on the tiny test
#: models the error reached 0.24 (bf16 weights), 0.07 (float32 weights under bf16 autocast) and 0.02 (fp16),
#: against 1e-6 in float32 — explain a half-precision model through a float32 copy.
COMPLETENESS_TOLERANCES = {torch.float64: 1e-6, torch.float32: 1e-3, torch.bfloat16: 0.3, torch.float16: 0.05}
#: The identity check runs in float32 (transformers' RMSNorms and eager attention compute in float32 even in a
#: float64 model, and its float64 eager attention turns fully padded rows into NaN): absolute, after scaling by
#: max(1, max |original output|).
IDENTITY_TOLERANCE = 1e-5


@dataclass
class VerificationReport:
    """The result of :func:`verify`; ``passed`` (also ``bool(report)``) when every check holds.

    Attributes:
        model_class: the verified model's class name.
        dtype: the dtype the completeness check ran in (the identity check runs in float32).
        biases: names of the bias parameters left.
        nonlinearities: ``"name: what"`` for each unconverted norm, activation, soft-cap or attention.
        completeness_error: max over rows and explained values of ``|Σ_t c_t - y| / max(|y|, Σ_t |c_t|)``.
        completeness_tolerance: its bound for ``dtype``.
        identity_error: max abs difference between the original and its b=1 everything-kept conversion (float32),
            scaled by ``max(1, max |original|)``; None when no original model was given.
        identity_tolerance: its bound.
    """

    model_class: str
    dtype: torch.dtype
    biases: list[str] = field(default_factory=list)
    nonlinearities: list[str] = field(default_factory=list)
    completeness_error: float = float("nan")
    completeness_tolerance: float = 0.0
    identity_error: float | None = None
    identity_tolerance: float = IDENTITY_TOLERANCE

    @property
    def complete(self) -> bool:
        return self.completeness_error <= self.completeness_tolerance

    @property
    def exact(self) -> bool | None:
        """Whether the b=1 conversion reproduces the original (None: not checked)."""
        return None if self.identity_error is None else self.identity_error <= self.identity_tolerance

    @property
    def passed(self) -> bool:
        return not self.biases and not self.nonlinearities and self.complete and self.exact is not False

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        def mark(ok: bool | None) -> str:
            return "skipped" if ok is None else ("ok" if ok else "FAILED")

        identity = ("not checked (pass original=)" if self.identity_error is None else
                    f"{self.identity_error:.2e} <= {self.identity_tolerance:.0e}")
        lines = [f"bcos.verify {self.model_class} ({self.dtype}): {'passed' if self.passed else 'FAILED'}",
                 f"  no bias left: {mark(not self.biases)}" + (f" ({', '.join(self.biases[:5])}"
                                                                f"{', ...' if len(self.biases) > 5 else ''})"
                                                                if self.biases else ""),
                 f"  no unconverted nonlinearity: {mark(not self.nonlinearities)}"]
        lines += [f"    {item}" for item in self.nonlinearities]
        lines.append(f"  completeness: {mark(self.complete)} ({self.completeness_error:.2e} <= "
                     f"{self.completeness_tolerance:.0e})")
        lines.append(f"  b=1 conversion equals the original: {mark(self.exact)} ({identity})")
        return "\n".join(lines)


def verify(model: nn.Module, original: nn.Module | None = None, *, batch: int = 3, seq: int = 10,
           seed: int = 0) -> VerificationReport:
    """Check a bcosified ``model`` (see the module docstring) and return a :class:`VerificationReport`.

    Args:
        model: a model converted by :func:`bcos.bcosify`; checked in its own dtype and on its device, in eval mode
            (its training flag is restored).
        original: the unconverted model (same architecture); when given, float32 copies of it, unconverted and
            converted with b=1 and everything kept, are compared on the same batch.
        batch, seq, seed: the random batch: ``[batch, seq]`` ids with 0, 2, 4, ... padding tokens per row (left
            padding for decoders, right for encoders).
    """
    adapter = adapter_for(model)
    dtype = next(model.parameters()).dtype
    report = VerificationReport(type(model).__name__, dtype,
                                completeness_tolerance=COMPLETENESS_TOLERANCES.get(dtype, 1e-3))
    report.biases = [name for name, _ in model.named_parameters() if name.endswith("bias")]
    report.nonlinearities = _unconverted_nonlinearities(model, adapter)
    input_ids, attention_mask = random_padded_batch(model, adapter, batch, seq, seed)
    with _eval_mode(model):
        report.completeness_error = _completeness_error(model, adapter, input_ids, attention_mask)
    if original is not None:
        report.identity_error = _identity_error(original, input_ids, attention_mask)
    return report


def random_padded_batch(model: nn.Module, adapter: Adapter, batch: int, seq: int, seed: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids, attention_mask [batch, seq]``: random tokens (ids from 3 up, clear of the usual special ids);
    row r has ``min(2r, seq - 2)`` padding tokens, on the left for decoders and on the right for encoders."""
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    input_ids = torch.randint(min(3, config.vocab_size - 1), config.vocab_size, (batch, seq), generator=generator)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    for row in range(1, batch):
        padded = slice(0, min(2 * row, seq - 2)) if adapter.causal else slice(seq - min(2 * row, seq - 2), seq)
        attention_mask[row, padded] = 0
        input_ids[row, padded] = pad_id
    device = next(model.parameters()).device
    return input_ids.to(device), attention_mask.to(device)


def _unconverted_nonlinearities(model: nn.Module, adapter: Adapter) -> list[str]:
    wrapped = {id(module.activation) for module in model.modules()
               if isinstance(module, (GatedActivation, DynamicActivation))}
    found = []
    for name, module in model.named_modules():
        if is_norm_module(module) and not isinstance(module, (BcosLayerNorm, BcosRMSNorm)):
            found.append(f"{name}: {type(module).__name__} (not a B-cos norm)")
        elif is_activation_module(module) and id(module) not in wrapped:
            found.append(f"{name}: {type(module).__name__} (an activation that is not a dynamic scale)")
    found += [f"config.{key}: soft-cap {value} not handled by the {adapter.model_type} adapter"
              for key, value in unhandled_softcaps(model, adapter)]
    attention = model.config._attn_implementation
    if attention != BCOS_ATTENTION:
        found.append(f"attention: {attention!r}, not {BCOS_ATTENTION!r} (probabilities are not detached when "
                     "explaining)")
    return found


class _eval_mode:
    def __init__(self, model: nn.Module) -> None:
        self.model, self.training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc_info: object) -> None:
        self.model.train(self.training)


def _explained_values(output: torch.Tensor, attention_mask: torch.Tensor, causal: bool) -> list[torch.Tensor]:
    """``[batch]`` values to explain: at the last real token (decoders) or the first one (encoders) of each row,
    the largest output, another one, and their difference (a contrast)."""
    rows = torch.arange(output.shape[0], device=output.device)
    if output.dim() == 3:
        position = attention_mask.sum(-1) - 1 if causal else torch.zeros_like(rows)
        output = output[rows, position]
    top = output.detach().argmax(-1)
    other = (top + 1) % output.shape[-1]
    first, second = output[rows, top], output[rows, other]
    return [first, second, first - second]


def _completeness_error(model: nn.Module, adapter: Adapter, input_ids: torch.Tensor,
                        attention_mask: torch.Tensor) -> float:
    captured: list[torch.Tensor] = []

    def capture(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        # a leaf that requires grad even when the embeddings are frozen (LoRA)
        captured.append((args[0] if args else kwargs["hidden_states"]).detach().requires_grad_(True))
        if args:
            return (captured[0],) + args[1:], kwargs
        return args, {**kwargs, "hidden_states": captured[0]}

    handle = transformer_blocks(model, adapter)[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.inference_mode(False), torch.enable_grad(), explanation_mode():
            output = model(input_ids=input_ids, attention_mask=attention_mask)
            output = output.logits if getattr(output, "logits", None) is not None else output.last_hidden_state
            values = _explained_values(output, attention_mask, adapter.causal)
            error = 0.0
            for index, value in enumerate(values):
                (grad,) = torch.autograd.grad(value.sum(), captured[0], retain_graph=index < len(values) - 1)
                # accumulated in at least float32, so that a bf16 model's sums do not add rounding of their own
                accumulate = torch.promote_types(grad.dtype, torch.float32)
                contributions = (grad.to(accumulate) * captured[0].to(accumulate)).sum(-1) * attention_mask
                explained = value.detach().to(accumulate)
                scale = torch.maximum(explained.abs(), contributions.abs().sum(-1))
                relative = (contributions.sum(-1) - explained).abs() / scale.clamp_min(torch.finfo(accumulate).tiny)
                error = max(error, relative.max().item())
    finally:
        handle.remove()
    return error


def _outputs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The logits (or last hidden state) at the real tokens: ``[tokens, ...]`` (``[batch, classes]`` for
    sequence-level heads)."""
    with torch.no_grad(), _eval_mode(model):
        output = model(input_ids=input_ids, attention_mask=attention_mask)
    values = output.logits if getattr(output, "logits", None) is not None else output.last_hidden_state
    return values[attention_mask.bool()] if values.dim() == 3 else values


def _identity_error(original: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> float:
    original = copy.deepcopy(original).float()
    reference = _outputs(original, input_ids, attention_mask)
    converted = bcosify(original, b=1.0, remove_biases=False, normalize_weights=False,
                        keep_head_activations=True)
    difference = (_outputs(converted, input_ids, attention_mask) - reference).abs().max().item()
    return difference / max(1.0, reference.abs().max().item())
