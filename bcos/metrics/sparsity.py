"""How an explanation spreads its mass (the paper's entropy measure) and where: special tokens, and which classes a
model predicts against how often they occur."""
from __future__ import annotations

import torch


def normalized_entropy(attributions: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Entropy of ``p = |a| / Σ|a|`` over each example's content tokens, divided by ``log n`` (n content tokens):
    1 for a uniform spread, 0 when one token holds everything. NaN where undefined (n < 2 or no mass).

    Shapes: ``attributions [batch, seq]``, ``content [batch, seq]`` bool → ``[batch]``.
    """
    magnitude = attributions.detach().abs().double() * content
    total = magnitude.sum(dim=-1, keepdim=True)
    p = magnitude / total
    entropy = -(p * p.log()).nan_to_num(0.0).sum(dim=-1)  # 0 log 0 = 0
    n = content.sum(dim=-1).double()
    result = entropy / n.log()
    return result.masked_fill((n < 2) | (total.squeeze(-1) == 0), float("nan"))


def special_token_share(attributions: torch.Tensor, attention_mask: torch.Tensor, special: torch.Tensor) -> torch.Tensor:
    """Share of the absolute attribution of each example's real tokens that falls on special tokens
    (``[CLS]``, ``[SEP]``, ...); NaN without any mass.

    Shapes: ``attributions``, ``attention_mask``, ``special`` (bool) ``[batch, seq]`` → ``[batch]``.
    """
    magnitude = attributions.detach().abs().double() * attention_mask.bool()
    total = magnitude.sum(dim=-1)
    return (magnitude * special).sum(dim=-1) / total.masked_fill(total == 0, float("nan"))


def prediction_rates(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, list[float]]:
    """Per class, the share of examples predicted as it and the share labelled as it (a model that leans to one
    class predicts it more often than it occurs). Shapes: ``predictions``, ``labels`` ``[n]`` class ids."""
    if predictions.shape != labels.shape or predictions.numel() == 0:
        raise ValueError(f"predictions and labels need the same non-empty shape, got {tuple(predictions.shape)} and "
                         f"{tuple(labels.shape)}")
    n = predictions.numel()
    return {"predicted": (torch.bincount(predictions.long(), minlength=num_classes).double() / n).tolist(),
            "labelled": (torch.bincount(labels.long(), minlength=num_classes).double() / n).tolist()}
