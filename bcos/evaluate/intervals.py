"""Confidence intervals of a method's scores and of its difference to B-cos, from the per-example (and
per-instance) values of :class:`~bcos.evaluate.core.MethodResult` (see :mod:`bcos.metrics.uncertainty` for the
resampling protocol)."""
from __future__ import annotations

from dataclasses import dataclass

from ..metrics import Interval, bootstrap_interval, independent_difference_interval, paired_difference_interval
from .core import SCORES, MethodResult


@dataclass(frozen=True)
class Bootstrap:
    """How the intervals are drawn (recorded with the results): the ``level`` percentile bootstrap with
    ``resamples`` resamples, each interval from a generator seeded with ``seed``."""

    resamples: int = 2000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, int) or self.resamples < 1:
            raise ValueError(f"the number of bootstrap resamples must be a positive integer, got {self.resamples!r}")
        if not 0 < self.level < 1:
            raise ValueError(f"the confidence level must be in (0, 1), got {self.level}")

    def describe(self) -> dict:
        return {"level": self.level, "resamples": self.resamples, "seed": self.seed,
                "method": "percentile bootstrap of the mean over examples (pointing game: over instances); indices "
                          "torch.randint(n, (resamples, n)) from torch.Generator().manual_seed(seed), per score; "
                          "non-finite values left out; differences to B-cos: the same resampling of the per-example "
                          "differences (paired), except the pointing game of a method on another model, whose "
                          "instances differ: B-cos's instances resampled, then the method's, from one generator "
                          "(independent; both sets are drawn from the same examples, each model's confident ones, "
                          "so the difference also reflects which instances each model chose)"}


def _values(result: MethodResult) -> dict:
    values = {**result.per_example, **result.per_instance}
    return {name: values[name] for name in SCORES if name in values}


def score_intervals(result: MethodResult, bootstrap: Bootstrap) -> dict[str, Interval]:
    """The interval of each score that has per-example (or per-instance) values, in :data:`SCORES` order."""
    return {name: bootstrap_interval(values, bootstrap.level, bootstrap.resamples, bootstrap.seed)
            for name, values in _values(result).items()}


def difference_intervals(reference: MethodResult, other: MethodResult, bootstrap: Bootstrap,
                         same_instances: bool) -> dict[str, Interval]:
    """Intervals of ``reference - other`` per score present in both: paired (the shared examples resampled
    jointly) for the per-example scores, and for the pointing game when both were scored on the same instances
    (``same_instances``: the same model); otherwise the pointing game's two instance sets are resampled
    independently (:func:`~bcos.metrics.independent_difference_interval`)."""
    first, second = _values(reference), _values(other)
    intervals = {}
    for name in (name for name in first if name in second):
        paired = name in reference.per_example or same_instances
        interval = paired_difference_interval if paired else independent_difference_interval
        intervals[name] = interval(first[name], second[name], bootstrap.level, bootstrap.resamples, bootstrap.seed)
    return intervals
