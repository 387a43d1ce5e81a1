"""Scores of a decoder on minimal pairs: competence (target over foil) and the alignment of contrastive
explanations with the evidence words."""
from __future__ import annotations

import math

import torch

from ...explain import Explainer
from ...handle import Model
from ...metrics.plausibility import word_scores
from .pairs import PairBatch


@torch.no_grad()
def next_token_log_probs(lm: Model, pairs: PairBatch, batch_size: int = 32) -> torch.Tensor:
    """``[n, 2]`` log-probabilities of the target and the foil first token after each prefix, under
    ``log_softmax(logits · logit_scale)`` at the last prefix token."""
    out = []
    for start in range(0, len(pairs), batch_size):
        rows = slice(start, start + batch_size)
        ids, mask = pairs.input_ids[rows].to(lm.device), pairs.attention_mask[rows].to(lm.device)
        log_probs = (lm.logits(ids, mask).float() * lm.logit_scale).log_softmax(-1).cpu()
        out.append(torch.stack([log_probs.gather(-1, pairs.target[rows, None])[:, 0],
                                log_probs.gather(-1, pairs.foil[rows, None])[:, 0]], dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 2)


def competence(log_probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per pair: ``correct`` (target more probable than foil) and ``probability_gap`` (p(target) - p(foil)),
    from ``log_probs [n, 2]``."""
    return {"correct": (log_probs[:, 0] > log_probs[:, 1]).float(),
            "probability_gap": log_probs[:, 0].exp() - log_probs[:, 1].exp()}


def contrastive_attributions(explainer: Explainer, pairs: PairBatch, batch_size: int = 16,
                             progress=None) -> tuple[torch.Tensor, float]:
    """``[n, seq]`` attributions of ``logit[target] - logit[foil]`` at the last prefix token (on the CPU; computed
    on the explained model's device), and the seconds."""
    scores = torch.zeros(pairs.input_ids.shape, dtype=torch.float32)
    seconds = 0.0
    for start in range(0, len(pairs), batch_size):
        rows = slice(start, start + batch_size)
        device = next(explainer.model.parameters()).device
        attribution = explainer.attribute(*(tensor[rows].to(device) for tensor in (
            pairs.input_ids, pairs.attention_mask, pairs.target, pairs.foil)))
        scores[rows] = attribution.scores.float().cpu()
        seconds += attribution.seconds
        if progress is not None:
            progress(attribution.scores.shape[0])
    return scores, seconds


def evidence_alignment(scores: torch.Tensor, pairs: PairBatch) -> dict[str, torch.Tensor]:
    """Per pair, from token ``scores [n, seq]`` summed into words:

    - ``reciprocal_rank``: 1 / rank of the best-ranked evidence word among the prefix words (descending signed
      score; non-evidence words tied with it count half);
    - ``evidence_share``: positive attribution on the evidence words / positive attribution on all words (NaN
      where no word has a positive score).
    """
    summed, present = word_scores(scores, pairs.word_ids, pairs.evidence.shape[1])
    evidence = pairs.evidence & present
    other = present & ~pairs.evidence
    best = summed.masked_fill(~evidence, -math.inf).max(-1, keepdim=True).values
    above = ((summed > best) & other).sum(-1).float()
    tied = ((summed == best) & other).sum(-1).float()
    positive = summed.clamp_min(0) * present
    total = positive.sum(-1)
    share = torch.where(total > 0, (positive * evidence).sum(-1) / total.clamp_min(1e-30), torch.nan)
    return {"reciprocal_rank": 1.0 / (1.0 + above + tied / 2), "evidence_share": share}


def random_reciprocal_rank(pairs: PairBatch) -> torch.Tensor:
    """``[n]`` the expected reciprocal rank of the best evidence word under a uniformly random word order:
    ``Σ_r (1/r) · C(N-r, k-1) / C(N, k)`` for N prefix words with k evidence words (the chance level of MRR)."""
    present = (pairs.word_ids[:, :, None] == torch.arange(pairs.evidence.shape[1])).any(1)
    values = []
    for n_words, k in zip(present.sum(-1).tolist(), (pairs.evidence & present).sum(-1).tolist()):
        values.append(sum(math.comb(n_words - r, k - 1) / r for r in range(1, n_words - k + 2)) / math.comb(n_words, k))
    return torch.tensor(values)
