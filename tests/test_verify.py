"""bcos.verify on every architecture, the failures it reports, and bcosify's refusals of what it does not know."""
import copy
import dataclasses
import re

import pytest
import torch
from torch import nn

import bcos
from bcos.convert import ADAPTERS, adapters
from bcos.nn import BcosRMSNorm
from test_bcosify import model_output
from tiny_models import ARCHITECTURES, tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("model_type,class_name", ARCHITECTURES)
def test_verify_passes_on_every_default_conversion(model_type, class_name):
    model = tiny_model(model_type, class_name, dtype=torch.float64)
    original = copy.deepcopy(model)
    report = bcos.verify(bcos.bcosify(model), original)
    assert report.passed, str(report)
    assert report.biases == [] and report.nonlinearities == []
    assert report.completeness_error <= 1e-6 and report.identity_error <= 1e-5


def test_a_gemma_norm_converted_as_plain_rms_norm_is_caught_only_by_the_identity_check(monkeypatch):
    """Gemma's norm scales by (1 + γ); a plain RMSNorm scales by γ. The result is still a B-cos model whose
    explanations are complete — only the comparison with the original shows the conversion is wrong."""
    monkeypatch.setitem(ADAPTERS, "gemma", dataclasses.replace(ADAPTERS["gemma"],
                                                               norms={"GemmaRMSNorm": adapters.rms_norm}))
    model = tiny_model("gemma", "GemmaForCausalLM", dtype=torch.float64)
    report = bcos.verify(bcos.bcosify(copy.deepcopy(model)), model)
    assert report.complete and not report.exact and report.identity_error > 0.1 and not report.passed
    assert re.search(r"(?s)completeness: ok.*b=1 conversion equals the original: FAILED", str(report))


def test_verify_reports_biases_kept_nonlinearities_and_plain_attention():
    model = tiny_model("bert", "BertForSequenceClassification", dtype=torch.float64)
    kept = bcos.verify(bcos.bcosify(copy.deepcopy(model), remove_biases=False, keep_activations=True,
                                    keep_head_activations=True))
    assert not kept.passed and kept.exact is None
    assert "bert.encoder.layer.0.attention.self.query.bias" in kept.biases
    assert "bert.encoder.layer.0.intermediate.intermediate_act_fn: GELUActivation (an activation that is not a " \
           "dynamic scale)" in kept.nonlinearities
    assert "bert.pooler.activation: Tanh (an activation that is not a dynamic scale)" in kept.nonlinearities
    assert kept.completeness_error > 1e-3  # biases and tanh: the contributions do not sum to the logit

    plain_attention = bcos.bcosify(copy.deepcopy(model))
    plain_attention.set_attn_implementation("sdpa")
    report = bcos.verify(plain_attention)
    assert report.nonlinearities == ["attention: 'sdpa', not 'bcos_attention' (probabilities are not detached when "
                                     "explaining)"]
    assert report.completeness_error > 1e-4 and not report.complete and not report.passed


def test_an_unknown_norm_is_refused_with_what_to_do(monkeypatch):
    monkeypatch.setitem(ADAPTERS, "llama", dataclasses.replace(ADAPTERS["llama"], norms={}))
    with pytest.raises(ValueError, match=r"^bcosify: norm 'model\.layers\.0\.input_layernorm' \(LlamaRMSNorm\) of "
                                         r"llama has no role in its adapter; refusing to convert partially .*Add it "
                                         r"to the adapter's norms in bcos/convert/adapters\.py"):
        bcos.bcosify(tiny_model("llama", "LlamaForCausalLM"))


def test_an_unknown_activation_module_is_refused():
    model = tiny_model("qwen2", "Qwen2ForCausalLM")
    model.model.layers[1].mlp.extra = nn.Tanh()
    with pytest.raises(ValueError, match=r"^bcosify: activation 'model\.layers\.1\.mlp\.extra' \(Tanh\) of qwen2 "
                                         r"has no role .* gated_activations, dynamic_activations or head_activations"):
        bcos.bcosify(model)


def test_an_unknown_linear_layer_is_refused():
    model = tiny_model("mistral", "MistralForCausalLM")
    model.model.layers[0].mlp.extra = nn.Linear(4, 4)
    with pytest.raises(ValueError, match=r"^bcosify: linear layer 'model\.layers\.0\.mlp\.extra' \(Linear\) of "
                                         r"mistral has no role .*bcos_linears or plain_linears"):
        bcos.bcosify(model)


def test_an_unhandled_soft_cap_is_refused(monkeypatch):
    monkeypatch.setitem(ADAPTERS, "gemma2", dataclasses.replace(ADAPTERS["gemma2"],
                                                                softcaps=("attn_logit_softcapping",)))
    with pytest.raises(ValueError, match=r"^bcosify: Gemma2ForCausalLM applies a soft-cap c·tanh\(x/c\) "
                                         r"\(final_logit_softcapping=0\.5\) that the gemma2 adapter does not handle"):
        bcos.bcosify(tiny_model("gemma2", "Gemma2ForCausalLM"))


def test_gemma_norms_keep_their_one_plus_gamma():
    model = bcos.bcosify(tiny_model("gemma", "GemmaModel"))
    norm = model.layers[0].input_layernorm
    assert isinstance(norm, BcosRMSNorm) and norm.offset == 1.0
    x = torch.randn(2, 5, 32)
    expected = x / x.square().mean(-1, keepdim=True).add(norm.eps).sqrt() * (1 + norm.weight)
    torch.testing.assert_close(norm(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("class_name", ["Gemma2ForCausalLM", "Gemma3ForCausalLM"])
def test_final_logit_soft_cap_is_a_dynamic_scale_that_keeps_the_capped_logits(class_name):
    model_type = "gemma2" if class_name.startswith("Gemma2") else "gemma3_text"
    model = tiny_model(model_type, class_name)
    ids, mask = tiny_batch(model_type)
    original = model_output(model, ids, mask)
    assert original.abs().max() <= 0.5  # the cap (0.5) is active
    bcos.bcosify(model, b=1.0, remove_biases=False, normalize_weights=False)
    assert model.final_logit_softcap.cap == 0.5
    torch.testing.assert_close(model_output(model, ids, mask), original, rtol=0, atol=1e-6)
    with bcos.explanation_mode():
        torch.testing.assert_close(model_output(model, ids, mask), original, rtol=0, atol=1e-6)
