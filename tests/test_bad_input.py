"""Bad input to the library and the command lines: each is refused with an error that names the input, says what is
wrong and what to do, before any work is done (issue 15)."""
from __future__ import annotations

import copy
import logging
import re

import pytest
import torch

import bcos
from bcos.explain import get_explainer
from tiny_models import tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bert() -> torch.nn.Module:
    return tiny_model("bert", "BertForSequenceClassification", num_labels=3)


@pytest.fixture(scope="module")
def bcos_bert(bert) -> torch.nn.Module:
    return bcos.bcosify(copy.deepcopy(bert), b=1.5)


@pytest.mark.parametrize("options,message", [
    ({"b": float("nan")}, "b must be a finite number >= 1 (B=1 is a plain linear layer; the paper uses B=2), got nan"),
    ({"b": 0}, "b must be a finite number >= 1 (B=1 is a plain linear layer; the paper uses B=2), got 0"),
    ({"b": -1.0}, "b must be a finite number >= 1 (B=1 is a plain linear layer; the paper uses B=2), got -1.0"),
    ({"layer_b": {"*.output.dense": float("inf")}}, "layer_b['*.output.dense'] must be a finite number >= 1 (B=1 is "
     "a plain linear layer; the paper uses B=2), got inf"),
    ({"eps": 0.0}, "eps must be a finite number > 0, got 0.0"),
])
def test_bcosify_refuses_a_b_that_is_not_a_finite_number_of_at_least_one(bert, options, message):
    model = copy.deepcopy(bert)
    with pytest.raises(ValueError) as error:
        bcos.bcosify(model, **options)
    assert str(error.value) == message
    assert getattr(model.config, "bcos", None) is None  # nothing converted
    with pytest.raises(ValueError, match=re.escape(message)):
        bcos.BcosAnnealing(copy.deepcopy(bert), steps=10, **options)


def test_a_layer_b_pattern_that_matches_no_layer_is_refused_before_converting(bert):
    model = copy.deepcopy(bert)
    with pytest.raises(ValueError) as error:
        bcos.bcosify(model, layer_b={"*.output.dense": 1.0, "encoder.layer.*": 2.0})
    assert str(error.value) == (
        "layer_b pattern 'encoder.layer.*' matches none of the model's 8 B-cos layers (e.g. "
        "bert.encoder.layer.0.attention.output.dense, bert.encoder.layer.0.intermediate.dense, "
        "bert.encoder.layer.0.output.dense, bert.pooler.dense, classifier); patterns are fnmatch patterns over full "
        "module names, e.g. '*.attention.*' or 'bert.encoder.layer.0.*'")
    assert not any(isinstance(m, bcos.nn.BcosLinear) for m in model.modules())  # the model is left as it was
    with pytest.raises(ValueError, match="layer_b pattern 'encoder.layer.\\*' matches none"):
        bcos.BcosAnnealing(copy.deepcopy(bert), steps=10, layer_b={"encoder.layer.*": 2.0})
    # a pattern over the parts of a fused projection matches (Phi-3's gate_up_proj becomes gate and up)
    phi3 = bcos.bcosify(tiny_model("phi3", "Phi3ForCausalLM"), layer_b={"*.mlp.gate_up_proj.up": 1.0})
    ups = [m for name, m in phi3.named_modules() if name.endswith("gate_up_proj.up")]
    assert ups and all(m.b == 1.0 for m in ups)


@pytest.mark.parametrize("target,message", [
    (-1, "target [-1, -1, -1] is negative; give class indices counted from 0 (negative indices do not count from the "
     "end)"),
    (3, "target [3, 3, 3] is outside the model's 3 classes (0..2)"),
    (1.7, "target must be an integer class index, got 1.7"),
    (torch.tensor([0.0, 1.0, 2.0]), "target must hold integer class indices, got a torch.float32 tensor"),
    (torch.tensor([0, 1]), "target must be an int or a tensor of shape [batch]=[3], got shape (2,)"),
])
def test_explain_refuses_targets_that_are_not_class_indices(bcos_bert, target, message):
    ids, mask = tiny_batch("bert")
    with pytest.raises(ValueError) as error:
        bcos.explain(bcos_bert, ids, mask, target=target)
    assert str(error.value) == message
    with pytest.raises(ValueError) as error:
        bcos.explain(bcos_bert, ids, mask, target=0, foil=target)
    assert str(error.value) == message.replace("target", "foil")


