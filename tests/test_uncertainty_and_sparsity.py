"""Bootstrap intervals and the sparsity / bias-signature metrics against explicit computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bcos.metrics import (bootstrap_interval, independent_difference_interval, normalized_entropy,
                          paired_difference_interval, prediction_rates, special_token_share)

VALUES = torch.tensor([3.0, -1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])


def explicit_percentile_bootstrap(values: np.ndarray, level: float, resamples: int, seed: int) -> tuple[float, float]:
    """The same resampling written out: one row of indices per resample, numpy's linear percentile."""
    indices = torch.randint(len(values), (resamples, len(values)), generator=torch.Generator().manual_seed(seed)).numpy()
    means = [values[row].mean() for row in indices]
    return tuple(np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2]))


def test_bootstrap_interval_equals_the_explicit_resampling():
    interval = bootstrap_interval(VALUES, level=0.9, resamples=500, seed=3)
    low, high = explicit_percentile_bootstrap(VALUES.double().numpy(), 0.9, 500, 3)
    assert (interval.mean, interval.n, interval.resamples, interval.seed) == (3.625, 8, 500, 3)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-12)
    assert interval.low < interval.mean < interval.high and not interval.excludes(3.0) and interval.excludes(0.0)


def test_non_finite_values_are_left_out_and_a_constant_gives_a_point():
    with_nan = bootstrap_interval(torch.cat([VALUES, torch.tensor([float("nan")])]), resamples=200)
    assert with_nan == bootstrap_interval(VALUES, resamples=200)
    constant = bootstrap_interval(torch.full((5,), 2.5))
    assert (constant.low, constant.mean, constant.high) == (2.5, 2.5, 2.5)
    single = bootstrap_interval(torch.tensor([1.0]))
    assert single.mean == 1.0 and math.isnan(single.low) and math.isnan(single.high)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 95"):
        bootstrap_interval(VALUES, level=95)


def test_paired_interval_resamples_examples_jointly():
    first = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0])
    second = first - torch.tensor([1.0, 2.0, 1.0, 2.0, 1.5])  # a consistent small lead over widely varying scores
    paired = paired_difference_interval(first, second, resamples=1000, seed=1)
    low, high = explicit_percentile_bootstrap((first - second).double().numpy(), 0.95, 1000, 1)
    assert paired.mean == pytest.approx(1.5) and (paired.low, paired.high) == pytest.approx((low, high), abs=1e-12)
    assert paired.excludes(0.0)  # paired: significant; the unpaired intervals of the two means overlap widely
    assert not bootstrap_interval(first, seed=1).low > bootstrap_interval(second, seed=1).high
    with pytest.raises(ValueError, match=r"same examples, got shapes \(5,\) and \(4,\)"):
        paired_difference_interval(first, second[:4])


def test_independent_difference_resamples_each_sample_on_its_own():
    first = torch.tensor([0.9, 0.7, float("nan"), 0.8, 0.95, 0.6])  # e.g. pointing-game scores of two models,
    second = torch.tensor([0.5, 0.65, 0.4, 0.7])                       # each over its own instances
    interval = independent_difference_interval(first, second, level=0.9, resamples=400, seed=2)
    kept = first[first.isfinite()].double().numpy()
    generator = torch.Generator().manual_seed(2)  # written out: first's index matrix, then second's, one generator
    first_rows = torch.randint(len(kept), (400, len(kept)), generator=generator).numpy()
    second_rows = torch.randint(4, (400, 4), generator=generator).numpy()
    means = kept[first_rows].mean(axis=1) - second.double().numpy()[second_rows].mean(axis=1)
    assert interval.mean == pytest.approx(kept.mean() - 0.5625) and interval.n == 4
    assert (interval.low, interval.high) == pytest.approx(tuple(np.percentile(means, [5, 95])), abs=1e-12)
    lone = independent_difference_interval(first, second[:1])
    assert lone.mean == pytest.approx(kept.mean() - 0.5) and math.isnan(lone.low) and math.isnan(lone.high)


def test_normalized_entropy_by_hand():
    attributions = torch.tensor([[9.0, 1.0, -1.0, 1.0, 1.0, 0.0],     # [CLS] a b c d [SEP]
                                 [0.0, 2.0, 0.0, 0.0, 0.0, 0.0],
                                 [0.0, 3.0, 0.0, 0.0, 0.0, 0.0]])
    content = torch.tensor([[0, 1, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    entropy = normalized_entropy(attributions, content)
    assert entropy[0].item() == pytest.approx(1.0)  # |a| uniform over 4 content tokens, [CLS] ignored
    assert entropy[1].item() == 0.0  # one token of three holds all the mass
    assert math.isnan(entropy[2].item())  # one content token: undefined
    p = torch.tensor([3.0, 1.0]) / 4
    two = normalized_entropy(torch.tensor([[3.0, -1.0]]), torch.ones(1, 2, dtype=torch.bool))
    assert two.item() == pytest.approx(-(p * p.log()).sum().item() / math.log(2))


def test_special_token_share_and_prediction_rates_by_hand():
    attributions = torch.tensor([[4.0, 1.0, -3.0, 2.0, 7.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    special = torch.tensor([[1, 0, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    share = special_token_share(attributions, mask, special)
    assert share[0].item() == pytest.approx(6 / 10)  # (4 + 2) / (4 + 1 + 3 + 2); the padded 7 does not count
    assert math.isnan(share[1].item())
    rates = prediction_rates(torch.tensor([1, 1, 1, 0]), torch.tensor([0, 1, 0, 1]), num_classes=3)
    assert rates == {"predicted": [0.25, 0.75, 0.0], "labelled": [0.5, 0.5, 0.0]}
