"""Integrated Gradients in bounded passes: the split follows the token budget rule, and explanations computed in
passes equal those computed at once (on a conventional and a B-cos tiny model)."""
from __future__ import annotations

import pytest
import torch
from captum.attr import LayerIntegratedGradients

import bcos
from bcos.explain import get_explainer
from bcos.explain.gradient import MAX_TOKENS_PER_PASS, ig_passes
from tiny_models import tiny_batch, tiny_model


@pytest.mark.parametrize("n_examples, length, n_steps, budget, expected", [
    (16, 256, 50, 8192, (16, 32)),    # 32 rows of 256 tokens per pass: all 16 examples at 2 steps
    (16, 64, 50, 8192, (16, 128)),    # 128 rows: 8 steps
    (2, 10, 3, 10_000, (2, 6)),       # everything fits: one pass of all 6 rows
    (40, 300, 50, 8192, (27, 27)),    # 27 rows fit: 27 examples per call, one step per pass
    (3, 9000, 5, 8192, (1, 1)),       # longer than the budget: still one row per pass
])
def test_passes_follow_the_token_budget(n_examples, length, n_steps, budget, expected):
    examples, internal = ig_passes(n_examples, length, n_steps, budget)
    assert (examples, internal) == expected
    assert internal * length <= max(budget, length) and internal % examples == 0


@pytest.mark.parametrize("bcosified", [False, True])
def test_explanations_in_passes_equal_those_at_once(bcosified, monkeypatch):
    model = tiny_model("bert", "BertForSequenceClassification")
    if bcosified:
        model = bcos.bcosify(model, b=2.0)
    ids, mask = tiny_batch("bert", batch=3, seq=9)
    at_once = get_explainer("integrated_gradients", model, n_steps=6, max_tokens_per_pass=None).attribute(ids, mask)
    calls = []
    real = LayerIntegratedGradients.attribute

    def recording(self, inputs, *args, **kwargs):
        calls.append((inputs.shape[0], kwargs["internal_batch_size"]))
        return real(self, inputs, *args, **kwargs)

    monkeypatch.setattr(LayerIntegratedGradients, "attribute", recording)
    # 2 rows of 9 tokens per pass: calls of 2 examples (one step per pass), then 1 example (two steps per pass)
    in_passes = get_explainer("integrated_gradients", model, n_steps=6, max_tokens_per_pass=18).attribute(ids, mask)
    assert calls == [(2, 2), (1, 2)]
    torch.testing.assert_close(in_passes.scores, at_once.scores, rtol=1e-5, atol=1e-6)
    assert get_explainer("integrated_gradients", model).max_tokens_per_pass == MAX_TOKENS_PER_PASS


def test_bad_budgets_are_refused():
    model = tiny_model("bert", "BertForSequenceClassification")
    with pytest.raises(ValueError, match=r"integrated_gradients: max_tokens_per_pass must be a positive integer, "
                                         r"got 0"):
        get_explainer("integrated_gradients", model, max_tokens_per_pass=0)
