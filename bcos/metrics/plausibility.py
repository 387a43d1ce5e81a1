"""Plausibility: agreement of word-level attributions with human rationales (ERASER metrics, as for HateXplain).

Token attributions are summed into words with ``word_ids`` (what a fast tokenizer's ``word_ids()`` gives, -1 for
special tokens and padding). Examples without any gold rationale word are left out (their AUPRC and recall are
undefined), as HateXplain evaluates rationales on the posts that have them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .precision_recall import average_precision, pr_auc

AUPRC_METHODS = {"trapezoid": pr_auc, "average_precision": average_precision}


def word_scores(scores: torch.Tensor, word_ids: torch.Tensor, n_words: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum ``scores [batch, seq]`` per word: ``[batch, n_words]`` scores and a ``[batch, n_words]`` bool mask of
    the words that have at least one token (``word_ids`` -1 and ids ≥ ``n_words`` are dropped)."""
    valid = (word_ids >= 0) & (word_ids < n_words)
    index = word_ids.clamp(0, n_words - 1).long()
    summed = scores.new_zeros(scores.shape[0], n_words).scatter_add_(-1, index, scores * valid)
    counts = torch.zeros(scores.shape[0], n_words, dtype=torch.long, device=scores.device)
    return summed, counts.scatter_add_(-1, index, valid.long()) > 0


def rationale_coverage(word_ids: torch.Tensor, rationales: torch.Tensor) -> dict[str, int]:
    """How many examples plausibility can score, and why the others are left out.

    Returns counts of ``examples``; ``no_rationale`` (every flag -1: the data has none for the row, e.g. null);
    ``no_gold_words`` (a rationale without any word flagged); ``truncated_away`` (gold words, none of which kept a
    token after truncation); ``scored`` (the rest, what :func:`plausibility` averages over).
    Shapes: ``word_ids [batch, seq]``, ``rationales [batch, words]`` as in :func:`plausibility`.
    """
    word_ids, rationales = word_ids.cpu(), rationales.cpu()
    _, present = word_scores(torch.zeros(word_ids.shape, dtype=torch.float64), word_ids, rationales.shape[1])
    has_rationale = (rationales >= 0).any(dim=-1)
    has_gold = (rationales > 0).any(dim=-1)
    scored = (present & (rationales > 0)).any(dim=-1)
    return {"examples": rationales.shape[0], "no_rationale": int((~has_rationale).sum()),
            "no_gold_words": int((has_rationale & ~has_gold).sum()), "truncated_away": int((has_gold & ~scored).sum()),
            "scored": int(scored.sum())}


