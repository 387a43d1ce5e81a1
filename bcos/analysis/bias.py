"""Community bias of a toxicity classifier, as HateXplain measures it (Mathew et al. 2021, after Borkan et al.
2019, "Nuanced metrics for measuring unintended bias with real data for text classification").

A post belongs to a community when at least ``min_votes`` of its annotators named the community as its target
(HateXplain: 2 of 3). For each community, with the toxicity score of every post (e.g. 1 - p(normal)) and the
binary toxic label:

- **subgroup AUC**: the ROC AUC on the community's posts;
- **BPSN AUC** (background positive, subgroup negative): on the toxic posts outside the community and the normal
  posts inside it (low: the model calls harmless mentions of the community toxic);
- **BNSP AUC** (background negative, subgroup positive): on the normal posts outside and the toxic posts inside
  (low: the model misses toxicity against the community).

Each is summarised over the communities by the generalised mean ``M_p = (mean_s m_s^p)^(1/p)``, with ``p = -5`` as
in HateXplain (close to the minimum: the worst community dominates).
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

#: the ten communities HateXplain's bias evaluation reports (the most frequent targets of its test split)
HATEXPLAIN_COMMUNITIES = ("African", "Islam", "Jewish", "Homosexual", "Women", "Refugee", "Arab", "Caucasian",
                          "Asian", "Hispanic")
METRICS = ("subgroup_auc", "bpsn_auc", "bnsp_auc")
POWER = -5.0


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """The area under the ROC curve of ``scores [n]`` for binary ``labels [n]`` (1 = positive): the probability
    that a random positive scores above a random negative, ties counting one half (Mann-Whitney U / (n+ n-)).

    Raises:
        ValueError: different lengths, labels other than 0/1, or no positive or no negative example.
    """
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D of the same length, got {scores.shape} and {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    positives, negatives = int(labels.sum()), int((1 - labels).sum())
    if not positives or not negatives:
        raise ValueError(f"the ROC AUC needs positive and negative examples; got {positives} positive and "
                         f"{negatives} negative")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):  # ties share their mean rank (1-based)
        ranks[order[start:end]] = (start + end + 1) / 2
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def communities_of(annotator_targets: Sequence[Sequence[str]], min_votes: int = 2) -> set[str]:
    """The communities named by at least ``min_votes`` annotators (each annotator counted once per community)."""
    votes = Counter(target for targets in annotator_targets for target in set(targets))
    return {target for target, count in votes.items() if count >= min_votes}


def targeted_counts(annotator_targets: Iterable[Sequence[Sequence[str]]], min_votes: int = 2) -> Counter:
    """How many posts target each community (:func:`communities_of`)."""
    return Counter(community for targets in annotator_targets for community in communities_of(targets, min_votes))


def memberships(annotator_targets: Iterable[Sequence[Sequence[str]]], communities: Sequence[str],
                min_votes: int = 2) -> pd.DataFrame:
    """``[posts, communities]`` booleans: which post targets which community (:func:`communities_of`).

    Raises:
        ValueError: a community that no post targets (naming the communities that occur).
    """
    annotator_targets = list(annotator_targets)
    present = targeted_counts(annotator_targets, min_votes)
    absent = [community for community in communities if not present[community]]
    if absent:
        raise ValueError(f"community {absent[0]!r} is the target of no post (with at least {min_votes} annotator "
                         f"votes); communities present: {', '.join(sorted(present))}")
    targeted = [communities_of(targets, min_votes) for targets in annotator_targets]
    return pd.DataFrame({community: [community in targets for targets in targeted] for community in communities})


def _auc_or_nan(scores: np.ndarray, labels: np.ndarray, community: str, metric: str) -> float:
    """The AUC, or NaN (with a warning naming the community) when the selection lacks one of the two labels."""
    if labels.all() or not labels.any():
        warnings.warn(f"{metric} of {community!r} is undefined: the {len(labels)} posts it compares are all "
                      f"{'toxic' if labels.any() else 'normal'}", stacklevel=3)
        return float("nan")
    return roc_auc(scores, labels)


def bias_aucs(scores: Sequence[float] | np.ndarray, toxic: Sequence[int] | np.ndarray,
              members: pd.DataFrame) -> pd.DataFrame:
    """Per community (a column of ``members``), its post count and subgroup, BPSN and BNSP AUCs of ``scores [n]``
    for the binary labels ``toxic [n]``. An AUC whose selection lacks toxic or normal posts is NaN (with a
    warning).

    Columns: ``community``, ``posts``, ``toxic_posts``, ``subgroup_auc``, ``bpsn_auc``, ``bnsp_auc``.
    """
    scores, toxic = np.asarray(scores, dtype=float), np.asarray(toxic).astype(int)
    if not (len(scores) == len(toxic) == len(members)):
        raise ValueError(f"got {len(scores)} scores, {len(toxic)} labels and {len(members)} memberships")
    rows = []
    for community in members.columns:
        inside = members[community].to_numpy(bool)
        selections = {"subgroup_auc": inside,
                      "bpsn_auc": (~inside & (toxic == 1)) | (inside & (toxic == 0)),
                      "bnsp_auc": (~inside & (toxic == 0)) | (inside & (toxic == 1))}
        rows.append({"community": community, "posts": int(inside.sum()), "toxic_posts": int(toxic[inside].sum()),
                     **{metric: _auc_or_nan(scores[chosen], toxic[chosen], community, metric)
                        for metric, chosen in selections.items()}})
    return pd.DataFrame(rows)


def generalised_mean(values: Sequence[float] | np.ndarray, power: float = POWER) -> float:
    """``(mean_s v_s^p)^(1/p)`` of the defined (non-NaN) ``values`` (at least 0; ``power`` non-zero); NaN if none
    is defined. For a negative power a value 0 makes the mean 0 (its limit)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if power == 0:
        raise ValueError("power must be non-zero (p = 0 is the geometric mean, not computed here)")
    if not len(values):
        return float("nan")
    if (values < 0).any():
        raise ValueError(f"the generalised mean takes values of at least 0, got {values.min()}")
    if power < 0 and (values == 0).any():
        return 0.0
    return float(np.mean(values ** power) ** (1 / power))


def summary(aucs: pd.DataFrame, power: float = POWER) -> dict[str, float]:
    """The generalised mean of each metric of :func:`bias_aucs` over the communities."""
    return {metric: generalised_mean(aucs[metric], power) for metric in METRICS}
