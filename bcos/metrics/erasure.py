"""Comprehensiveness and sufficiency (ERASER-style AOPC over erasure fractions).

For each fraction f, the ``k = max(1, floor(f · n))`` highest-scored content tokens of an example (n = its number
of real, non-special tokens; ranked by signed score, ties by position) are removed (comprehensiveness) or are
the only content tokens kept (sufficiency). The score is ``p(ŷ | original) - p(ŷ | perturbed)`` for the
original prediction ŷ (softmax probability); AOPC is its mean over the fractions, times 100.
Higher comprehensiveness and lower sufficiency are better.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from ..tokens import content_mask

PredictProba = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``predict_proba(input_ids [batch, seq], attention_mask [batch, seq]) -> [batch, classes]`` probabilities."""

DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ERASURE_METRICS = ("comprehensiveness", "sufficiency")


@dataclass
class AOPCResult:
    """One erasure metric over a batch.

    Attributes:
        metric: "comprehensiveness" or "sufficiency".
        per_example: ``[batch]`` AOPC x 100.
        drops: ``[batch, fractions]`` probability drops ``p(ŷ | original) - p(ŷ | perturbed)`` (not scaled).
        mean: mean of ``per_example``.
        settings: every convention used (fractions, mode, replacement and padding ids, special tokens, ...).
    """

    metric: str
    per_example: torch.Tensor
    drops: torch.Tensor
    mean: float
    settings: dict


def removal_masks(scores: torch.Tensor, content: torch.Tensor, fractions: Sequence[float],
                  keep_top: bool) -> torch.Tensor:
    """``[fractions, batch, seq]`` bool: the tokens to remove at each fraction.

    ``keep_top=False`` removes the top-k content tokens (comprehensiveness); ``keep_top=True`` removes every
    other content token (sufficiency). ``scores [batch, seq]``; ``content [batch, seq]`` bool.
    """
    order = scores.masked_fill(~content, -math.inf).argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(order.shape[-1], device=order.device)
                                            .expand_as(order).contiguous())
    n_content = content.sum(dim=-1)
    # the small epsilon keeps f·n from rounding below an integer (0.57 · 100 = 56.99999999999999)
    k = torch.stack([(n_content * f + 1e-9).floor().long().clamp(min=1) for f in fractions]).clamp(max=n_content)
    top = rank.unsqueeze(0) < k.unsqueeze(-1)
    return content & (~top if keep_top else top)