def spans(selected: torch.Tensor) -> list[tuple[int, int]]:
    """The maximal runs of True in ``selected [n]`` as ``(start, end)`` with ``end`` exclusive."""
    padded = torch.cat([selected.new_zeros(1), selected, selected.new_zeros(1)]).long()
    change = torch.diff(padded)
    return list(zip(torch.nonzero(change == 1)[:, 0].tolist(), torch.nonzero(change == -1)[:, 0].tolist()))


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Intersection over union of two ``[start, end)`` spans."""
    intersection = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return intersection / ((a[1] - a[0]) + (b[1] - b[0]) - intersection)


def f1(precision: float, recall: float) -> float:
    """Harmonic mean, 0 when either is 0."""
    return 0.0 if precision == 0 or recall == 0 else 2 * precision * recall / (precision + recall)


def nan_mean(values: torch.Tensor) -> float:
    """The mean of the values that are not NaN (NaN marks an example a score does not apply to); NaN if none is."""
    kept = values[~values.isnan()]
    return float(kept.mean()) if kept.numel() else float("nan")


@dataclass
class PlausibilityResult:
    """Plausibility over the examples that have a gold rationale.

    Attributes:
        auprc: mean per-example area under the precision-recall curve of word scores vs gold words.
        token_f1: mean per-example F1 of the predicted rationale words (ERASER's instance-macro token F1).
        iou_f1: F1 of the mean per-example span precision and recall, a predicted span counting as correct when
            its IOU with some gold span is ≥ ``iou_threshold`` (ERASER's macro partial-match F1).
        per_example: ``[batch]`` tensors "auprc", "token_f1", "iou_precision", "iou_recall" (NaN where undefined:
            no gold rationale, or no predicted span for the precision).
        n_examples: examples with a gold rationale.
        settings: the conventions used.
    """

    auprc: float
    token_f1: float
    iou_f1: float
    per_example: dict[str, torch.Tensor]
    n_examples: int
    settings: dict


def plausibility(scores: torch.Tensor, word_ids: torch.Tensor, rationales: torch.Tensor, *,
                 threshold: float | None = None, iou_threshold: float = 0.5,
                 auprc: str = "trapezoid") -> PlausibilityResult:
    """Compare ``scores [batch, seq]`` with gold ``rationales [batch, words]`` (1 = rationale word, 0 = not, -1 = no
    word there).

    Args:
        word_ids: ``[batch, seq]`` the word of each token, -1 for special tokens and padding.
        threshold: the predicted rationale is the words scoring ≥ ``threshold``; None: the top-k words, k = the
            size of the gold rationale (ties broken by position).
        iou_threshold: IOU from which a predicted span matches a gold span.
        auprc: "trapezoid" (ERASER's AUPRC) or "average_precision" (step-wise, scikit-learn's
            ``average_precision_score``).
    """
    if auprc not in AUPRC_METHODS:
        raise ValueError(f"auprc must be one of {', '.join(AUPRC_METHODS)}, got {auprc!r}")
    scores, word_ids, rationales = scores.detach().double().cpu(), word_ids.cpu(), rationales.cpu()
    summed, present = word_scores(scores, word_ids, rationales.shape[1])
    words = present & (rationales >= 0)
    gold = words & (rationales > 0)
    nan = float("nan")
    per_example = {key: torch.full((scores.shape[0],), nan, dtype=torch.float64)
                   for key in ("auprc", "token_f1", "iou_precision", "iou_recall")}
    for row in range(scores.shape[0]):
        if not gold[row].any():
            continue
        candidates = torch.nonzero(words[row])[:, 0]
        row_scores, row_gold = summed[row, candidates], gold[row, candidates]
        per_example["auprc"][row] = AUPRC_METHODS[auprc](row_scores, row_gold)
        if threshold is None:
            chosen = row_scores.argsort(descending=True, stable=True)[:int(row_gold.sum())]
        else:
            chosen = torch.nonzero(row_scores >= threshold)[:, 0]
        predicted = torch.zeros_like(gold[row])
        predicted[candidates[chosen]] = True
        hits = int((predicted & gold[row]).sum())
        precision = hits / int(predicted.sum()) if predicted.any() else 0.0
        per_example["token_f1"][row] = f1(precision, hits / int(gold[row].sum()))
        predicted_spans, gold_spans = spans(predicted), spans(gold[row])
        matched = sum(max(iou(p, g) for g in gold_spans) >= iou_threshold for p in predicted_spans)
        if predicted_spans:
            per_example["iou_precision"][row] = matched / len(predicted_spans)
        per_example["iou_recall"][row] = matched / len(gold_spans)
    settings = {"words": "token scores summed per word (word_ids)", "auprc": auprc,
                "predicted_rationale": "top-k words, k = gold rationale size" if threshold is None
                else f"words with score >= {threshold}",
                "threshold": threshold, "iou_threshold": iou_threshold,
                "token_f1": "mean of per-example F1", "iou_f1": "F1 of mean span precision and mean span recall",
                "excluded": "examples without gold rationale words"}
    mean = {key: nan_mean(values) for key, values in per_example.items()}
    return PlausibilityResult(mean["auprc"], mean["token_f1"], f1(mean["iou_precision"], mean["iou_recall"]),
                              per_example, int(gold.any(dim=-1).sum()), settings)
