"""Scoring explanation methods on a set of examples: the shared core of the evaluation command and the
validation-epoch callback.

Every method explains the model's *predicted* class of each example; comprehensiveness, sufficiency,
plausibility, the explanation entropy and the special-token share score those explanations (one value per
example, kept for confidence intervals), and the sequence pointing game explains each segment's class on
instances built once per model (so every method of one model sees the same instances; one value per instance).
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
from ..metrics import (DEFAULT_FRACTIONS, SeqPGInstances, build_seqpg_instances, erasure_metrics,
                       normalized_entropy, plausibility, pointing_game, prediction_rates, special_affixes,
                       special_token_share)
from ..metrics.erasure import batched_proba
from ..metrics.plausibility import nan_mean, rationale_coverage
from ..tokens import content_mask, tokenizer_special_ids

ERASURE = ("comprehensiveness", "sufficiency")
#: how an explanation spreads its mass: normalised entropy of |attribution| over content tokens, and the share of
#: |attribution| on special tokens
SPARSITY = ("entropy", "special_token_share")
#: metrics that can be asked for; "plausibility" yields the three ``PLAUSIBILITY_SCORES``
METRICS = (*ERASURE, "seqpg", "plausibility", *SPARSITY)
PLAUSIBILITY_SCORES = ("plausibility_auprc", "plausibility_token_f1", "plausibility_iou_f1")
#: the names of the scores a method gets, in table order
SCORES = (*ERASURE, "seqpg", *PLAUSIBILITY_SCORES, *SPARSITY)
#: the scores that are means of one value per example (``MethodResult.per_example``); seqpg is a mean over
#: pointing-game instances (``MethodResult.per_instance``) and IOU F1 the F1 of two means (neither per example)
PER_EXAMPLE_SCORES = (*ERASURE, "plausibility_auprc", "plausibility_token_f1", *SPARSITY)

Progress = Callable[[int], Any]
"""Called with the number of examples just explained (e.g. ``tqdm.update``)."""


def check_metrics(metrics: Sequence[str]) -> list[str]:
    """``metrics`` as a list; raises ValueError when it is empty or names an unknown metric."""
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
    if not metrics:
        raise ValueError(f"no metrics given; choose from {', '.join(METRICS)}")
    return list(metrics)


def check_fractions(fractions: Sequence[float]) -> list[float]:
    """``fractions`` as floats; raises ValueError unless there is at least one and each lies in (0, 1]."""
    values = [float(f) for f in fractions]
    outside = [f for f in values if not 0 < f <= 1]  # NaN fails too
    if not values or outside:
        raise ValueError(f"erasure fractions must be in (0, 1] (shares of an example's content tokens), got "
                         f"{', '.join(map(str, values)) or 'none'}")
    return values


def check_at_least(name: str, value: int | None, minimum: int, optional: bool = False) -> None:
    """Raises ValueError unless the integer ``value`` is at least ``minimum`` (or None when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")


@dataclass
class MetricSettings:
    """How the metrics are computed (recorded with the results); checked on creation (ValueError).

    Attributes:
        metrics: a non-empty subset of :data:`METRICS`; "plausibility" applies only to examples with rationales.
        fractions: erasure fractions of comprehensiveness and sufficiency, each in (0, 1].
        seqpg_segment_length (≥ 1), seqpg_segments (≥ 2), seqpg_confidence (in [0, 1)), seqpg_instances, seed:
            pointing-game instances (see :func:`bcos.metrics.build_seqpg_instances`; ``seqpg_instances`` caps
            their number).
        explain_batch_size: examples per explainer call.
        metric_batch_size: rows per forward pass of the erasure metrics.
    """

    metrics: Sequence[str] = ("comprehensiveness", "sufficiency", "seqpg", "plausibility", *SPARSITY)
    fractions: Sequence[float] = DEFAULT_FRACTIONS
    seqpg_segment_length: int = 10
    seqpg_segments: int = 2
    seqpg_confidence: float = 0.5
    seqpg_instances: int | None = None
    seed: int = 0
    explain_batch_size: int = 16
    metric_batch_size: int = 128

    def __post_init__(self) -> None:
        self.metrics = check_metrics(self.metrics)
        self.fractions = check_fractions(self.fractions)
        for name, minimum in (("seqpg_segment_length", 1), ("seqpg_segments", 2), ("explain_batch_size", 1),
                              ("metric_batch_size", 1)):
            check_at_least(name, getattr(self, name), minimum)
        check_at_least("seqpg_instances", self.seqpg_instances, 1, optional=True)
        if not 0 <= self.seqpg_confidence < 1:
            raise ValueError(f"seqpg_confidence must be in [0, 1), got {self.seqpg_confidence}")


@dataclass
class MethodResult:
    """One method on one model.

    Attributes:
        scores: metric name -> value (comprehensiveness and sufficiency as AOPC x 100, seqpg in [0, 1], the
            plausibility scores, entropy and special-token share in [0, 1]); NaN where undefined (no
            pointing-game instance; for entropy, every example with fewer than 2 content tokens).
        seconds_per_example: wall time of explaining the examples (not the pointing-game instances), per example.
        attributions: ``[n, seq]`` the explanations of the examples' predicted classes.
        n_seqpg_instances: pointing-game instances scored.
        settings: the conventions of each computed metric, by metric.
        per_example: ``[n]`` values by score of :data:`PER_EXAMPLE_SCORES` (NaN where a score does not apply to
            an example); each score is the mean of its finite values.
        per_instance: ``{"seqpg": [instances]}`` when the pointing game was scored.
    """

    scores: dict[str, float]
    seconds_per_example: float
    attributions: torch.Tensor
    n_seqpg_instances: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    per_example: dict[str, torch.Tensor] = field(default_factory=dict)
    per_instance: dict[str, torch.Tensor] = field(default_factory=dict)


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
    per_example: dict[str, torch.Tensor] = {}
    per_instance: dict[str, torch.Tensor] = {}
    erasure = [metric for metric in ERASURE if metric in settings.metrics]
    if erasure:
        results = erasure_metrics(classifier.predict_softmax, examples.input_ids, examples.attention_mask, attributions,
                                  metrics=erasure, fractions=settings.fractions,
                                  batch_size=settings.metric_batch_size, **classifier.erasure_settings())
        for metric, result in results.items():
            scores[metric], recorded[metric], per_example[metric] = result.mean, result.settings, result.per_example
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
            per_instance["seqpg"] = result.per_instance
    if "plausibility" in settings.metrics and examples.has_rationales:
        result = plausibility(attributions, examples.word_ids, examples.rationale)
        scores.update(zip(PLAUSIBILITY_SCORES, (result.auprc, result.token_f1, result.iou_f1)))
        per_example.update(plausibility_auprc=result.per_example["auprc"],
                           plausibility_token_f1=result.per_example["token_f1"])
        recorded["plausibility"] = {**result.settings, "n_examples": result.n_examples,
                                    "coverage": rationale_coverage(examples.word_ids, examples.rationale)}
    sparsity = [metric for metric in SPARSITY if metric in settings.metrics]
    if sparsity:
        content = content_mask(examples.input_ids, examples.attention_mask, tokenizer_special_ids(classifier.tokenizer))
        if "entropy" in sparsity:
            per_example["entropy"] = normalized_entropy(attributions, content)
        if "special_token_share" in sparsity:
            per_example["special_token_share"] = special_token_share(attributions, examples.attention_mask,
                                                                     examples.attention_mask.bool() & ~content)
        for metric in sparsity:
            scores[metric] = nan_mean(per_example[metric].cpu())
        recorded["sparsity"] = {
            "entropy": "entropy of |attribution| / sum over the content tokens (real, non-special), divided by "
                       "log(number of content tokens); undefined (left out) below 2 content tokens or without mass",
            "special_token_share": "|attribution| on special tokens / |attribution| on all real tokens"}
    per_example = {name: values.detach().double().cpu() for name, values in per_example.items()}
    per_instance = {name: values.detach().double().cpu() for name, values in per_instance.items()}
    return MethodResult(scores, seconds / max(len(examples), 1), attributions, n_instances, recorded, per_example,
                        per_instance)


@dataclass
class Predictions:
    """A model's arg-max classes on a set of examples, against the gold labels.

    Attributes:
        predicted, labels: ``[n]`` class ids.
        num_classes: the model's number of classes.
    """

    predicted: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    @property
    def accuracy(self) -> float:
        """Share of examples whose predicted class is the gold label."""
        return float((self.predicted == self.labels).double().mean())

    @property
    def macro_f1(self) -> float:
        """The unweighted mean over classes of ``2 TP / (2 TP + FP + FN)``, over the classes that occur among the
        labels or the predictions (scikit-learn's ``f1_score(average="macro")``)."""
        classes = torch.unique(torch.cat([self.labels, self.predicted]))
        scores = []
        for k in classes:
            predicted, labelled = self.predicted == k, self.labels == k
            true_positives = (predicted & labelled).sum()
            scores.append(2 * true_positives / (predicted.sum() + labelled.sum()))
        return float(torch.stack(scores).double().mean())

    def rates(self) -> dict[str, list[float]]:
        """Per class, the share of examples predicted as it and the share labelled as it
        (:func:`bcos.metrics.prediction_rates`)."""
        return prediction_rates(self.predicted, self.labels, self.num_classes)


def predictions(classifier: Model, examples: Examples, batch_size: int = 128) -> Predictions:
    """The arg-max classes of ``classifier`` on ``examples`` (CPU tensors)."""
    probabilities = batched_proba(classifier.predict_softmax, examples.input_ids, examples.attention_mask, batch_size)
    return Predictions(probabilities.argmax(dim=-1).cpu(), examples.labels.cpu(), probabilities.shape[-1])


def accuracy(classifier: Model, examples: Examples, batch_size: int = 128) -> float:
    """Share of ``examples`` whose arg-max class is the gold label."""
    return predictions(classifier, examples, batch_size).accuracy
