"""The packaged real models: MiniLM (BERT) and SmolLM2-135M (Llama), float32."""
import copy

import pytest
import torch

import bcos

pytestmark = pytest.mark.integration

SENTENCES = ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat , sadly .",
             "fine."]


@pytest.fixture(scope="module")
def minilm():
    model = bcos.load_model("sentence-transformers/all-MiniLM-L6-v2", num_labels=2).eval()
    tokenizer = bcos.load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")  # right padding
    return model, batch


@pytest.fixture(scope="module")
def smollm2():
    model = bcos.load_model("HuggingFaceTB/SmolLM2-135M-Instruct", task="causal-lm").eval()
    tokenizer = bcos.load_tokenizer("HuggingFaceTB/SmolLM2-135M-Instruct", padding_side="left")
    prompts = ["The capital of France is", "When Mary and John went to the store, John gave a drink to",
               "The keys to the cabinet"]
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    return model, tokenizer, batch


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def test_minilm_surgery_is_exact_on_a_padded_batch(minilm):
    model, batch = minilm
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        reference = model(**batch).logits
        converted = bcos.bcosify(copy.deepcopy(model), b=1.0, remove_biases=False, normalize_weights=False,
                                 keep_head_activations=True)
        assert relative_error(converted(**batch).logits, reference) <= 1e-5


def test_minilm_explanations_are_complete(minilm):
    model, batch = minilm
    model = bcos.bcosify(copy.deepcopy(model), b=2.0)
    predicted = bcos.explain(model, **batch)
    other = bcos.explain(model, **batch, target=1 - predicted.prediction)
    for explanation in (predicted, other):
        assert explanation.completeness_error().max() <= 1e-3
        assert torch.all(explanation.contributions[batch["attention_mask"] == 0] == 0)


def test_smollm2_surgery_is_exact_on_a_left_padded_batch(smollm2):
    model, _, batch = smollm2
    assert (batch["attention_mask"][:, 0] == 0).any()
    positions = (batch["attention_mask"].cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        reference = model(**batch, position_ids=positions).logits
        converted = bcos.bcosify(copy.deepcopy(model), b=1.0, remove_biases=False, normalize_weights=False)
        actual = converted(**batch, position_ids=positions).logits
    real = batch["attention_mask"].bool()
    assert relative_error(actual[real], reference[real]) <= 1e-5


def test_smollm2_next_token_and_contrastive_explanations_are_complete(smollm2):
    model, tokenizer, batch = smollm2
    model = bcos.bcosify(copy.deepcopy(model), b=1.1)
    next_token = bcos.explain(model, **batch)
    assert next_token.completeness_error().max() <= 1e-3
    other = bcos.explain(model, **batch, target=tokenizer.convert_tokens_to_ids("Ġthe"))
    assert other.completeness_error().max() <= 1e-3
    mary, john = (tokenizer(" Mary")["input_ids"][0], tokenizer(" John")["input_ids"][0])
    contrast = bcos.explain(model, **batch, target=mary, foil=john)
    assert contrast.completeness_error().max() <= 1e-3
    assert torch.all(contrast.contributions[batch["attention_mask"] == 0] == 0)


def test_bcos_smollm2_saves_and_reloads_with_identical_logits(smollm2, tmp_path):
    model, _, batch = smollm2
    converted = bcos.bcosify(copy.deepcopy(model), b=1.1, normalize_weights=False)
    converted.save_pretrained(tmp_path)  # refused while transformers' GGUF quantizer stays on the loaded model
    reloaded = bcos.load_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, converted(**batch).logits)
