"""What bcosify needs to know about each architecture family, as data: which modules play which role.

Module names are matched with ``fnmatch`` against the qualified names of ``model.named_modules()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn
from transformers.activations import GELUActivation

from .heads import FirstTokenClassificationHead, distilbert_head_activation_module, sequential_head

HeadBuilder = Callable[[nn.Module], nn.Module]
"""Builds a replacement for a head module whose nonlinearity is applied functionally."""


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
        gated_activations: activations ``x·g(x)`` whose gate becomes a dynamic weight.
        dynamic_activations: activations whose whole output is a dynamic weight (SwiGLU gate).
        head_activations: head nonlinearity modules, replaced by identity (unless kept).
        head_replacements: head modules with a functional nonlinearity, by class name → builder.
        class_overrides: model classes whose forward applies a head nonlinearity functionally → an in-place
            change that moves it into a module named by ``head_activations``.
        causal: a decoder (token-level logits are next-token predictions).
    """

    model_type: str
    architectures: tuple[str, ...]
    blocks: str
    bcos_linears: tuple[str, ...]
    plain_linears: tuple[str, ...]
    activation_key: str
    gated_activations: tuple[str, ...] = ()
    dynamic_activations: tuple[str, ...] = ()
    head_activations: tuple[str, ...] = ()
    head_replacements: dict[str, HeadBuilder] = field(default_factory=dict)
    class_overrides: dict[str, Callable[[nn.Module], None]] = field(default_factory=dict)
    causal: bool = False


def _roberta_classification_head(head: nn.Module) -> nn.Module:
    return FirstTokenClassificationHead(head.dense, head.out_proj, head.dropout, nn.Tanh())


def _roberta_lm_head(head: nn.Module) -> nn.Module:
    # RobertaLMHead applies GELU functionally; this is a hidden activation, not a head one: it is kept and gated.
    return sequential_head(dense=head.dense, activation=GELUActivation(), layer_norm=head.layer_norm, decoder=head.decoder)


def _bert_lm_prediction_head(head: nn.Module) -> nn.Module:
    # Drops the separate output bias parameter (it is the decoder's bias, removed or kept with it).
    return sequential_head(transform=head.transform, decoder=head.decoder)


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
            gated_activations=("*.mlp.act",),
            causal=True,
        ),
        Adapter(
            model_type="llama",
            architectures=("LlamaModel", "LlamaForCausalLM", "LlamaForSequenceClassification"),
            blocks="layers",
            bcos_linears=("*.self_attn.o_proj", "*.mlp.up_proj", "*.mlp.down_proj", "lm_head", "score"),
            plain_linears=("*.self_attn.q_proj", "*.self_attn.k_proj", "*.self_attn.v_proj", "*.mlp.gate_proj"),
            activation_key="hidden_act",
            dynamic_activations=("*.mlp.act_fn",),
            causal=True,
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
