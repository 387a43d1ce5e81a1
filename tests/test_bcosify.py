"""bcosify on tiny random models of every supported architecture and head."""
import re

import pytest
import torch
import transformers
from torch import nn
from transformers.masking_utils import AttentionMaskInterface
from transformers.pytorch_utils import Conv1D

import bcos
from bcos.convert import ADAPTERS, transformer_blocks
from bcos.nn import BCOS_ATTENTION, BcosLinear
from tiny_models import ARCHITECTURES, tiny_batch, tiny_model


def model_output(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The head's logits, or the last hidden state of base models; padding positions left out."""
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    values = out.logits if hasattr(out, "logits") else out.last_hidden_state
    return values[mask.bool()] if values.dim() == 3 else values


@pytest.mark.parametrize("model_type,class_name", ARCHITECTURES)
def test_surgery_with_b1_and_everything_kept_reproduces_the_original_on_padded_batches(model_type, class_name):
    model = tiny_model(model_type, class_name)
    ids, mask = tiny_batch(model_type)
    reference = model_output(model, ids, mask)
    bcos.bcosify(model, b=1.0, remove_biases=False, normalize_weights=False, keep_head_activations=True)
    assert model.config._attn_implementation == BCOS_ATTENTION
    assert sum(isinstance(m, BcosLinear) for m in model.modules()) >= 4
    torch.testing.assert_close(model_output(model, ids, mask), reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("model_type,class_name", [("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM")])
def test_the_padding_check_would_catch_a_bcos_attention_registered_without_its_mask(model_type, class_name,
                                                                                   monkeypatch):
    model = tiny_model(model_type, class_name)
    ids, mask = tiny_batch(model_type)
    reference = model_output(model, ids, mask)
    bcos.bcosify(model, b=1.0, remove_biases=False, normalize_weights=False, keep_head_activations=True)
    monkeypatch.delitem(AttentionMaskInterface._global_mapping, BCOS_ATTENTION)
    assert (model_output(model, ids, mask) - reference).abs().max() > 1e-3


@pytest.mark.parametrize("model_type,class_name", ARCHITECTURES)
def test_default_conversion_leaves_no_bias_anywhere(model_type, class_name):
    model = bcos.bcosify(tiny_model(model_type, class_name))
    assert [name for name, _ in model.named_parameters() if name.endswith("bias")] == []
    for name, module in model.named_modules():
        assert not isinstance(module, (Conv1D, nn.LayerNorm)), name
        assert getattr(module, "bias", None) is None, name
    # functionally: a zero input to the first block gives exactly zero output (no bias computed anywhere)
    handle = transformer_blocks(model, ADAPTERS[model_type])[0].register_forward_pre_hook(
        lambda module, args, kwargs: ((torch.zeros_like(args[0]),) + args[1:], kwargs) if args
        else (args, {**kwargs, "hidden_states": torch.zeros_like(kwargs["hidden_states"])}), with_kwargs=True)
    ids, mask = tiny_batch(model_type)
    assert model_output(model, ids, mask).abs().max() == 0
    handle.remove()
    assert model_output(model, ids, mask).abs().max() > 0


def test_report_lists_every_replacement():
    model = bcos.bcosify(tiny_model("bert", "BertForSequenceClassification"))
    counts = model.bcos_report.counts()
    # 2 layers x (attention output, intermediate, output) + pooler + classifier
    assert counts["BcosLinear"] == 8
    assert counts["BcosLayerNorm"] == 2 * 2 + 1
    assert counts["GatedActivation"] == 2
    assert counts["Identity"] == 1  # pooler tanh
    text = str(model.bcos_report)
    assert re.search(r"\n  bert\.pooler\.activation +Tanh  ->  Identity\n", text)
    assert "totals: BcosLayerNorm x5, BcosLinear x8, GatedActivation x2, Identity x1, Linear x6" in text


def test_per_layer_b_and_head_activation_switch():
    model = bcos.bcosify(tiny_model("bert", "BertForSequenceClassification"), b=2.0,
                         layer_b={"classifier": 1.0, "*.layer.1.*": 1.5}, keep_head_activations=True)
    assert model.classifier.b == 1.0
    assert model.bert.encoder.layer[1].output.dense.b == 1.5
    assert model.bert.encoder.layer[0].output.dense.b == 2.0
    assert isinstance(model.bert.pooler.activation, nn.Tanh)
    assert isinstance(bcos.bcosify(tiny_model("bert", "BertModel")).pooler.activation, nn.Identity)


def test_head_activations_are_removed_for_roberta_and_distilbert():
    """With the head nonlinearity gone, the head is linear in the pooled features given fixed B-cos scales:
    with b=1 and raw weights the logits equal out_proj(dense(h)) exactly."""
    for model_type, class_name in (("roberta", "RobertaForSequenceClassification"),
                                   ("distilbert", "DistilBertForSequenceClassification")):
        model = bcos.bcosify(tiny_model(model_type, class_name), b=1.0, normalize_weights=False)
        ids, mask = tiny_batch(model_type)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            first = out.hidden_states[-1][:, 0]
            if model_type == "roberta":
                expected = model.classifier.out_proj(model.classifier.dense(first))
            else:
                expected = model.classifier(model.pre_classifier(first))
        torch.testing.assert_close(out.logits, expected, rtol=0, atol=1e-6)


def test_unsupported_architecture_is_refused_with_the_supported_list():
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=20)
    with pytest.raises(ValueError, match=r"bcosify does not support BertForQuestionAnswering \(model_type='bert'\)\. "
                                         r"Supported architectures: BertModel, BertForSequenceClassification, "
                                         r"BertForMaskedLM, RobertaModel"):
        bcos.bcosify(transformers.BertForQuestionAnswering(config))
    t5 = transformers.T5Config(vocab_size=50, d_model=16, num_layers=1, num_heads=2, d_ff=20, d_kv=8)
    with pytest.raises(ValueError, match=r"T5ForConditionalGeneration \(model_type='t5'\).*LlamaForSequenceClassification, "
                                         r"Qwen2Model.*MistralForCausalLM.*Qwen3Model.*GemmaForCausalLM.*Gemma2Model.*"
                                         r"Gemma3ForCausalLM.*Phi3ForSequenceClassification, ModernBertModel, "
                                         r"ModernBertForSequenceClassification, ModernBertForMaskedLM\.$"):
        bcos.bcosify(transformers.T5ForConditionalGeneration(t5))


def test_converting_twice_is_refused():
    model = bcos.bcosify(tiny_model("gpt2", "GPT2LMHeadModel"))
    with pytest.raises(ValueError, match="already a B-cos model"):
        bcos.bcosify(model)


def test_tied_lm_head_stays_tied():
    model = bcos.bcosify(tiny_model("gpt2", "GPT2LMHeadModel"))
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_a_few_optimizer_steps_reduce_the_bce_loss(model_type):
    class_name = "BertForSequenceClassification" if model_type == "bert" else "LlamaForSequenceClassification"
    model = bcos.bcosify(tiny_model(model_type, class_name, num_labels=2), b=2.0).train()
    ids, mask = tiny_batch(model_type, batch=8, seed=3)
    labels = torch.nn.functional.one_hot(torch.arange(8) % 2, 2).float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("model_type,class_name", [a for a in ARCHITECTURES if not a[1].endswith("Model")
                                                   or a[1] == "GPT2LMHeadModel"])
def test_save_and_load_round_trip_is_bit_identical(model_type, class_name, tmp_path):
    model = bcos.bcosify(tiny_model(model_type, class_name), b=1.5, layer_b={"*.0.*": 2.5})
    ids, mask = tiny_batch(model_type)
    model.save_pretrained(tmp_path)
    reloaded = bcos.load_pretrained(tmp_path)
    assert type(reloaded).__name__ == class_name
    assert str(reloaded.bcos_report) == str(model.bcos_report)
    assert torch.equal(model_output(reloaded, ids, mask), model_output(model, ids, mask))
    assert reloaded.config._attn_implementation == BCOS_ATTENTION


def test_loading_a_conventional_folder_as_bcos_is_refused(tmp_path):
    tiny_model("bert", "BertForSequenceClassification").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a conventional model .* convert it with bcos.bcosify"):
        bcos.load_pretrained(tmp_path)
