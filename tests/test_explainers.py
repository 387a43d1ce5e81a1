"""Explainers behind one protocol: exact answers on a linear model, IG completeness, B-cos identity, padding."""
import pytest
import torch

import bcos
from bcos.explain import EXPLAINERS, AttributionResult, get_explainer
from bcos.nn import BCOS_ATTENTION
from test_metrics import CLS, PAD, SEP, SPECIAL, bag_of_words, batch
from tiny_models import tiny_batch, tiny_model

SPECIAL_IDS = (1, 2)  # treated as [CLS]/[SEP] (BOS/EOS) in the tiny models' vocabulary


pytestmark = pytest.mark.usefixtures("one_thread")


def with_specials(ids: torch.Tensor, mask: torch.Tensor, decoder: bool) -> torch.Tensor:
    """Put special tokens around each row's real tokens: ``[CLS] ... [SEP]`` (encoders) or BOS first (decoders)."""
    ids = ids.clone()
    first = mask.long().argmax(-1)
    last = (mask.bool() * (torch.arange(ids.shape[1]) + 1)).argmax(-1)
    rows = torch.arange(ids.shape[0])
    ids[rows, first] = 1
    if not decoder:
        ids[rows, last] = 2
    return ids


MODELS = {
    "bcos-bert": lambda: bcos.bcosify(tiny_model("bert", "BertForSequenceClassification"), b=2.0),
    "bcos-gpt2": lambda: bcos.bcosify(tiny_model("gpt2", "GPT2ForSequenceClassification"), b=2.0),
    "gpt2-lm": lambda: tiny_model("gpt2", "GPT2LMHeadModel"),
}


@pytest.fixture(scope="module", params=list(MODELS))
def model_and_batch(request):
    model_type = "bert" if "bert" in request.param else "gpt2"
    ids, mask = tiny_batch(model_type)
    return MODELS[request.param](), with_specials(ids, mask, model_type == "gpt2"), mask


@pytest.mark.parametrize("name", list(EXPLAINERS))
def test_every_explainer_runs_and_zeroes_padding(name, model_and_batch):
    model, ids, mask = model_and_batch
    explainer = get_explainer(name, model, SPECIAL_IDS)
    if name == "bcos" and getattr(model.config, "bcos", None) is None:
        with pytest.raises(ValueError, match="GPT2LMHeadModel is not a B-cos model"):  # no exact explanation
            explainer.attribute(ids, mask)
        return
    with torch.inference_mode():  # as in Lightning's validation loop
        attribution = explainer.attribute(ids, mask)
    assert isinstance(attribution, AttributionResult) and attribution.seconds > 0
    with pytest.warns(FutureWarning, match="bcos.explain.Attribution is deprecated"):
        from bcos.explain import Attribution
    assert Attribution is AttributionResult
    assert attribution.scores.shape == ids.shape and attribution.scores.dtype == torch.float32
    assert torch.all(attribution.scores[mask == 0] == 0) and torch.isfinite(attribution.scores).all()
    assert attribution.scores[mask == 1].abs().sum() > 0
    with torch.no_grad():
        logits = explainer.logits(ids, mask)
    assert torch.equal(attribution.target, logits.argmax(-1))
    assert all(parameter.grad is None for parameter in model.parameters())
    if name in ("kernel_shap", "shapley_sampling", "lime", "occlusion"):  # special tokens are never perturbed
        assert torch.all(attribution.scores[(ids == 1) | (ids == 2)] == 0)


def test_unknown_explainer_names_the_known_ones():
    with pytest.raises(ValueError, match="integrated_gradients.*kernel_shap.*attention"):
        get_explainer("gradcam", bag_of_words())


@pytest.mark.parametrize("name,tolerance", [("occlusion", 1e-12), ("integrated_gradients", 1e-8),
                                            ("input_x_gradient", 1e-12), ("shapley_sampling", 1e-12),
                                            ("kernel_shap", 1e-5), ("lime", 1e-3)])
