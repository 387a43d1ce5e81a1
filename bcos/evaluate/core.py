"""Scoring explanation methods on a set of examples: the shared core of the evaluation command and the
validation-epoch callback.

Every method explains the model's *predicted* class of each example; comprehensiveness, sufficiency and
plausibility score those explanations, and the sequence pointing game explains each segment's class on instances
built once per model (so every method of one model sees the same instances).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data import Examples
from ..explain import Explainer
from ..handle import Model
from ..metrics import (DEFAULT_FRACTIONS, SeqPGInstances, build_seqpg_instances, erasure_metrics, plausibility,
                       pointing_game, special_affixes)
from ..metrics.erasure import batched_proba
from ..tokens import tokenizer_special_ids

ERASURE = ("comprehensiveness", "sufficiency")
#: metrics that can be asked for; "plausibility" yields the three ``PLAUSIBILITY_SCORES``
METRICS = (*ERASURE, "seqpg", "plausibility")
PLAUSIBILITY_SCORES = ("plausibility_auprc", "plausibility_token_f1", "plausibility_iou_f1")
#: the names of the scores a method gets, in table order
SCORES = (*ERASURE, "seqpg", *PLAUSIBILITY_SCORES)

Progress = Callable[[int], Any]
"""Called with the number of examples just explained (e.g. ``tqdm.update``)."""


@dataclass
class MetricSettings:
    """How the metrics are computed (recorded with the results).

    Attributes:
        metrics: subset of :data:`METRICS`; "plausibility" applies only to examples with rationales.
        fractions: erasure fractions of comprehensiveness and sufficiency.
        seqpg_segment_length, seqpg_segments, seqpg_confidence, seqpg_instances, seed: pointing-game instances
            (see :func:`bcos.metrics.build_seqpg_instances`; ``seqpg_instances`` caps their number).
        explain_batch_size: examples per explainer call.
        metric_batch_size: rows per forward pass of the erasure metrics.
    """

    metrics: Sequence[str] = ("comprehensiveness", "sufficiency", "seqpg", "plausibility")
    fractions: Sequence[float] = DEFAULT_FRACTIONS
    seqpg_segment_length: int = 10
    seqpg_segments: int = 2
    seqpg_confidence: float = 0.5
    seqpg_instances: int | None = None
    seed: int = 0
    explain_batch_size: int = 16
    metric_batch_size: int = 128

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")


@dataclass
class MethodResult:
    """One method on one model.

    Attributes:
        scores: metric name -> value (comprehensiveness and sufficiency as AOPC x 100, seqpg in [0, 1], the
            plausibility scores); NaN where undefined (no pointing-game instance).
        seconds_per_example: wall time of explaining the examples (not the pointing-game instances), per example.
        attributions: ``[n, seq]`` the explanations of the examples' predicted classes.
        n_seqpg_instances: pointing-game instances scored.
        settings: the conventions of each computed metric, by metric.
    """

    scores: dict[str, float]
    seconds_per_example: float
    attributions: torch.Tensor
    n_seqpg_instances: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


def explain_in_chunks(explainer: Explainer, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      target: torch.Tensor | None, batch_size: int,
                      progress: Progress | None = None) -> tuple[torch.Tensor, float]:
    """``[n, seq]`` scores for ``input_ids [n, seq]`` (``target [n]``, None: predicted class) and the total seconds.

    Each chunk is cut to its longest row before explaining (right padding), which changes nothing but the cost.
    """
    scores = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)
    seconds = 0.0
    for start in range(0, input_ids.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        mask = attention_mask[rows]
        width = int(torch.nonzero(mask.any(dim=0)).max()) + 1 if mask.any() else mask.shape[1]
        attribution = explainer.attribute(input_ids[rows, :width], mask[:, :width],
                                          None if target is None else target[rows])
        scores[rows, :width] = attribution.scores.float()
        seconds += attribution.seconds
        if progress is not None:
            progress(mask.shape[0])
    return scores, seconds


def seqpg_instances(classifier: Model, examples: Examples, settings: MetricSettings) -> SeqPGInstances:
    """Pointing-game instances of ``classifier`` built from ``examples`` (possibly none)."""
    prefix, suffix = special_affixes(classifier.tokenizer)
    instances = build_seqpg_instances(
        classifier.predict_softmax, examples.input_ids, examples.attention_mask, examples.labels,
        segment_length=settings.seqpg_segment_length, n_segments=settings.seqpg_segments,
        confidence=settings.seqpg_confidence, prefix_ids=prefix, suffix_ids=suffix,
        special_token_ids=tokenizer_special_ids(classifier.tokenizer), max_instances=settings.seqpg_instances,
        seed=settings.seed, batch_size=settings.metric_batch_size)
    device = examples.input_ids.device
    instances.input_ids, instances.attention_mask = instances.input_ids.to(device), instances.attention_mask.to(device)
    return instances


def score_method(classifier: Model, explainer: Explainer, examples: Examples, instances: SeqPGInstances | None,
                 settings: MetricSettings, progress: Progress | None = None) -> MethodResult:
    """Explain ``examples`` with ``explainer`` and compute ``settings.metrics`` (the pointing game on
    ``instances``, which must come from :func:`seqpg_instances` when "seqpg" is asked for)."""
    attributions, seconds = explain_in_chunks(explainer, examples.input_ids, examples.attention_mask, None,
                                              settings.explain_batch_size, progress)
    scores: dict[str, float] = {}
    recorded: dict[str, Any] = {}
    erasure = [metric for metric in ERASURE if metric in settings.metrics]
    if erasure:
        results = erasure_metrics(classifier.predict_softmax, examples.input_ids, examples.attention_mask, attributions,
                                  metrics=erasure, fractions=settings.fractions,
                                  batch_size=settings.metric_batch_size, **classifier.erasure_settings())
        for metric, result in results.items():
            scores[metric], recorded[metric] = result.mean, result.settings
    n_instances = 0
    if "seqpg" in settings.metrics:
        scores["seqpg"] = math.nan
        if instances is not None and len(instances):
            n_instances, segments = len(instances), instances.labels.shape[1]
            segment_scores, _ = explain_in_chunks(
                explainer, instances.input_ids.repeat_interleave(segments, dim=0),
                instances.attention_mask.repeat_interleave(segments, dim=0),
                instances.labels.flatten().to(instances.input_ids.device), settings.explain_batch_size)
            result = pointing_game(segment_scores.view(n_instances, segments, -1), instances)
            scores["seqpg"], recorded["seqpg"] = result.mean, result.settings
    if "plausibility" in settings.metrics and examples.has_rationales:
        result = plausibility(attributions, examples.word_ids, examples.rationale)
        scores.update(zip(PLAUSIBILITY_SCORES, (result.auprc, result.token_f1, result.iou_f1)))
        recorded["plausibility"] = {**result.settings, "n_examples": result.n_examples}
    return MethodResult(scores, seconds / max(len(examples), 1), attributions, n_instances, recorded)


def accuracy(classifier: Model, examples: Examples, batch_size: int = 128) -> float:
    """Share of ``examples`` whose arg-max class is the gold label."""
    probabilities = batched_proba(classifier.predict_softmax, examples.input_ids, examples.attention_mask, batch_size)
    return float((probabilities.argmax(dim=-1) == examples.labels.to(probabilities.device)).float().mean())
