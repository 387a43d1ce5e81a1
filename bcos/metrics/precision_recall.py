"""Precision-recall curves and their areas (as scikit-learn computes them; scikit-learn is not a dependency)."""
from __future__ import annotations

import torch


def precision_recall_curve(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision and recall ``[thresholds]`` at every distinct score, from the highest threshold down.

    ``scores [n]`` float, ``labels [n]`` bool/0-1. Tied scores enter together. Recall is NaN without positives.
    """
    order = scores.argsort(descending=True, stable=True)
    sorted_scores, positive = scores[order], labels[order].double()
    true_positives, false_positives = positive.cumsum(0), (1 - positive).cumsum(0)
    group_ends = torch.ones_like(sorted_scores, dtype=torch.bool)
    group_ends[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    true_positives, false_positives = true_positives[group_ends], false_positives[group_ends]
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / true_positives[-1]
    return precision, recall


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """``Σ_i (R_i - R_{i-1}) · P_i`` over the thresholds (scikit-learn's ``average_precision_score``)."""
    precision, recall = precision_recall_curve(scores, labels)
    return float((torch.diff(recall, prepend=recall.new_zeros(1)) * precision).sum())


def pr_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Trapezoidal area under the precision-recall curve starting at (recall 0, precision 1): scikit-learn's
    ``auc(recall, precision)`` on ``precision_recall_curve``, ERASER's "AUPRC"."""
    precision, recall = precision_recall_curve(scores, labels)
    precision = torch.cat([precision.new_ones(1), precision])
    recall = torch.cat([recall.new_zeros(1), recall])
    return float(torch.trapezoid(precision, recall))
