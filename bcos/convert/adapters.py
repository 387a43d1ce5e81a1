"""What bcosify needs to know about each architecture family, as data: which modules play which role.

Module names are matched with ``fnmatch`` against the qualified names of ``model.named_modules()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn
from transformers.activations import GELUActivation

from ..nn import BcosLayerNorm, BcosRMSNorm
from .heads import (FirstTokenClassificationHead, distilbert_head_activation_module, final_logit_softcap_module,
                    sequential_head)

HeadBuilder = Callable[[nn.Module], nn.Module]
"""Builds a replacement for a head module whose nonlinearity is applied functionally."""

NormConverter = Callable[[nn.Module, bool], nn.Module]
"""Builds the B-cos form of a norm module; the flag says whether its bias (β) is kept."""


def layer_norm(norm: nn.Module, keep_bias: bool) -> nn.Module:
    """``nn.LayerNorm`` → centred :class:`~bcos.nn.BcosLayerNorm` (β only when kept)."""
    return BcosLayerNorm.from_layer_norm(norm, keep_bias=keep_bias)


def rms_norm(norm: nn.Module, keep_bias: bool) -> nn.Module:
    """Llama-style ``γ · x / rms(x)`` → :class:`~bcos.nn.BcosRMSNorm`."""
    return BcosRMSNorm.from_rms_norm(norm)


def offset_rms_norm(norm: nn.Module, keep_bias: bool) -> nn.Module:
    """Gemma-style ``(1 + γ) · x / rms(x)`` (γ stored minus one) → :class:`~bcos.nn.BcosRMSNorm` with offset 1."""
    return BcosRMSNorm.from_rms_norm(norm, offset=1.0)


@dataclass(frozen=True)
class Adapter:
    """Roles of the modules of one architecture family.

    Attributes:
        model_type: ``config.model_type``.
        architectures: supported model classes (names).
        blocks: attribute path from the base model to its ``ModuleList`` of transformer blocks.
        bcos_linears: linear layers on the value/residual path → B-cos linear.
        plain_linears: linear layers that only shape dynamic weights (Q, K, gate) or V → bias removed.
        activation_key: config attribute naming the hidden activation (``"gelu"``, ``"silu"``, ...).
        norms: norm module class name → its converter; a norm class not listed makes bcosify raise.
        split_linears: fused projections → names of their equal output chunks; each becomes a child linear
            layer (``<name>.<part>``) that takes its role from ``bcos_linears`` / ``plain_linears``.
        gated_activations: activations ``x·g(x)`` whose gate becomes a dynamic weight.
        dynamic_activations: activations whose whole output is a dynamic weight (SwiGLU gate).
        head_activations: head nonlinearity modules, replaced by identity (unless kept).
        head_replacements: head modules with a functional nonlinearity, by class name → builder.
        class_overrides: model classes whose forward applies a head nonlinearity functionally → an in-place
            change that moves it into a module (one named by ``head_activations``, or Gemma's final-logit
            :class:`~bcos.nn.LogitSoftcap`, already a dynamic scale).
        causal: a decoder (token-level logits are next-token predictions).
        softcaps: config attributes of soft-caps (``c·tanh(x/c)``) the conversion handles; any other non-None
            ``*softcap*`` config value makes bcosify raise.
    """

    model_type: str
    architectures: tuple[str, ...]
    blocks: str
    bcos_linears: tuple[str, ...]
    plain_linears: tuple[str, ...]
    activation_key: str
    norms: dict[str, NormConverter]
    split_linears: dict[str, tuple[str, ...]] = field(default_factory=dict)
    gated_activations: tuple[str, ...] = ()
    dynamic_activations: tuple[str, ...] = ()
    head_activations: tuple[str, ...] = ()
    head_replacements: dict[str, HeadBuilder] = field(default_factory=dict)
    class_overrides: dict[str, Callable[[nn.Module], None]] = field(default_factory=dict)
    causal: bool = False
    softcaps: tuple[str, ...] = ()


def _roberta_classification_head(head: nn.Module) -> nn.Module:
    return FirstTokenClassificationHead(head.dense, head.out_proj, head.dropout, nn.Tanh())


def _roberta_lm_head(head: nn.Module) -> nn.Module:
    # RobertaLMHead applies GELU functionally; this is a hidden activation, not a head one: it is kept and gated.
    return sequential_head(dense=head.dense, activation=GELUActivation(), layer_norm=head.layer_norm, decoder=head.decoder)


def _bert_lm_prediction_head(head: nn.Module) -> nn.Module:
    # Drops the separate output bias parameter (it is the decoder's bias, removed or kept with it).
    return sequential_head(transform=head.transform, decoder=head.decoder)


_LAYER_NORM: dict[str, NormConverter] = {"LayerNorm": layer_norm}


def _llama_like(model_type: str, prefix: str, *, base: str | None = None, classifier: str | None = None,
                norm: NormConverter = rms_norm, activation_key: str = "hidden_act",
                causal_lm_override: Callable[[nn.Module], None] | None = None, softcaps: tuple[str, ...] = ()
                ) -> Adapter:
    """A decoder with Llama's module names (``self_attn.{q,k,v,o}_proj``, SwiGLU ``mlp.{gate,up,down}_proj`` +
    ``act_fn``, ``<prefix>RMSNorm``s, ``lm_head`` / ``score``): Llama, Qwen2/3, Mistral, Gemma 1-3.
    Qwen3's and Gemma 3's q/k norms are RMSNorms of the same class, converted like the others (they only shape
    attention probabilities, which are a dynamic weight anyway)."""
    causal_lm = f"{prefix}ForCausalLM"
    return Adapter(
        model_type=model_type,
        architectures=(base or f"{prefix}Model", causal_lm, classifier or f"{prefix}ForSequenceClassification"),
        blocks="layers",
        bcos_linears=("*.self_attn.o_proj", "*.mlp.up_proj", "*.mlp.down_proj", "lm_head", "score"),
        plain_linears=("*.self_attn.q_proj", "*.self_attn.k_proj", "*.self_attn.v_proj", "*.mlp.gate_proj"),
        activation_key=activation_key,
        norms={f"{prefix}RMSNorm": norm},
        dynamic_activations=("*.mlp.act_fn",),
        class_overrides={causal_lm: causal_lm_override} if causal_lm_override else {},
        causal=True,
        softcaps=softcaps,
    )


#: Gemma 2 and 3: Gemma's norm, the activation under another config key, and the two soft-caps (attention: kept in
#: the probabilities by B-cos attention; final logits: a dynamic scale, moved into a module by the override).
_GEMMA_2_AND_3 = dict(norm=offset_rms_norm, activation_key="hidden_activation",
                      causal_lm_override=final_logit_softcap_module,
                      softcaps=("attn_logit_softcapping", "final_logit_softcapping"))

_BERT_LIKE_BLOCK_LINEARS = ("*.attention.output.dense", "*.intermediate.dense", "*.layer.*.output.dense")
_BERT_LIKE_QKV = ("*.attention.self.query", "*.attention.self.key", "*.attention.self.value")

ADAPTERS: dict[str, Adapter] = {
    adapter.model_type: adapter
    for adapter in (
        Adapter(
            model_type="bert",
            architectures=("BertModel", "BertForSequenceClassification", "BertForMaskedLM"),
            blocks="encoder.layer",
            bcos_linears=_BERT_LIKE_BLOCK_LINEARS
            + ("*pooler.dense", "classifier", "cls.predictions.transform.dense", "cls.predictions.decoder"),
            plain_linears=_BERT_LIKE_QKV,
            activation_key="hidden_act",
            norms=_LAYER_NORM,
            gated_activations=("*.intermediate.intermediate_act_fn", "cls.predictions.transform.transform_act_fn"),
            head_activations=("*pooler.activation",),
            head_replacements={"BertLMPredictionHead": _bert_lm_prediction_head},
        ),
        Adapter(
            model_type="roberta",
            architectures=("RobertaModel", "RobertaForSequenceClassification", "RobertaForMaskedLM"),
            blocks="encoder.layer",
            bcos_linears=_BERT_LIKE_BLOCK_LINEARS
            + ("*pooler.dense", "classifier.dense", "classifier.out_proj", "lm_head.dense", "lm_head.decoder"),
            plain_linears=_BERT_LIKE_QKV,
            activation_key="hidden_act",
            norms=_LAYER_NORM,
            gated_activations=("*.intermediate.intermediate_act_fn", "lm_head.activation"),
            head_activations=("*pooler.activation", "classifier.activation"),
            head_replacements={
                "RobertaClassificationHead": _roberta_classification_head,
                "RobertaLMHead": _roberta_lm_head,
            },
        ),
        Adapter(
            model_type="distilbert",
            architectures=("DistilBertModel", "DistilBertForSequenceClassification", "DistilBertForMaskedLM"),
            blocks="transformer.layer",
            bcos_linears=("*.attention.out_lin", "*.ffn.lin1", "*.ffn.lin2", "pre_classifier", "classifier",
                          "vocab_transform", "vocab_projector"),
            plain_linears=("*.attention.q_lin", "*.attention.k_lin", "*.attention.v_lin"),
            activation_key="activation",
            norms=_LAYER_NORM,
            gated_activations=("*.ffn.activation", "activation"),
            head_activations=("head_activation",),
            class_overrides={"DistilBertForSequenceClassification": distilbert_head_activation_module},
        ),
        Adapter(
            model_type="gpt2",
            architectures=("GPT2Model", "GPT2LMHeadModel", "GPT2ForSequenceClassification"),
            blocks="h",
            bcos_linears=("*.attn.c_proj", "*.mlp.c_fc", "*.mlp.c_proj", "lm_head", "score"),
            plain_linears=("*.attn.c_attn",),
            activation_key="activation_function",
            norms=_LAYER_NORM,
            gated_activations=("*.mlp.act",),
            causal=True,
        ),
        _llama_like("llama", "Llama"),
        _llama_like("qwen2", "Qwen2"),
        _llama_like("mistral", "Mistral"),
        _llama_like("qwen3", "Qwen3"),
        _llama_like("gemma", "Gemma", norm=offset_rms_norm),
        _llama_like("gemma2", "Gemma2", **_GEMMA_2_AND_3),
        _llama_like("gemma3_text", "Gemma3", base="Gemma3TextModel", classifier="Gemma3TextForSequenceClassification",
                    **_GEMMA_2_AND_3),
        Adapter(
            model_type="phi3",
            architectures=("Phi3Model", "Phi3ForCausalLM", "Phi3ForSequenceClassification"),
            blocks="layers",
            bcos_linears=("*.self_attn.o_proj", "*.mlp.gate_up_proj.up", "*.mlp.down_proj", "lm_head", "score"),
            plain_linears=("*.self_attn.qkv_proj", "*.mlp.gate_up_proj.gate"),
            activation_key="hidden_act",
            norms={"Phi3RMSNorm": rms_norm},
            split_linears={"*.mlp.gate_up_proj": ("gate", "up")},
            dynamic_activations=("*.mlp.activation_fn",),
            causal=True,
        ),
        Adapter(
            # Wi computes act(input) * gate in one matrix: its "input" half only feeds the dynamic weight act(input)
            # (plain), its "gate" half is the value path (B-cos). Local/global attention differ only in the mask.
            model_type="modernbert",
            architectures=("ModernBertModel", "ModernBertForSequenceClassification", "ModernBertForMaskedLM"),
            blocks="layers",
            bcos_linears=("*.attn.Wo", "*.mlp.Wi.gate", "*.mlp.Wo", "head.dense", "classifier", "decoder"),
            plain_linears=("*.attn.Wqkv", "*.mlp.Wi.input"),
            activation_key="classifier_activation",
            norms=_LAYER_NORM,
            split_linears={"*.mlp.Wi": ("input", "gate")},
            gated_activations=("head.act",),
            dynamic_activations=("*.mlp.act",),
        ),
    )
}


def transformer_blocks(model: nn.Module, adapter: Adapter) -> nn.ModuleList:
    """The ``ModuleList`` of transformer blocks; the input of the first one is what explanations attribute to."""
    return model.base_model.get_submodule(adapter.blocks)


def supported_architectures() -> list[str]:
    """All model classes bcosify supports."""
    return [name for adapter in ADAPTERS.values() for name in adapter.architectures]


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter for ``model``; ``ValueError`` naming the supported architectures if there is none."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    adapter = ADAPTERS.get(model_type)
    class_name = type(model).__name__
    if adapter is None or class_name not in adapter.architectures:
        raise ValueError(
            f"bcosify does not support {class_name} (model_type={model_type!r}). "
            f"Supported architectures: {', '.join(supported_architectures())}."
        )
    return adapter
