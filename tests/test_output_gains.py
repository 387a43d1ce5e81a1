"""Output gains of the B-cos layers (bcosify(output_gains=True), bcos.calibrate_output_gains) and their use in
SequenceClassifier: each gained layer's output has the RMS of the plain linear map on the same input, explanations
stay exact, exports keep the gains."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import bcos
from bcos.convert import gain_layers
from lightning_modules import SequenceClassifier, export_hf
from test_bcosify import model_output
from test_training import datamodule, tiny  # noqa: F401  (fixture)
from tiny_models import ARCHITECTURES, tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def layer_inputs_and_outputs(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor
                             ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``(input, output)`` of every gained layer in one forward pass."""
    seen, handles = {}, []
    for name, layer in gain_layers(model).items():
        handles.append(layer.register_forward_hook(
            lambda module, inputs, output, name=name: seen.__setitem__(name, (inputs[0], output))))
    model_output(model, ids, mask)
    for handle in handles:
        handle.remove()
    return seen


def rms(tensor: torch.Tensor) -> float:
    return tensor.double().square().mean().sqrt().item()


@pytest.mark.parametrize("model_type,class_name", ARCHITECTURES)
def test_each_gained_layer_has_the_rms_of_the_plain_linear_map_and_explanations_stay_exact(model_type, class_name):
    model = bcos.bcosify(tiny_model(model_type, class_name), b=2.0, output_gains=True)
    ids, mask = tiny_batch(model_type)
    before = model_output(model, ids, mask)
    assert all(layer.output_gain.item() == 1.0 for layer in gain_layers(model).values())  # 1 until calibrated
    gains = bcos.calibrate_output_gains(model, lambda: model(input_ids=ids, attention_mask=mask))
    assert set(gains) == set(gain_layers(model)) and len(gains) > 0
    for name, (x, out) in layer_inputs_and_outputs(model, ids, mask).items():
        assert rms(out) == pytest.approx(rms(F.linear(x, gain_layers(model)[name].weight)), rel=1e-5), name
    assert not torch.allclose(model_output(model, ids, mask), before)
    report = bcos.verify(model)
    assert report.complete, report


def test_gains_survive_export_and_reload(tmp_path):
    model = bcos.bcosify(tiny_model("bert", "BertForSequenceClassification"), b=1.5, output_gains=True)
    ids, mask = tiny_batch("bert")
    gains = bcos.calibrate_output_gains(model, lambda: model(input_ids=ids, attention_mask=mask))
    model.save_pretrained(tmp_path)
    reloaded = bcos.load_pretrained(tmp_path)
    assert {name: layer.output_gain.item() for name, layer in gain_layers(reloaded).items()} == pytest.approx(gains)
    torch.testing.assert_close(model_output(reloaded, ids, mask), model_output(model, ids, mask))


def test_calibration_refuses_a_model_without_gains_and_a_pass_that_misses_layers():
    plain = bcos.bcosify(tiny_model("bert", "BertForSequenceClassification"), b=1.5)
    with pytest.raises(ValueError, match=r"no B-cos layer with an output gain: convert it with "
                                         r"bcosify\(model, \.\.\., output_gains=True\)"):
        bcos.calibrate_output_gains(plain, lambda: None)
    gained = bcos.bcosify(tiny_model("bert", "BertForSequenceClassification"), b=1.5, output_gains=True)
    ids, mask = tiny_batch("bert")
    encoder_only = lambda: gained.bert.embeddings(input_ids=ids)  # noqa: E731  (reaches no B-cos layer)
    with pytest.raises(ValueError, match=r"did not reach \d+ of the \d+ gain layers"):
        bcos.calibrate_output_gains(gained, encoder_only)


