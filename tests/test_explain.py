"""bcos.explain: completeness, padding, batching, targets and agreement with Captum."""
import pytest
import torch
from captum.attr import LayerGradientXActivation

import bcos
from bcos.kinds import kind_of_class
from tiny_models import ARCHITECTURES, DECODERS, tiny_batch, tiny_model

#: every supported model with a head (base models have no logits to explain)
HEADS = [(model_type, name) for model_type, name in ARCHITECTURES if kind_of_class(name) is not None]

#: the module whose output is the input of the first transformer block (Llama-like decoders: embed_tokens)
BLOCK_INPUT_MODULES = {"bert": "embeddings", "roberta": "embeddings", "distilbert": "embeddings", "gpt2": "drop",
                       "modernbert": "embeddings"}


def position_for(class_name: str) -> dict:
    return {"position": 3} if "MaskedLM" in class_name else {}


def position_ids(model_type: str, mask: torch.Tensor) -> dict:
    """Decoders count positions over real tokens only (what bcos.explain does for left padding)."""
    return {"position_ids": (mask.cumsum(-1) - 1).clamp_min(0)} if model_type in DECODERS else {}


def bcos_model(model_type: str, class_name: str, dtype=torch.float64, b: float = 2.0):
    return bcos.bcosify(tiny_model(model_type, class_name, dtype=dtype), b=b)


