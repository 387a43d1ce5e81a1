"""Token-level facts shared by explainers, metrics and data: which tokens are content, where the real tokens
are, and which id pads."""
from __future__ import annotations

import bisect
import re
from collections.abc import Iterable

import torch


def pad_token_id(tokenizer_or_config) -> int | None:
    """The padding id of a tokenizer or model config: ``pad_token_id``, else ``eos_token_id`` (decoders without
    a pad token), else None."""
    pad = getattr(tokenizer_or_config, "pad_token_id", None)
    if pad is None:
        pad = getattr(tokenizer_or_config, "eos_token_id", None)
    if isinstance(pad, (list, tuple)):
        pad = pad[0] if pad else None
    return None if pad is None else int(pad)


def content_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 special_token_ids: Iterable[int] = ()) -> torch.Tensor:
    """``[batch, seq]`` bool: real tokens that are not special tokens (what explainers perturb, metrics rank)."""
    special = torch.isin(input_ids, torch.as_tensor(list(special_token_ids), dtype=input_ids.dtype,
                                                    device=input_ids.device))
    return attention_mask.bool() & ~special


def tokenizer_special_ids(tokenizer) -> list[int]:
    """A tokenizer's special-token ids, without [UNK] (an unknown token stands for a word of the text) unless it
    doubles as another special token (GPT-2's ``<|endoftext|>``)."""
    roles = {getattr(tokenizer, f"{role}_token_id", None) for role in ("bos", "eos", "pad", "cls", "sep", "mask")}
    return sorted(i for i in set(tokenizer.all_special_ids) if i != tokenizer.unk_token_id or i in roles)


def real_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[batch, seq]`` position ids counted over real tokens only (left padding does not shift them)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def last_real_token(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[batch]`` index of the last attended token of each row (left or right padding)."""
    arange = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (attention_mask.bool() * (arange + 1)).argmax(dim=-1)


def whitespace_word_ids(text: str, offsets: list[tuple[int, int]]) -> list[int]:
    """For each token (character span in ``text``), the index of the whitespace word it overlaps, else -1.

    Special tokens have empty spans and get -1. Works for any fast tokenizer, also those whose spans include
    the leading space (byte-level BPE).
    """
    spans = [match.span() for match in re.finditer(r"\S+", text)]
    starts = [start for start, _ in spans]
    ids = []
    for start, end in offsets:
        word = bisect.bisect_right(starts, end - 1) - 1
        ids.append(word if start < end and word >= 0 and spans[word][1] > start else -1)
    return ids