def test_sequence_classifier_sets_the_gains_once_then_the_logit_scale_on_the_gained_model(tiny):  # noqa: F811
    data = datamodule(tiny)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    module = SequenceClassifier(str(tiny["model"]), num_labels=2, b=1.5, output_gains=True)
    reference = bcos.bcosify(bcos.load_model(str(tiny["model"]), num_labels=2), b=1.5, output_gains=True)
    reference.load_state_dict(module.model.state_dict())  # the same fresh head
    reference.eval()
    expected = bcos.calibrate_output_gains(
        reference, lambda: reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))
    module.calibrate(batch)
    assert {name: layer.output_gain.item() for name, layer in gain_layers(module.model).items()} == \
        pytest.approx(expected, rel=1e-6)
    with torch.no_grad():
        logits = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert module.logit_scale.item() == pytest.approx(1 / rms(logits), rel=1e-5)
    module.calibrate(next(iter(data.val_dataloader())))  # set once: a later batch changes nothing
    assert {name: layer.output_gain.item() for name, layer in gain_layers(module.model).items()} == \
        pytest.approx(expected, rel=1e-6)
    assert bool(module.output_gains_calibrated) and "output_gains_calibrated" in module.state_dict()
    export = export_hf(module.model, bcos.load_tokenizer(str(tiny["model"])), tiny["cache"] / "gained_export")
    reloaded = bcos.load(export).model
    assert reloaded.config.bcos["output_gains"] is True
    torch.testing.assert_close(reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                               logits)


def test_sequence_classifier_refuses_gains_with_annealing_or_without_bcos(tiny):  # noqa: F811
    with pytest.raises(ValueError, match="output_gains and anneal_steps cannot be combined"):
        SequenceClassifier(str(tiny["model"]), num_labels=2, output_gains=True, anneal_steps=10)
    with pytest.raises(ValueError, match="output_gains applies to B-cos models only"):
        SequenceClassifier(str(tiny["model"]), num_labels=2, bcos=False, output_gains=True)


def test_calibrating_again_replaces_the_gains_and_kept_biases_are_not_scaled():
    model = bcos.bcosify(tiny_model("bert", "BertForSequenceClassification"), b=1.5, remove_biases=False,
                         output_gains=True)
    ids, mask = tiny_batch("bert")
    first = bcos.calibrate_output_gains(model, lambda: model(input_ids=ids, attention_mask=mask))
    other_ids, other_mask = tiny_batch("bert", seed=5)
    bcos.calibrate_output_gains(model, lambda: model(input_ids=other_ids, attention_mask=other_mask))
    again = bcos.calibrate_output_gains(model, lambda: model(input_ids=ids, attention_mask=mask))
    assert again == pytest.approx(first, rel=1e-5)  # the old gains are divided out
    for name, (x, out) in layer_inputs_and_outputs(model, ids, mask).items():
        layer = gain_layers(model)[name]
        core = out - layer.bias  # the gain scales the B-cos output, not the bias
        assert rms(core) == pytest.approx(rms(F.linear(x, layer.weight)), rel=1e-5), name


def test_an_annealing_model_has_no_gain_layers_and_prints():
    annealing = bcos.BcosAnnealing(tiny_model("bert", "BertForSequenceClassification"), steps=4, b=1.5)
    assert gain_layers(annealing.model) == {} and "progress=0.000" in repr(annealing.model)


def test_a_saved_bcos_model_keeps_its_gains_or_is_refused_without_them(tiny, tmp_path):  # noqa: F811
    gained = bcos.bcosify(bcos.load_model(str(tiny["model"]), num_labels=2), b=1.5, output_gains=True)
    ids, mask = tiny_batch("bert")
    gains = bcos.calibrate_output_gains(gained, lambda: gained(input_ids=ids, attention_mask=mask))
    gained.save_pretrained(tmp_path / "gained")
    bcos.load_tokenizer(str(tiny["model"])).save_pretrained(tmp_path / "gained")
    module = SequenceClassifier(str(tmp_path / "gained"), num_labels=2, b=1.5, output_gains=True)
    data = datamodule(tiny)
    data.setup()
    module.calibrate(next(iter(data.train_dataloader())))  # the trained gains stay
    assert {name: layer.output_gain.item() for name, layer in gain_layers(module.model).items()} == \
        pytest.approx(gains)
    plain = bcos.bcosify(bcos.load_model(str(tiny["model"]), num_labels=2), b=1.5)
    plain.save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="is a saved B-cos model without output gains, but output_gains=True"):
        SequenceClassifier(str(tmp_path / "plain"), num_labels=2, b=1.5, output_gains=True)


def test_gains_with_lora_are_refused(tiny):  # noqa: F811
    with pytest.raises(ValueError, match="output_gains and lora cannot be combined"):
        SequenceClassifier(str(tiny["model"]), num_labels=2, output_gains=True, lora={"r": 2})
