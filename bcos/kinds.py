"""What kind of model a transformers model is, answered once from transformers' own model mappings."""
from __future__ import annotations

from typing import Literal

import transformers
from torch import nn
from transformers.models.auto import modeling_auto

Kind = Literal["sequence-classification", "causal-lm", "masked-lm"]

#: kind → (the transformers mapping of model type → class name, the Auto class that loads that kind)
_KINDS: dict[str, tuple[dict[str, str], type]] = {
    "sequence-classification": (modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
                                transformers.AutoModelForSequenceClassification),
    "causal-lm": (modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, transformers.AutoModelForCausalLM),
    "masked-lm": (modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES, transformers.AutoModelForMaskedLM),
}
KINDS: tuple[str, ...] = tuple(_KINDS)


def _class_names(mapping: dict[str, str | tuple[str, ...]]) -> set[str]:
    names: set[str] = set()
    for value in mapping.values():
        names.update((value,) if isinstance(value, str) else value)
    return names


_NAMES = {kind: _class_names(mapping) for kind, (mapping, _) in _KINDS.items()}
_ALL_MODEL_CLASSES = set().union(*(_class_names(mapping) for name, mapping in vars(modeling_auto).items()
                                   if name.startswith("MODEL_") and name.endswith("_MAPPING_NAMES")))


def kind_of_class(class_name: str) -> Kind | None:
    """The kind of the transformers model class named ``class_name`` (e.g. ``Qwen2ForCausalLM`` → causal-lm);
    None for classes of none of the kinds (base models such as ``BertModel``)."""
    return next((kind for kind, names in _NAMES.items() if class_name in names), None)


def kind_of(model: nn.Module | transformers.PretrainedConfig) -> Kind | None:
    """The kind of a loaded model (by its class) or of a saved one (by ``config.architectures``); None when
    it is of none of the kinds or a config names no architecture."""
    if isinstance(model, transformers.PretrainedConfig):
        architectures = getattr(model, "architectures", None) or []
        return kind_of_class(architectures[0]) if architectures else None
    return kind_of_class(type(model).__name__)


def auto_class(kind: str) -> type:
    """The transformers Auto class that loads models of ``kind``."""
    if kind not in _KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
    return _KINDS[kind][1]


def model_class(name: str) -> type[nn.Module]:
    """The transformers model class called ``name`` (e.g. from ``config.bcos["architecture"]``).

    Raises:
        ValueError: ``name`` is not a model class of transformers (any other attribute of the package is refused,
            so that a config file cannot make the loader call an arbitrary function).
    """
    if name not in _ALL_MODEL_CLASSES or not isinstance(getattr(transformers, name, None), type):
        raise ValueError(f"{name!r} is not a transformers model class; a saved model's architecture must name one, "
                         "e.g. 'BertForSequenceClassification' or 'LlamaForCausalLM'")
    return getattr(transformers, name)


def is_decoder(model: nn.Module | transformers.PretrainedConfig) -> bool:
    """Whether the model's family is decoder-only (causal attention: position ids count real tokens, a prediction
    is read at the last one): transformers has a causal LM for its ``model_type`` and no masked LM."""
    config = model if isinstance(model, transformers.PretrainedConfig) else getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    return (model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and model_type not in modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES)
