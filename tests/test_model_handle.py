"""The model handle (``bcos.Model``) and its one loader (``bcos.load``): the kind of every model family, post-hoc
explainers on decoders without a B-cos adapter, one meaning of ``probabilities`` across the explain command, the
evaluation, ``predict_step`` and the export, and checkpoints read as plain tensors without Lightning."""
from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

import bcos
from bcos.cli.evaluate import load_models
from bcos.cli.explain import main as explain_main
from bcos.explain import EXPLAINERS, get_explainer
from bcos.kinds import model_class
from lightning_modules import export_module
from test_faithfulness_callback import train_tiny
from test_training import make_tiny_model, write_tiny_data
from tiny_models import ARCHITECTURES, UNADAPTED_DECODERS, tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["a good film today", "a dull film"]


def expected_kind(class_name: str) -> str | None:
    """The kind a transformers class name announces (an independent reading of the naming convention)."""
    for suffix, kind in (("ForSequenceClassification", "sequence-classification"), ("ForMaskedLM", "masked-lm"),
                         ("ForCausalLM", "causal-lm"), ("LMHeadModel", "causal-lm")):
        if class_name.endswith(suffix):
            return kind
    return None


@pytest.mark.parametrize("model_type,class_name", ARCHITECTURES + UNADAPTED_DECODERS)
def test_the_handle_knows_the_kind_of_every_family(model_type, class_name):
    model = tiny_model(model_type, class_name)
    kind = expected_kind(class_name)
    if kind is None:  # a base model has no head: nothing to predict with
        with pytest.raises(ValueError, match=f"^{class_name} is not a sequence classifier, masked LM or causal LM"):
            bcos.Model(model, tokenizer=None)
    else:
        assert bcos.Model(model, tokenizer=None).kind == kind


@pytest.mark.parametrize("model_type,class_name", UNADAPTED_DECODERS)
def test_a_saved_decoder_without_a_bcos_adapter_loads_as_a_causal_lm(model_type, class_name, tmp_path):
    with pytest.raises(ValueError, match=f"bcosify does not support {class_name}"):
        bcos.bcosify(tiny_model(model_type, class_name))
    model = tiny_model(model_type, class_name)
    model.save_pretrained(tmp_path)
    bcos.load_tokenizer("HuggingFaceTB/SmolLM2-135M-Instruct").save_pretrained(tmp_path)
    handle = bcos.load(tmp_path)
    assert (handle.kind, type(handle.model).__name__, handle.is_bcos) == ("causal-lm", class_name, False)
    assert handle.tokenizer.truncation_side == "left"  # a long prompt keeps its end
    ids, mask = tiny_batch(model_type)
    torch.testing.assert_close(handle.model(input_ids=ids, attention_mask=mask).logits,
                               model(input_ids=ids, attention_mask=mask).logits)


DETERMINISTIC = ["integrated_gradients", "input_x_gradient", "saliency", "occlusion"]
SAMPLING = {"kernel_shap": {"n_samples": 20}, "shapley_sampling": {"n_samples": 2}, "lime": {"n_samples": 20}}


