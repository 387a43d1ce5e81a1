"""B-cos attention, registered with transformers' attention and mask interfaces.

Attention probabilities softmax(QKᵀ/√d + mask) are a dynamic weight on the value path. In explanation
mode the function runs ordinary SDPA on detached queries and keys: the probabilities become constants
while the values keep their gradient, and fused kernels still apply. Soft-capped attention scores
(Gemma 2: ``c·tanh(s/c)``) only shape the probabilities, so they are kept as they are; SDPA has no soft-cap,
so those layers take an explicit path.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

from .mode import is_explanation_mode

#: Name under which B-cos attention is registered (``config._attn_implementation``).
#: (No "sdpa" in it: transformers checks any such name against the model's SDPA support, which Gemma 2 lacks.)
BCOS_ATTENTION = "bcos_attention"


def bcos_sdpa_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """SDPA attention ``[batch, heads, seq, head_dim]`` inputs → ``[batch, seq, heads, head_dim]`` output."""
    if is_explanation_mode():
        query, key = query.detach(), key.detach()
    softcap = kwargs.pop("softcap", None)
    if softcap is not None:
        return _softcapped_attention(module, query, key, value, attention_mask, softcap, **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _softcapped_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    softcap: float,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """``softmax(c·tanh(QKᵀ·scaling / c) + mask) V`` with the boolean (or absent: causal) SDPA mask.

    Shapes as :func:`bcos_sdpa_attention_forward`.
    """
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.tanh(query @ key.transpose(2, 3) * (scaling / softcap)) * softcap
    q_length, kv_length = scores.shape[-2:]
    if attention_mask is None and getattr(module, "is_causal", False) and q_length > 1:
        attention_mask = torch.ones(q_length, kv_length, dtype=torch.bool, device=scores.device)
        attention_mask = attention_mask.tril(kv_length - q_length)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask[..., :kv_length], torch.finfo(scores.dtype).min)
    softmax_dtype = torch.promote_types(scores.dtype, torch.float32)  # float32 as eager attention, float64 kept
    probabilities = torch.softmax(scores, dim=-1, dtype=softmax_dtype).to(query.dtype)
    probabilities = nn.functional.dropout(probabilities, p=dropout, training=module.training)
    return (probabilities @ value).transpose(1, 2).contiguous(), None


def register_bcos_attention() -> str:
    """Register B-cos attention and its mask function (without the mask function transformers would
    silently run the model unmasked). Idempotent; returns the registered name."""
    AttentionInterface.register(BCOS_ATTENTION, bcos_sdpa_attention_forward)
    AttentionMaskInterface.register(BCOS_ATTENTION, sdpa_mask)
    return BCOS_ATTENTION


register_bcos_attention()
