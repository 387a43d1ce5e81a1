"""Replacement heads for heads whose nonlinearity is applied functionally (no module to swap)."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput


class FirstTokenClassificationHead(nn.Module):
    """``out_proj(dropout(act(dense(dropout(h[:, 0])))))`` — RoBERTa's head with a swappable activation.

    Keeps the child names ``dense`` and ``out_proj`` so checkpoints keep their keys.
    Shapes: ``[batch, seq, hidden]`` → ``[batch, num_labels]``.
    """

    def __init__(self, dense: nn.Module, out_proj: nn.Module, dropout: nn.Module, activation: nn.Module) -> None:
        super().__init__()
        self.dense, self.out_proj, self.dropout, self.activation = dense, out_proj, dropout, activation

    def forward(self, features: torch.Tensor, **kwargs) -> torch.Tensor:
        x = self.dropout(features[:, 0])
        x = self.dropout(self.activation(self.dense(x)))
        return self.out_proj(x)


def sequential_head(**children: nn.Module) -> nn.Sequential:
    """A head applying ``children`` in order, under their given names (state-dict keys are kept)."""
    return nn.Sequential(OrderedDict(children))


class _DistilBertClassifierWithHeadActivation:
    """Forward of DistilBertForSequenceClassification with its functional ReLU moved into the module
    ``head_activation`` (``pre_classifier → head_activation → dropout → classifier``), so that conversion can
    remove or anneal it like any other head activation; with ``nn.ReLU()`` it computes the original forward.
    The loss is the model's own ``loss_function``."""

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, position_ids=None, **kwargs):
        outputs = self.distilbert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            position_ids=position_ids,
            return_dict=True,
            **kwargs,
        )
        pooled = self.head_activation(self.pre_classifier(outputs[0][:, 0]))
        logits = self.classifier(self.dropout(pooled))
        loss = None if labels is None else self.loss_function(labels, logits, self.config)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def distilbert_head_activation_module(model: nn.Module) -> None:
    """Gives a DistilBertForSequenceClassification its head ReLU as the module ``model.head_activation``
    (in place: the class becomes a subclass with the forward of ``_DistilBertClassifierWithHeadActivation``)."""
    model_class = type(model)
    model.__class__ = type(model_class.__name__, (_DistilBertClassifierWithHeadActivation, model_class),
                           {"__module__": __name__})
    model.head_activation = nn.ReLU()
