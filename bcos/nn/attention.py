"""B-cos attention, registered with transformers' attention and mask interfaces.

Attention probabilities softmax(QKᵀ/√d + mask) are a dynamic weight on the value path. In explanation
mode the function runs ordinary SDPA on detached queries and keys: the probabilities become constants
while the values keep their gradient, and fused kernels still apply.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

from .mode import is_explanation_mode

#: Name under which B-cos attention is registered (``config._attn_implementation``).
BCOS_ATTENTION = "bcos_sdpa"


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
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register_bcos_attention() -> str:
    """Register B-cos attention and its mask function (without the mask function transformers would
    silently run the model unmasked). Idempotent; returns the registered name."""
    AttentionInterface.register(BCOS_ATTENTION, bcos_sdpa_attention_forward)
    AttentionMaskInterface.register(BCOS_ATTENTION, sdpa_mask)
    return BCOS_ATTENTION


register_bcos_attention()