def test_explainers_refuse_targets_that_are_not_class_indices(bert):
    ids, mask = tiny_batch("bert")
    explainer = get_explainer("input_x_gradient", bert)
    for target, message in [(-1, "target [-1, -1, -1] is negative"), (1.7, "target must be an integer class index")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            explainer.attribute(ids, mask, target)


def test_explain_refuses_an_empty_batch_and_an_all_padding_row(bcos_bert, bert):
    ids, mask = tiny_batch("bert")
    with pytest.raises(ValueError) as error:
        bcos.explain(bcos_bert, ids[:0], mask[:0])
    assert str(error.value) == ("input_ids must be a non-empty [batch, seq] tensor, got shape (0, 9); give at least "
                                "one tokenized text")
    padded = mask.clone()
    padded[1] = 0
    with pytest.raises(ValueError) as error:
        bcos.explain(bcos_bert, ids, padded)
    assert str(error.value) == ("row(s) [1] of the batch are all padding (attention_mask all 0): there is no token to "
                                "explain; drop those rows")
    with pytest.raises(ValueError, match=re.escape("row(s) [1] of the batch are all padding")):
        get_explainer("input_x_gradient", bert).attribute(ids, padded)
    decoder = bcos.bcosify(tiny_model("llama", "LlamaForCausalLM"))
    ids, mask = tiny_batch("llama")
    mask[2] = 0
    with pytest.raises(ValueError, match=re.escape("row(s) [2] of the batch are all padding")):
        bcos.explain(decoder, ids, mask)


def test_explain_refuses_a_model_that_is_not_bcosified(bert):
    ids, mask = tiny_batch("bert")
    with pytest.raises(ValueError) as error:
        bcos.explain(bert, ids, mask)
    assert str(error.value) == (
        "BertForSequenceClassification is not a B-cos model (model.config.bcos is not set), so its logits are not "
        "sums of token contributions. Convert it with bcos.bcosify(model) (and fine-tune), or explain it with a "
        "post-hoc method, e.g. bcos.explain.get_explainer('integrated_gradients', model, tokenizer)")
    # the way out the message names works, and the valid calls still give complete explanations
    assert get_explainer("integrated_gradients", bert, n_steps=4).attribute(ids, mask).scores.shape == ids.shape
    explanation = bcos.explain(bcos.bcosify(copy.deepcopy(bert).double()), ids, mask, target=2)
    assert explanation.target.tolist() == [2, 2, 2]
    assert float(explanation.completeness_error().max()) < 1e-9


MINILM = "sentence-transformers/all-MiniLM-L6-v2"


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_freshly_added_head_loads_without_an_alarming_report(tmp_path):
    logged = _Messages()
    logging.getLogger("transformers").addHandler(logged)  # where transformers logs (it does not propagate)
    try:
        model = bcos.load_model(MINILM, num_labels=2)  # a base checkpoint: the classifier is new
        assert model.config.num_labels == 2 and not any("LOAD REPORT" in m for m in logged.messages)
        # anything else is still reported: a masked-LM head missing from a classifier checkpoint, unused keys
        model.save_pretrained(tmp_path / "classifier")
        bcos.load_model(str(tmp_path / "classifier"), task="masked-lm")
    finally:
        logging.getLogger("transformers").removeHandler(logged)
    (report,) = [m for m in logged.messages if "LOAD REPORT" in m]
    assert "BertForMaskedLM" in report and "classifier.weight" in report and "UNEXPECTED" in report


def test_a_head_of_another_size_is_a_clear_error(tmp_path):
    tiny_model("bert", "BertForSequenceClassification", num_labels=2).save_pretrained(tmp_path)
    with pytest.raises(ValueError) as error:
        bcos.load_model(str(tmp_path), num_labels=3)
    assert str(error.value) == (
        f"{tmp_path} has a classification head for 2 classes, but the model is built for 3 (num_labels, from the "
        "data's labels): fine-tune a model whose head has 3 classes or a base model without a head, or check the "
        "labels of the data")
