"""Decoder explanations along a text: next-token and contrastive explanations at every position, generation with
an explanation per generated token, and the post-hoc explainers' contrastive targets."""
import copy

import pytest
import torch

import bcos
from bcos.explain import explain_positions, generate_explained, get_explainer
from bcos.kinds import kind_of_class
from tiny_models import ARCHITECTURES, tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

DECODERS = [(model_type, name) for model_type, name in ARCHITECTURES if kind_of_class(name) == "causal-lm"]


def bcos_decoder(model_type: str, class_name: str):
    return bcos.bcosify(tiny_model(model_type, class_name, dtype=torch.float64), b=1.1)


def model_logits(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[batch, seq, vocab]`` with position ids over real tokens (as the explanations use them)."""
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0)).logits


@pytest.mark.parametrize("model_type,class_name", DECODERS)
def test_every_position_is_explained_completely_and_causally(model_type, class_name):
    model = bcos_decoder(model_type, class_name)
    ids, mask = tiny_batch(model_type, batch=2, seq=7)
    foil = torch.full((2, 6), 11)
    for kwargs in ({}, {"foil": foil}):
        explained = explain_positions(model, ids, mask, chunk_size=5, **kwargs)
        assert explained.contributions.shape == (2, 6, 7)
        assert explained.completeness_error().max() < 1e-6
        logits = model_logits(model, ids, mask)
        for row in range(2):
            for step in range(6):
                if mask[row, step] == 0:  # a padding position: nothing to explain
                    assert explained.logit[row, step] == 0 and torch.all(explained.contributions[row, step] == 0)
                    continue
                expected = logits[row, step, ids[row, step + 1]] - (logits[row, step, 11] if kwargs else 0)
                torch.testing.assert_close(explained.logit[row, step], expected)
                assert torch.all(explained.contributions[row, step, step + 1:] == 0)  # the future cannot contribute
        assert torch.all(explained.contributions[mask[:, None, :].expand_as(explained.contributions) == 0] == 0)


def test_one_position_equals_bcos_explain_and_bad_positions_are_refused():
    model = bcos_decoder("gpt2", "GPT2LMHeadModel")
    ids, mask = tiny_batch("gpt2", batch=2, seq=7)
    explained = explain_positions(model, ids, mask, positions=[-1], target=torch.tensor([[5], [6]]),
                                  foil=torch.tensor([[7], [8]]))
    single = bcos.explain(model, ids, mask, target=torch.tensor([5, 6]), foil=torch.tensor([7, 8]))
    torch.testing.assert_close(explained.contributions[:, 0], single.contributions)
    with pytest.raises(ValueError, match="every position must be before the last index"):
        explain_positions(model, ids, mask, positions=[6])
    with pytest.raises(ValueError, match=r"indices into the 7 tokens"):
        explain_positions(model, ids, mask, positions=[9])
    with pytest.raises(ValueError, match=r"target must have shape \[batch, steps\]=\[2, 1\]"):
        explain_positions(model, ids, mask, positions=[2], target=torch.tensor([5, 6]))


@pytest.mark.parametrize("model_type,class_name", DECODERS)
def test_generation_explains_every_generated_token(model_type, class_name):
    model = bcos_decoder(model_type, class_name)
    ids, mask = tiny_batch(model_type, batch=3, seq=6)  # left padded
    reference = copy.deepcopy(model)
    out = generate_explained(model, ids, mask, max_new_tokens=4, eos_token_id=-1)  # -1: never stops
    assert out.input_ids.shape == (3, 10) and out.contributions.shape == (3, 4, 10)
    assert out.completeness_error().max() < 1e-6
    # greedy: every generated token is the arg-max of the model's logits on the sequence before it
    logits = model_logits(reference, out.input_ids, out.attention_mask)
    for step in range(4):
        position = 5 + step
        assert torch.equal(out.target[:, step], logits[:, position].argmax(-1))
        torch.testing.assert_close(out.logit[:, step], logits[:, position].max(-1).values)
        assert torch.all(out.contributions[:, step, position + 1:] == 0)
    assert torch.equal(out.input_ids[:, 6:], out.target)


def test_generation_stops_rows_at_eos_and_pads_them():
    model = bcos_decoder("gpt2", "GPT2LMHeadModel")
    ids, mask = tiny_batch("gpt2", batch=3, seq=6)
    free = generate_explained(model, ids, mask, max_new_tokens=3, eos_token_id=-1)
    eos = int(free.target[0, 0])  # row 0 stops after its first token
    out = generate_explained(model, ids, mask, max_new_tokens=3, eos_token_id=eos, pad_token_id=0)
    # not vacuous: row 1 does not emit EOS before the last step, so generation runs all 3 steps
    assert eos not in free.target[1, :2].tolist() and torch.equal(out.target[1], free.target[1])
    assert out.target.shape == (3, 3) and out.contributions.shape[:2] == (3, 3)
    assert out.target[0, 0] == eos and torch.all(out.target[0, 1:] == 0)
    assert torch.all(out.attention_mask[0, 7:] == 0) and torch.all(out.contributions[0, 1:] == 0)
    assert out.completeness_error()[out.attention_mask[:, 6:] == 1].max() < 1e-6
    with pytest.raises(ValueError, match="pad the prompts on the left"):
        generate_explained(model, *tiny_batch("bert", batch=3, seq=6))


@pytest.mark.parametrize("name", ["bcos", "input_x_gradient", "integrated_gradients", "occlusion",
                                  "shapley_sampling"])
def test_contrastive_posthoc_scores_are_the_difference_of_two_explanations(name):
    """Every method here is linear in the explained function: explaining target - foil equals the difference of
    the explanations of target and of foil (sampling methods with the same seed)."""
    model = bcos_decoder("llama", "LlamaForCausalLM")
    ids, mask = tiny_batch("llama")
    params = {"n_steps": 8} if name == "integrated_gradients" else {"n_samples": 5} if name == "shapley_sampling" \
        else {}
    explainer = get_explainer(name, model, (1, 2), **params)
    target, foil = torch.tensor([5, 6, 7]), torch.tensor([11, 12, 13])
    contrast = explainer.attribute(ids, mask, target, foil)
    difference = explainer.attribute(ids, mask, target).scores - explainer.attribute(ids, mask, foil).scores
    torch.testing.assert_close(contrast.scores, difference, rtol=1e-6, atol=1e-9)
    assert torch.equal(contrast.foil, foil) and contrast.scores.abs().sum() > 0


@pytest.mark.integration
def test_smollm2_contrastive_explanations_at_every_position_and_generation_are_complete():
    model = bcos.bcosify(bcos.load_model("HuggingFaceTB/SmolLM2-135M-Instruct", task="causal-lm").eval(), b=1.1)
    tokenizer = bcos.load_tokenizer("HuggingFaceTB/SmolLM2-135M-Instruct", padding_side="left")
    batch = tokenizer(["The keys to the cabinet", "Mary gave John a book"], padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    steps = ids.shape[1] - 1
    the = tokenizer(" the")["input_ids"][0]
    contrast = explain_positions(model, ids, mask, foil=torch.full((2, steps), the))
    assert contrast.completeness_error().max() <= 1e-3
    out = generate_explained(model, ids, mask, max_new_tokens=3)
    assert out.completeness_error()[out.target != tokenizer.pad_token_id].max() <= 1e-3