@pytest.mark.parametrize("model_type,class_name", UNADAPTED_DECODERS)
def test_post_hoc_explainers_explain_a_decoder_without_a_bcos_adapter(model_type, class_name):
    """Every post-hoc method runs; a left-padded row is explained as if alone (position ids over real tokens, the
    next-token logit at the last real token) and the default target is the predicted next token."""
    assert set(DETERMINISTIC) | set(SAMPLING) | {"attention"} == set(EXPLAINERS) - {"bcos"}
    model = tiny_model(model_type, class_name, dtype=torch.float64)
    ids, mask = tiny_batch(model_type)
    real = mask[2].bool()
    with torch.no_grad():
        alone_logits = model(input_ids=ids[2:3, real]).logits[0, -1]
    for name in [*DETERMINISTIC, *SAMPLING]:
        explainer = get_explainer(name, model, [model.config.pad_token_id], **SAMPLING.get(name, {}))
        batched = explainer.attribute(ids, mask)
        assert int(batched.target[2]) == int(alone_logits.argmax()), name
        assert torch.isfinite(batched.scores).all() and torch.all(batched.scores[mask == 0] == 0), name
        if name in DETERMINISTIC:
            alone = explainer.attribute(ids[2:3, real], mask[2:3, real], batched.target[2:3])
            torch.testing.assert_close(batched.scores[2, real], alone.scores[0], rtol=1e-6, atol=1e-8, msg=name)
    # eager attention (the one that returns probabilities) gives NaN on left padding in these families (Llama too)
    attention = get_explainer("attention", model).attribute(ids[:1], mask[:1]).scores
    torch.testing.assert_close(attention.sum(-1), torch.ones(1, dtype=attention.dtype))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A tiny B-cos classifier trained with BCE (link: sigmoid), saved as a Lightning checkpoint and exported."""
    root = tmp_path_factory.mktemp("handle")
    data = write_tiny_data(root / "data", {"train": 16, "validation": 4})
    base = make_tiny_model(root / "base")
    module = train_tiny(base, data, root / "cache", steps=4)
    module.trainer.save_checkpoint(root / "bcos.ckpt")
    tokenizer = bcos.load_tokenizer(str(base))
    return {"module": module, "tokenizer": tokenizer, "ckpt": root / "bcos.ckpt",
            "export": export_module(module, tokenizer, root / "export")}


def test_probabilities_mean_one_thing_everywhere(trained, tmp_path):
    module, tokenizer = trained["module"], trained["tokenizer"]
    assert module.link == "sigmoid" and module.loss_name == "bce"
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        logits = module.model(input_ids=ids, attention_mask=mask).logits
        reference = torch.sigmoid(logits.double() * float(module.logit_scale)).float()
        predicted = module.predict_step({"input_ids": ids, "attention_mask": mask}, 0)["probabilities"]
    torch.testing.assert_close(predicted, reference)
    args = argparse.Namespace(bcos=str(trained["ckpt"]), conventional=None, bcos_logit_scale=None,
                              conventional_logit_scale=None, device="cpu")
    handles = {"checkpoint": bcos.load(trained["ckpt"]), "export": bcos.load(trained["export"]),
               "evaluation": load_models(args)["bcos"]}
    for source, handle in handles.items():
        assert (handle.link, handle.logit_scale) == ("sigmoid", pytest.approx(float(module.logit_scale))), source
        torch.testing.assert_close(handle.predict_proba(ids, mask), reference, msg=source)
    record = explain_main(["--model", str(trained["export"]), "--text", TEXTS[0], "--methods", "saliency",
                           "--out", str(tmp_path / "heatmap.html")])
    shown = record["inputs"][0]["probabilities"]
    names = module.model.config.id2label
    single = tokenizer(TEXTS[0], return_tensors="pt")
    with torch.no_grad():
        alone = module.predict_step(dict(single), 0)["probabilities"][0]
    assert record["link_function"] == "sigmoid"
    assert shown == pytest.approx({names[i]: float(p) for i, p in enumerate(alone)}, rel=1e-6)


def test_a_checkpoint_loads_without_lightning_and_runs_no_code(trained, tmp_path):
    code = (f"import sys, bcos; handle = bcos.load({str(trained['ckpt'])!r}); "
            "print(handle.kind, sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning',"
            " 'lightning_modules')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parents[1])
    assert done.stdout.split("\n")[-2] == "sequence-classification []"
    checkpoint = torch.load(trained["ckpt"], weights_only=True)
    checkpoint["hyper_parameters"]["model_name_or_path"] = argparse.Namespace(path="x")  # not a plain literal
    torch.save(checkpoint, tmp_path / "unsafe.ckpt")
    with pytest.raises(bcos.ModelFileError) as error:
        bcos.load(tmp_path / "unsafe.ckpt")
    assert str(error.value) == (
        f"{tmp_path / 'unsafe.ckpt'} cannot be read: it holds a argparse.Namespace object, not only tensors and Python "
        "literals. Checkpoints are read with weights_only=True, so that loading one runs no code: give a checkpoint "
        "written by this project's training, or the run's hf_export/ folder")
    assert isinstance(error.value.__cause__, pickle.UnpicklingError)


def test_a_saved_architecture_must_be_a_model_class(tmp_path):
    bcos.bcosify(tiny_model("bert", "BertForSequenceClassification")).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["bcos"]["architecture"] = "AutoTokenizer"  # a class of transformers, but not a model
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as error:
        bcos.load_pretrained(tmp_path)
    assert str(error.value) == ("'AutoTokenizer' is not a transformers model class; a saved model's architecture "
                                "must name one, e.g. 'BertForSequenceClassification' or 'LlamaForCausalLM'")
    assert model_class("Qwen2ForCausalLM") is transformers.Qwen2ForCausalLM


def test_the_kind_must_be_known_or_given(tmp_path):
    tiny_model("bert", "BertModel").save_pretrained(tmp_path)
    with pytest.raises(ValueError) as error:
        bcos.load(tmp_path)
    assert str(error.value) == (f"cannot tell what kind of model {tmp_path} is (its config names the architecture "
                                "['BertModel']); pass kind= one of sequence-classification, causal-lm, masked-lm")
