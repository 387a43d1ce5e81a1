"""LoRA adapters (peft) on B-cos models.

A LoRA update is linear, ``W + s·BA``, so a B-cos layer with an adapter is still a B-cos layer: of the weight
``W + s·BA`` (its rows normalised, its cosine taken, with that weight). :class:`BcosLoraLinear` computes exactly
that, so merging the adapter into ``W`` changes nothing; plain linear layers (Q, K, V, gates) get peft's own LoRA
layer. Requires ``pip install peft==0.21.2`` (the ``lora`` extra).
"""
from __future__ import annotations

import copy
import os
from typing import Any

import peft
import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn

from ..nn import BcosLinear
from .adapters import adapter_for, transformer_blocks


class BcosLoraLinear(LoraLinear):
    """peft's LoRA layer for a :class:`~bcos.nn.BcosLinear`: the active adapters update the weight inside the B-cos
    transform, ``bcos(x; W + Σ s·BA)``, so that merged and unmerged adapters compute the same.

    LoRA dropout acts on the adapter's input path, which this form does not have: ``lora_dropout`` must be 0.
    Shapes as the B-cos layer's.
    """

    def update_layer(self, adapter_name: str, r: int, lora_alpha: float, *args: Any, config=None, **kwargs) -> None:
        dropout = kwargs.get("lora_dropout", getattr(config, "lora_dropout", 0.0))
        if dropout:
            raise ValueError(f"lora_dropout={dropout}: LoRA on a B-cos layer updates its weight (merged and "
                             "unmerged compute the same), which leaves no adapter input to drop; use lora_dropout=0")
        super().update_layer(adapter_name, r, lora_alpha, *args, config=config, **kwargs)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        active = [name for name in self.active_adapters if name in self.lora_A]
        if self.disable_adapters or self.merged or not active or kwargs.get("adapter_names") is not None:
            return super().forward(x, *args, **kwargs)
        base: BcosLinear = self.get_base_layer()
        weight = base.weight + sum(self.get_delta_weight(name).to(base.weight.dtype) for name in active)
        return base.transform(x, weight)


def lora_config(model: nn.Module, r: int = 8, lora_alpha: float = 16, target_modules: list[str] | None = None,
                **kwargs: Any) -> peft.LoraConfig:
    """A ``peft.LoraConfig`` for a bcosified ``model`` with :class:`BcosLoraLinear` registered for its B-cos layers.

    ``target_modules`` defaults to every linear layer inside the transformer blocks (the B-cos layers and the
    plain Q/K/V and gate projections; heads are left out: name them in ``modules_to_save`` to train them fully).
    Other keyword arguments go to ``peft.LoraConfig``.
    """
    if target_modules is None:
        blocks = transformer_blocks(model, adapter_for(model))
        prefix = next(name for name, module in model.named_modules() if module is blocks)
        target_modules = [f"{prefix}.{name}" for name, module in blocks.named_modules()
                          if isinstance(module, (BcosLinear, nn.Linear))]
    config = peft.LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=target_modules,
                             lora_dropout=kwargs.pop("lora_dropout", 0.0), **kwargs)
    config._register_custom_module({BcosLinear: BcosLoraLinear})
    return config


def add_lora(model: nn.Module, r: int = 8, lora_alpha: float = 16, target_modules: list[str] | None = None,
             **kwargs: Any) -> peft.PeftModel:
    """Wrap a bcosified ``model`` in a ``peft.PeftModel`` with LoRA adapters (see :func:`lora_config`); only the
    adapters (and ``modules_to_save``) train. ``model`` itself holds the LoRA layers: explain or verify it directly.
    """
    return peft.get_peft_model(model, lora_config(model, r, lora_alpha, target_modules, **kwargs))


def load_lora(model: nn.Module, path: str | os.PathLike, is_trainable: bool = False) -> peft.PeftModel:
    """Load a LoRA adapter saved with ``peft_model.save_pretrained(path)`` onto a bcosified ``model`` (the same
    base weights it was trained on)."""
    config = peft.LoraConfig.from_pretrained(str(path))
    config._register_custom_module({BcosLinear: BcosLoraLinear})
    return peft.PeftModel.from_pretrained(model, str(path), config=config, is_trainable=is_trainable)


def head_module_names(model: nn.Module) -> list[str]:
    """The task heads of a transformers classifier ``model``: its top-level children with parameters other than the
    base model (``model.base_model_prefix``), e.g. ``["classifier"]`` for BERT, ``["pre_classifier", "classifier"]``
    for DistilBERT, ``["score"]`` for Llama. Train them fully (``modules_to_save``) when the head is new."""
    return [name for name, child in model.named_children()
            if name != model.base_model_prefix and any(True for _ in child.parameters())]


def merged_copy(peft_model: peft.PeftModel) -> nn.Module:
    """A copy of the wrapped transformers model with the adapters merged into its weights (plain B-cos layers: what
    ``bcos.load`` reads back); ``peft_model`` keeps training unmerged."""
    return copy.deepcopy(peft_model).merge_and_unload()
