"""Replacement heads for heads whose nonlinearity is applied functionally (no module to swap)."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast, SequenceClassifierOutput
from transformers.modeling_utils import slice_logits_to_keep

from ..nn import LogitSoftcap


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
    _override_forward(model, _DistilBertClassifierWithHeadActivation)
    model.head_activation = nn.ReLU()


def _override_forward(model: nn.Module, forward_class: type) -> None:
    """Make ``model`` an instance of a subclass of its class (same name) whose forward is ``forward_class``'s."""
    model_class = type(model)
    model.__class__ = type(model_class.__name__, (forward_class, model_class), {"__module__": __name__})


class _CausalLMWithSoftcapModule:
    """Forward of Gemma 2/3 ``*ForCausalLM`` with its functional final-logit soft-cap moved into the module
    ``final_logit_softcap`` (``lm_head → final_logit_softcap``); with :class:`~bcos.nn.LogitSoftcap` of the
    config's cap it computes the original forward. The loss is the model's own ``loss_function``."""

    def forward(self, input_ids=None, attention_mask=None, labels=None, logits_to_keep=0, **kwargs):
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        logits = self.final_logit_softcap(self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)))
        loss = None if labels is None else self.loss_function(logits, labels, self.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=outputs.cache,
                                      hidden_states=outputs.hidden_states, attentions=outputs.attentions)


def final_logit_softcap_module(model: nn.Module) -> None:
    """Gives a Gemma 2/3 causal LM its final-logit soft-cap as the module ``model.final_logit_softcap`` (a dynamic
    scale, :class:`~bcos.nn.LogitSoftcap`; identity when the config has no cap), in place like
    :func:`distilbert_head_activation_module`."""
    _override_forward(model, _CausalLMWithSoftcapModule)
    cap = model.config.final_logit_softcapping
    model.final_logit_softcap = LogitSoftcap(cap) if cap is not None else nn.Identity()