def test_linear_bag_of_words_is_explained_by_its_token_weights(name, tolerance):
    """Every token's exact attribution is its weight for the target class ([PAD], the baseline, weighs 0)."""
    model = bag_of_words()
    ids, mask = batch([4, 5, 6, 7, 8, 9], [8, 6, 10], [9])  # one content token: KernelSHAP's special case
    target = torch.tensor([0, 1, 0])
    baseline = {} if name == "input_x_gradient" else {"baseline_token_id": PAD}
    attribution = get_explainer(name, model, SPECIAL, **baseline).attribute(ids, mask, target)
    content = mask.bool() & (ids != CLS) & (ids != SEP)
    expected = model.embedding.weight[ids, target[:, None]].detach() * content
    torch.testing.assert_close(attribution.scores, expected, rtol=0, atol=tolerance)


def test_integrated_gradients_is_complete_on_a_tiny_bert():
    """Σ_t IG = logit(input) - logit(reference) within 1e-4: 50 Gauss-Legendre steps on a float64 tiny BERT whose
    weights are scaled up (std 0.3) so that the logit differences are large (> 0.1) and the model non-linear."""
    model = tiny_model("bert", "BertForSequenceClassification", dtype=torch.float64)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.3, generator=torch.Generator().manual_seed(parameter.numel()))
    ids, mask = tiny_batch("bert")
    ids = with_specials(ids, mask, decoder=False)
    explainer = get_explainer("integrated_gradients", model, SPECIAL_IDS)
    attribution = explainer.attribute(ids, mask)
    reference = explainer.reference_ids(ids, mask)
    assert torch.equal(reference[ids == 1], ids[ids == 1]) and torch.all(reference[mask.bool() & (ids > 2)] == PAD)
    with torch.no_grad():
        rows = torch.arange(ids.shape[0])
        difference = (explainer.logits(ids, mask) - explainer.logits(reference, mask))[rows, attribution.target]
    torch.testing.assert_close(attribution.scores.sum(-1), difference, rtol=0, atol=1e-4)
    assert difference.abs().min() > 0.1  # the check is not vacuous


def test_bcos_explainer_equals_bcos_explain():
    model = bcos.bcosify(tiny_model("bert", "BertForSequenceClassification", dtype=torch.float64), b=2.0)
    ids, mask = tiny_batch("bert")
    target = torch.tensor([2, 0, 1])
    attribution = get_explainer("bcos", model).attribute(ids, mask, target)
    assert torch.equal(attribution.scores, bcos.explain(model, ids, mask, target).contributions)


@pytest.mark.parametrize("model_type,class_name", [("bert", "BertForSequenceClassification"),
                                                   ("gpt2", "GPT2LMHeadModel")])
def test_attention_rows_are_probabilities_and_the_implementation_is_restored(model_type, class_name):
    model = bcos.bcosify(tiny_model(model_type, class_name))
    ids, mask = tiny_batch(model_type)
    scores = get_explainer("attention", model).attribute(ids, mask).scores
    assert torch.all(scores >= 0) and torch.all(scores[mask == 0] == 0)
    assert torch.all(scores.sum(-1) <= 1 + 1e-6)
    torch.testing.assert_close(scores.sum(-1), torch.ones(ids.shape[0]))  # the row covers every real token
    assert model.config._attn_implementation == BCOS_ATTENTION


@pytest.mark.parametrize("name", ["integrated_gradients", "occlusion", "lime"])
def test_decoder_rows_are_explained_as_if_alone(name):
    """Left padding changes nothing: position ids count real tokens only."""
    model = tiny_model("gpt2", "GPT2LMHeadModel", dtype=torch.float64)
    ids, mask = tiny_batch("gpt2")
    explainer = get_explainer(name, model, SPECIAL_IDS, **({"n_samples": 50} if name == "lime" else {}))
    batched = explainer.attribute(ids, mask)
    real = mask[2].bool()
    alone = explainer.attribute(ids[2:3, real], mask[2:3, real], batched.target[2:3])
    torch.testing.assert_close(batched.scores[2, real], alone.scores[0], rtol=1e-5, atol=1e-5)


def test_sampling_explainers_are_seeded():
    model = tiny_model("bert", "BertForSequenceClassification")
    ids, mask = tiny_batch("bert")
    first, second = (get_explainer("kernel_shap", model, n_samples=30, seed=3).attribute(ids, mask) for _ in range(2))
    assert torch.equal(first.scores, second.scores)
    other = get_explainer("kernel_shap", model, n_samples=30, seed=4).attribute(ids, mask)
    assert not torch.equal(first.scores, other.scores)
