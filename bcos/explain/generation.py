"""Explanations of decoder language models along a text: every next-token prediction of a sequence, and greedy
generation with an exact explanation of every generated token."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from .bcos_explanation import explain


@dataclass
class TokenExplanations:
    """Explanations of one next-token prediction per explained position.

    Attributes:
        contributions: ``[batch, steps, seq]``: row ``s`` explains the logit of ``target[:, s]`` predicted at
            ``position[:, s]``; tokens after that position contribute exactly 0 (causal attention), and so does
            padding. Each row sums to ``logit[:, s]``.
        logit: ``[batch, steps]`` the explained logits (minus the foil's for contrastive explanations); 0 where
            the explained position is padding.
        target: ``[batch, steps]`` the explained token ids.
        position: ``[batch, steps]`` the sequence index whose next-token logits are explained.
        input_ids, attention_mask: ``[batch, seq]``; for :func:`generate_explained` the prompt and the generated
            tokens, with padding (attention 0) after a row's end-of-sequence token.
    """

    contributions: torch.Tensor
    logit: torch.Tensor
    target: torch.Tensor
    position: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def completeness_error(self) -> torch.Tensor:
        """``[batch, steps]``: ``|Σ contributions - logit| / max(|logit|, tiny)``."""
        tiny = torch.finfo(self.logit.dtype).tiny
        return (self.contributions.sum(-1) - self.logit).abs() / self.logit.abs().clamp_min(tiny)


def explain_positions(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      positions: torch.Tensor | list[int] | None = None, target: torch.Tensor | None = None,
                      foil: torch.Tensor | None = None, chunk_size: int = 16) -> TokenExplanations:
    """Explain the next-token logits of a decoder at several positions of each sequence (teacher forcing).

    Args:
        model: a bcosified causal LM in eval mode.
        input_ids, attention_mask: ``[batch, seq]`` (left or right padding).
        positions: ``[steps]`` sequence indices explained in every row (negative: from the end); default every
            index but the last, so that the targets are the tokens that follow.
        target: ``[batch, steps]`` token ids to explain; default the token at ``position + 1`` (the text's own
            continuation), which needs every position to be before the last index.
        foil: ``[batch, steps]`` foil ids for contrastive explanations (``target`` minus ``foil``), or None.
        chunk_size: how many (row, position) explanations share one forward and backward pass.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    batch, seq = input_ids.shape
    if positions is None:
        positions = torch.arange(seq - 1)
    positions = torch.as_tensor(positions, device=input_ids.device).long()
    positions = torch.where(positions < 0, positions + seq, positions)
    if positions.dim() != 1 or positions.numel() == 0 or bool((positions < 0).any() | (positions >= seq).any()):
        raise ValueError(f"positions must be a non-empty 1-d list of indices into the {seq} tokens, got {positions}")
    steps = positions.numel()
    if target is None:
        if bool((positions >= seq - 1).any()):
            raise ValueError("the default target is the next token of the text, so every position must be before "
                             "the last index; pass target= to explain the last position")
        target = input_ids[:, positions + 1]
    for name, value in (("target", target), ("foil", foil)):
        if value is not None and tuple(value.shape) != (batch, steps):
            raise ValueError(f"{name} must have shape [batch, steps]=[{batch}, {steps}], got {tuple(value.shape)}")
    rows = torch.arange(batch, device=input_ids.device).repeat_interleave(steps)
    flat_positions = positions.repeat(batch)
    parts = []
    for start in range(0, rows.numel(), chunk_size):
        chunk = slice(start, start + chunk_size)
        parts.append(explain(model, input_ids[rows[chunk]], attention_mask[rows[chunk]], target.reshape(-1)[chunk],
                             foil=None if foil is None else foil.reshape(-1)[chunk], position=flat_positions[chunk]))
    # a padding position has nothing to explain, whatever the model computes there (Gemma 2's soft-capped
    # attention lets a fully masked row see later tokens)
    padded = attention_mask[:, positions] == 0
    logit = torch.cat([p.logit for p in parts]).view(batch, steps).masked_fill(padded, 0.0)
    contributions = torch.cat([p.contributions for p in parts]).view(batch, steps, seq)
    contributions = contributions.masked_fill(padded[..., None], 0.0)
    return TokenExplanations(contributions, logit, target, positions.expand(batch, steps), input_ids, attention_mask)


def generate_explained(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       max_new_tokens: int = 20, eos_token_id: int | list[int] | None = None,
                       pad_token_id: int | None = None,
                       progress: bool = False) -> TokenExplanations:
    """Greedy generation with an exact explanation of every generated token.

    Each step is one ``bcos.explain`` call on the whole sequence so far (its forward pass gives the next token,
    its backward pass the explanation); the contributions of step ``s`` cover the prompt and the ``s`` tokens
    generated before it.

    Args:
        model: a bcosified causal LM in eval mode.
        input_ids, attention_mask: ``[batch, prompt]``; pad batches on the left.
        max_new_tokens: generation steps.
        eos_token_id: a row stops after generating it (an id or a list; default ``model.config.eos_token_id``;
            -1 never stops).
        pad_token_id: filler of finished rows (attention 0); default the config's pad token, else the EOS token.
        progress: show a progress bar over the steps.

    Returns:
        :class:`TokenExplanations` with ``contributions [batch, new, prompt + new]`` (``new`` is
        ``max_new_tokens``, or fewer when every row stopped); steps after a row's EOS token have target
        ``pad_token_id``, logit 0 and contributions 0.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("generation appends tokens on the right: pad the prompts on the left "
                         "(tokenizer(..., padding_side='left') or tokenizer.padding_side = 'left')")
    config = model.config
    if eos_token_id is None:
        eos_token_id = getattr(config, "eos_token_id", None)
    if pad_token_id is None:
        pad_token_id = config.pad_token_id if config.pad_token_id is not None else eos_token_id
    if pad_token_id is None:
        raise ValueError("the model config has neither pad_token_id nor eos_token_id: pass pad_token_id")
    eos_ids = torch.as_tensor([] if eos_token_id is None else eos_token_id, dtype=torch.long,
                              device=input_ids.device).reshape(-1)
    batch, prompt = input_ids.shape
    finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    contributions, logits, targets = [], [], []
    for _ in tqdm(range(max_new_tokens), desc="generating", disable=not progress):
        step = explain(model, input_ids, attention_mask)
        token = step.target.masked_fill(finished, pad_token_id)
        contributions.append(step.contributions.masked_fill(finished[:, None], 0.0))
        logits.append(step.logit.masked_fill(finished, 0.0))
        targets.append(token)
        input_ids = torch.cat([input_ids, token[:, None]], dim=1)
        attention_mask = torch.cat([attention_mask, (~finished).long()[:, None].to(attention_mask.dtype)], dim=1)
        finished |= torch.isin(token, eos_ids)
        if bool(finished.all()):
            break
    steps = len(targets)
    total = input_ids.shape[1]
    padded = [torch.nn.functional.pad(c, (0, total - c.shape[1])) for c in contributions]
    positions = torch.arange(prompt - 1, prompt - 1 + steps, device=input_ids.device).expand(batch, steps)
    return TokenExplanations(torch.stack(padded, dim=1), torch.stack(logits, dim=1), torch.stack(targets, dim=1),
                             positions, input_ids, attention_mask)
