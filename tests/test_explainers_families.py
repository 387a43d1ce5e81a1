"""The explainers on the architecture families added for issue 13 (one head each), on their B-cos conversion."""
import pytest
import torch

import bcos
from bcos.explain import get_explainer
from bcos.nn import BCOS_ATTENTION
from test_explainers import SPECIAL_IDS, with_specials
from tiny_models import DECODERS, tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")
FAMILIES = [("qwen2", "Qwen2ForSequenceClassification"), ("mistral", "MistralForCausalLM"),
            ("qwen3", "Qwen3ForCausalLM"), ("gemma", "GemmaForSequenceClassification"),
            ("gemma2", "Gemma2ForCausalLM"), ("gemma3_text", "Gemma3TextForSequenceClassification"),
            ("phi3", "Phi3ForCausalLM"), ("modernbert", "ModernBertForSequenceClassification")]


@pytest.mark.parametrize("model_type,class_name", FAMILIES)
def test_explainers_run_on_each_family_and_bcos_equals_bcos_explain(model_type, class_name):
    # float32: transformers' eager attention (which the attention explainer switches to) turns left-padded rows
    # of a float64 model into NaN (a float64 mask minimum cast to float32 for the softmax)
    model = bcos.bcosify(tiny_model(model_type, class_name), b=1.5)
    ids, mask = tiny_batch(model_type)
    ids = with_specials(ids, mask, model_type in DECODERS)
    for name in ("integrated_gradients", "input_x_gradient", "occlusion", "attention", "bcos"):
        attribution = get_explainer(name, model, SPECIAL_IDS).attribute(ids, mask)
        assert torch.isfinite(attribution.scores).all() and torch.all(attribution.scores[mask == 0] == 0), name
        assert attribution.scores[mask == 1].abs().sum() > 0, name
        if name == "attention":  # rows of probabilities over the real tokens; the implementation is restored
            torch.testing.assert_close(attribution.scores.sum(-1), torch.ones(ids.shape[0]))
            assert model.config._attn_implementation == BCOS_ATTENTION
        if name == "bcos":
            explanation = bcos.explain(model, ids, mask, attribution.target)
            torch.testing.assert_close(attribution.scores, explanation.contributions.to(attribution.scores.dtype))
            assert explanation.completeness_error().max() <= 1e-3