def perturb(input_ids: torch.Tensor, attention_mask: torch.Tensor, remove: torch.Tensor, mode: str,
            replacement_id: int | None, pad_token_id: int, padding_side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``remove [rows, seq]`` to ``input_ids``/``attention_mask [rows, seq]``.

    ``mode="replace"``: removed tokens become ``replacement_id`` (attention unchanged). ``mode="delete"``: removed
    tokens are dropped and each row is re-packed contiguously, padded with ``pad_token_id`` on ``padding_side``.
    """
    if mode == "replace":
        return input_ids.masked_fill(remove, replacement_id), attention_mask
    kept = attention_mask.bool() & ~remove
    # a stable sort moves the kept tokens to one side, keeping their order
    order = kept.long().argsort(dim=-1, descending=padding_side == "right", stable=True)
    kept = kept.gather(-1, order)
    return input_ids.gather(-1, order).masked_fill(~kept, pad_token_id), kept.to(attention_mask.dtype)


@torch.no_grad()
def batched_proba(predict_proba: PredictProba, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  batch_size: int) -> torch.Tensor:
    """``[rows, classes]``: ``predict_proba`` over ``[rows, seq]`` inputs in chunks of at most ``batch_size``."""
    return torch.cat([predict_proba(input_ids[i:i + batch_size], attention_mask[i:i + batch_size])
                      for i in range(0, input_ids.shape[0], batch_size)])


def erasure_metrics(
    predict_proba: PredictProba,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    scores: torch.Tensor,
    *,
    metrics: Sequence[str] = ERASURE_METRICS,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    mode: str = "replace",
    replacement_id: int | None = None,
    special_token_ids: Iterable[int] = (),
    pad_token_id: int = 0,
    padding_side: str = "right",
    batch_size: int = 128,
) -> dict[str, AOPCResult]:
    """Comprehensiveness and/or sufficiency of ``scores [batch, seq]`` for ``input_ids [batch, seq]``.

    Args:
        predict_proba: the model as ``(input_ids, attention_mask) -> [batch, classes]`` probabilities.
        metrics: which of "comprehensiveness", "sufficiency" to compute.
        fractions: erasure fractions of each example's content tokens.
        mode: "replace" (by ``replacement_id``, e.g. [MASK] for encoders) or "delete" (for decoders; rows
            re-packed with ``pad_token_id`` on ``padding_side``).
        special_token_ids: never ranked nor removed (with padding).
        batch_size: the most rows per ``predict_proba`` call; all perturbations of all fractions and metrics are
            evaluated together, so one batch costs ``ceil(batch · (1 + fractions · metrics) / batch_size)`` calls.
    """
    unknown = set(metrics) - set(ERASURE_METRICS)
    if unknown:
        raise ValueError(f"unknown erasure metrics {sorted(unknown)}; known: {', '.join(ERASURE_METRICS)}")
    if mode not in ("replace", "delete"):
        raise ValueError(f'mode must be "replace" or "delete", got {mode!r}')
    if mode == "replace" and replacement_id is None:
        raise ValueError('mode="replace" needs replacement_id (the [MASK] id for encoders)')
    if padding_side not in ("left", "right"):
        raise ValueError(f'padding_side must be "left" or "right", got {padding_side!r}')
    special_token_ids = sorted(int(i) for i in special_token_ids)
    content = content_mask(input_ids, attention_mask, special_token_ids)
    remove = torch.cat([removal_masks(scores, content, fractions, keep_top=metric == "sufficiency")
                        for metric in metrics]).flatten(0, 1)  # [metrics · fractions · batch, seq]
    repeats = remove.shape[0] // input_ids.shape[0]
    perturbed_ids, perturbed_mask = perturb(input_ids.repeat(repeats, 1), attention_mask.repeat(repeats, 1), remove,
                                            mode, replacement_id, pad_token_id, padding_side)
    probabilities = batched_proba(predict_proba, torch.cat([input_ids, perturbed_ids]),
                                  torch.cat([attention_mask, perturbed_mask]), batch_size)
    batch = input_ids.shape[0]
    prediction = probabilities[:batch].argmax(dim=-1)
    predicted = probabilities.gather(-1, prediction.repeat(repeats + 1)[:, None]).squeeze(-1)
    drops = (predicted[:batch] - predicted[batch:].view(len(metrics), len(fractions), batch)).permute(0, 2, 1)
    settings = {"fractions": [float(f) for f in fractions], "mode": mode, "replacement_id": replacement_id,
                "pad_token_id": pad_token_id, "padding_side": padding_side, "special_token_ids": special_token_ids,
                "k": "max(1, floor(fraction * n_content_tokens))",
                "ranking": "signed score, descending, ties by position",
                "score": "p(original prediction) before minus after, softmax", "scale": 100}
    results = {}
    for metric, metric_drops in zip(metrics, drops):
        per_example = metric_drops.mean(dim=-1) * 100
        results[metric] = AOPCResult(metric, per_example, metric_drops, float(per_example.mean()),
                                     {"metric": metric, **settings})
    return results


def comprehensiveness(predict_proba: PredictProba, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      scores: torch.Tensor, **settings) -> AOPCResult:
    """AOPC comprehensiveness (higher is better); ``settings`` as in :func:`erasure_metrics`."""
    return erasure_metrics(predict_proba, input_ids, attention_mask, scores, metrics=("comprehensiveness",),
                           **settings)["comprehensiveness"]


def sufficiency(predict_proba: PredictProba, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                scores: torch.Tensor, **settings) -> AOPCResult:
    """AOPC sufficiency (lower is better); ``settings`` as in :func:`erasure_metrics`."""
    return erasure_metrics(predict_proba, input_ids, attention_mask, scores, metrics=("sufficiency",),
                           **settings)["sufficiency"]