@pytest.mark.parametrize("model_type,class_name", HEADS)
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-6), (torch.float32, 1e-3)])
def test_contributions_sum_to_the_explained_logit(model_type, class_name, dtype, tolerance):
    model = bcos_model(model_type, class_name, dtype)
    ids, mask = tiny_batch(model_type)
    kwargs = position_for(class_name)
    predicted = bcos.explain(model, ids, mask, **kwargs)
    other = bcos.explain(model, ids, mask, target=(predicted.prediction + 1) % 3, **kwargs)
    explanations = [predicted, other]
    if model_type in DECODERS and "CausalLM" in class_name or "LMHead" in class_name:
        explanations.append(bcos.explain(model, ids, mask, target=5, foil=7))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, **position_ids(model_type, mask)).logits
    for explanation in explanations:
        assert explanation.completeness_error().max() <= tolerance
        # the explained logit is the model's own logit (difference for contrastive explanations)
        rows = torch.arange(ids.shape[0])
        token_logits = logits if logits.dim() == 2 else logits[rows, explanation.position]
        expected = token_logits[rows, explanation.target]
        if explanation.foil is not None:
            expected = expected - token_logits[rows, explanation.foil]
        torch.testing.assert_close(explanation.logit, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(predicted.target, predicted.prediction)
    assert torch.equal(predicted.prediction, predicted.probabilities.argmax(-1))


@pytest.mark.parametrize("model_type,class_name", HEADS)
def test_explanation_mode_forward_equals_normal_forward(model_type, class_name):
    model = bcos_model(model_type, class_name)
    ids, mask = tiny_batch(model_type)
    with torch.no_grad():
        normal = model(input_ids=ids, attention_mask=mask).logits
        with bcos.explanation_mode():
            explained = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(explained, normal, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("model_type,class_name", HEADS)
def test_padding_gets_zero_and_a_padded_batch_equals_examples_one_by_one(model_type, class_name):
    model = bcos_model(model_type, class_name)
    ids, mask = tiny_batch(model_type)
    kwargs = position_for(class_name)
    batched = bcos.explain(model, ids, mask, **kwargs)
    assert torch.all(batched.contributions[mask == 0] == 0)
    for row in range(ids.shape[0]):
        keep = mask[row].bool()
        single = bcos.explain(model, ids[row:row + 1, keep], **kwargs)
        torch.testing.assert_close(batched.contributions[row, keep], single.contributions[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(batched.logit[row], single.logit[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("model_type,class_name", HEADS)
def test_contributions_equal_captum_input_x_gradient_on_the_block_input(model_type, class_name):
    model = bcos_model(model_type, class_name)
    ids, mask = tiny_batch(model_type)
    explanation = bcos.explain(model, ids, mask, **position_for(class_name))
    rows = torch.arange(ids.shape[0])

    def explained_logit(input_ids, attention_mask):
        logits = model(input_ids=input_ids, attention_mask=attention_mask,
                       **position_ids(model_type, attention_mask)).logits
        if logits.dim() == 3:
            logits = logits[rows, explanation.position]
        return logits[rows, explanation.target]

    # the module whose output is the input of the first transformer block
    block_input = model.base_model.get_submodule(BLOCK_INPUT_MODULES.get(model_type, "embed_tokens"))
    captum = LayerGradientXActivation(explained_logit, block_input)
    with bcos.explanation_mode():
        attributions = captum.attribute(ids, additional_forward_args=(mask,))
    torch.testing.assert_close(explanation.contributions, attributions.sum(-1) * mask, rtol=1e-9, atol=1e-12)


def test_all_targets_at_once_equal_one_target_at_a_time():
    model = bcos_model("bert", "BertForSequenceClassification")
    ids, mask = tiny_batch("bert")
    every = bcos.explain(model, ids, mask, target="all")
    assert every.contributions.shape == (3, 3, ids.shape[1])
    for label in range(3):
        one = bcos.explain(model, ids, mask, target=label)
        torch.testing.assert_close(every.contributions[:, label], one.contributions, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(every.logit[:, label], one.logit)
    assert every.completeness_error().max() < 1e-6


def test_contrastive_explanation_is_the_difference_of_two_explanations():
    model = bcos_model("llama", "LlamaForCausalLM")
    ids, mask = tiny_batch("llama")
    target = torch.tensor([5, 6, 7])
    contrast = bcos.explain(model, ids, mask, target=target, foil=11)
    difference = (bcos.explain(model, ids, mask, target=target).contributions
                  - bcos.explain(model, ids, mask, target=11).contributions)
    torch.testing.assert_close(contrast.contributions, difference, rtol=1e-9, atol=1e-12)
    assert torch.equal(contrast.foil, torch.tensor([11, 11, 11]))


def test_next_token_position_defaults_to_the_last_token_and_can_be_chosen():
    model = bcos_model("gpt2", "GPT2LMHeadModel")
    ids, mask = tiny_batch("gpt2")  # left padded: the last token is at the end of every row
    assert bcos.explain(model, ids, mask).position.tolist() == [ids.shape[1] - 1] * ids.shape[0]
    right_ids, right_mask = tiny_batch("bert")  # right padded
    assert bcos.explain(model, right_ids, right_mask).position.tolist() == (right_mask.sum(1) - 1).tolist()
    at_two = bcos.explain(model, ids[:1], mask[:1], position=2)
    assert at_two.position.tolist() == [2]
    assert torch.all(at_two.contributions[0, 3:] == 0)  # causal: later tokens cannot contribute
    assert at_two.completeness_error().max() < 1e-6


def test_explain_leaves_no_grad_and_works_under_inference_mode():
    model = bcos_model("bert", "BertForSequenceClassification")
    ids, mask = tiny_batch("bert")
    with torch.inference_mode():
        ids_inference, mask_inference = ids.clone(), mask.clone()
        explanation = bcos.explain(model, ids_inference, mask_inference)
    assert all(p.grad is None for p in model.parameters())
    assert not bcos.is_explanation_mode()
    torch.testing.assert_close(explanation.contributions, bcos.explain(model, ids, mask).contributions)


def test_bad_arguments_get_clear_errors():
    mlm = bcos_model("bert", "BertForMaskedLM")
    ids, mask = tiny_batch("bert")
    with pytest.raises(ValueError, match=r"masked language model needs position="):
        bcos.explain(mlm, ids, mask)
    classifier = bcos_model("bert", "BertForSequenceClassification")
    with pytest.raises(ValueError, match=r'target="all" cannot be combined with a foil'):
        bcos.explain(classifier, ids, mask, target="all", foil=1)
    with pytest.raises(ValueError, match=r"target must be an int or a tensor of shape \[batch\]=\[3\], got shape \(2,\)"):
        bcos.explain(classifier, ids, mask, target=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="position= applies to token-level heads"):
        bcos.explain(classifier, ids, mask, position=0)
    with pytest.raises(ValueError, match="bcosify does not support"):
        bcos.explain(torch.nn.Linear(2, 2), ids, mask)
