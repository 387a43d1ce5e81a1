"""Confidence intervals for scores averaged over examples: a seeded percentile bootstrap of the mean, its paired
form for the difference of two methods scored on the same examples, and its independent form for the difference of
two means over different samples (e.g. the pointing-game instances that each model builds for itself)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval.

    Attributes:
        mean: the mean over the ``n`` finite values (a difference of two means: see
            :func:`independent_difference_interval`).
        low, high: the ``level`` percentile-bootstrap interval of the mean.
        n: number of values used (non-finite ones are left out; for two independent samples the smaller count).
        level, resamples, seed: how it was computed (recorded with every result).
    """

    mean: float
    low: float
    high: float
    n: int
    level: float
    resamples: int
    seed: int

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval (e.g. a difference significantly different from 0)."""
        return value < self.low or value > self.high

    def as_dict(self) -> dict:
        return asdict(self)


def _check(level: float, resamples: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")


def _finite(values: torch.Tensor) -> torch.Tensor:
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    return values[values.isfinite()]


def _percentiles(means: torch.Tensor, level: float) -> list[float]:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (linear interpolation) of ``means`` (``[resamples]``)."""
    return torch.quantile(means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)).tolist()


def bootstrap_interval(values: torch.Tensor, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean of ``values`` (``[n]``; non-finite entries are left out).

    Draws ``resamples`` samples of size n with replacement (a ``torch.Generator`` seeded with ``seed``: index
    matrix ``randint(n, (resamples, n))``), and returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles
    (linear interpolation) of their means. With fewer than 2 values the interval is NaN.
    """
    _check(level, resamples)
    values = _finite(values)
    n = values.numel()
    mean = values.mean().item() if n else float("nan")
    if n < 2:
        return Interval(mean, float("nan"), float("nan"), n, level, resamples, seed)
    generator = torch.Generator().manual_seed(seed)
    means = values[torch.randint(n, (resamples, n), generator=generator)].mean(dim=1)
    return Interval(mean, *_percentiles(means, level), n, level, resamples, seed)


def paired_difference_interval(first: torch.Tensor, second: torch.Tensor, level: float = 0.95, resamples: int = 2000,
                               seed: int = 0) -> Interval:
    """Bootstrap interval of ``mean(first - second)`` resampling examples jointly (``first``, ``second``: ``[n]``
    scores of two methods on the same examples); pairs with a non-finite member are left out."""
    first, second = torch.as_tensor(first, dtype=torch.float64), torch.as_tensor(second, dtype=torch.float64)
    if first.shape != second.shape:
        raise ValueError(f"paired scores need the same examples, got shapes {tuple(first.shape)} and "
                         f"{tuple(second.shape)}")
    return bootstrap_interval(first - second, level, resamples, seed)


def independent_difference_interval(first: torch.Tensor, second: torch.Tensor, level: float = 0.95,
                                    resamples: int = 2000, seed: int = 0) -> Interval:
    """Bootstrap interval of ``mean(first) - mean(second)`` for two independent samples (``[n]`` and ``[m]``, e.g.
    scores over different instances; non-finite entries are left out): each resample draws ``first`` and then
    ``second`` with replacement from one ``torch.Generator`` seeded with ``seed`` (index matrices
    ``randint(n, (resamples, n))`` then ``randint(m, (resamples, m))``). ``n`` of the result is ``min(n, m)``;
    with fewer than 2 values on either side the interval is NaN."""
    _check(level, resamples)
    first, second = _finite(first), _finite(second)
    n, m = first.numel(), second.numel()
    mean = first.mean().item() - second.mean().item() if n and m else float("nan")
    if min(n, m) < 2:
        return Interval(mean, float("nan"), float("nan"), min(n, m), level, resamples, seed)
    generator = torch.Generator().manual_seed(seed)
    first_means = first[torch.randint(n, (resamples, n), generator=generator)].mean(dim=1)
    second_means = second[torch.randint(m, (resamples, m), generator=generator)].mean(dim=1)
    return Interval(mean, *_percentiles(first_means - second_means, level), min(n, m), level, resamples, seed)
