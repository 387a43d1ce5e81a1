"""The annealed conversion (bcos.BcosAnnealing) on every architecture, and its use in SequenceClassifier."""
from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch import nn

import bcos
from bcos.convert import annealing_progress
from bcos.nn import BcosLinear
from lightning_modules import SequenceClassifier, export_hf
from lightning_modules.optim import first_batch_log_scale
from test_bcosify import model_output
from test_training import datamodule, tiny  # noqa: F401  (fixture)
from tiny_models import ARCHITECTURES, tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")
TARGET = dict(b=1.5, layer_b={"*.1.*": 2.0})


def run_steps(annealing: bcos.BcosAnnealing, n: int) -> None:
    for _ in range(n):
        annealing.step()


@pytest.mark.parametrize("model_type,class_name", ARCHITECTURES)
def test_step_0_is_the_original_and_the_end_is_exactly_bcosify(model_type, class_name):
    model = tiny_model(model_type, class_name)
    ids, mask = tiny_batch(model_type)
    original = model_output(model, ids, mask)
    target = bcos.bcosify(copy.deepcopy(model), **TARGET)
    annealing = bcos.BcosAnnealing(model, steps=4, **TARGET)
    torch.testing.assert_close(model_output(model, ids, mask), original, rtol=0, atol=1e-6)
    run_steps(annealing, 2)
    assert annealing_progress(model) == 0.5
    halfway = model_output(model, ids, mask)
    assert not torch.allclose(halfway, original, atol=1e-3) and not torch.allclose(
        halfway, model_output(target, ids, mask), atol=1e-3)
    run_steps(annealing, 2)
    assert annealing.finished and annealing_progress(model) is None
    assert [(name, type(m).__name__) for name, m in model.named_modules()] == \
        [(name, type(m).__name__) for name, m in target.named_modules()]
    state, expected = model.state_dict(), target.state_dict()
    assert list(state) == list(expected) and all(torch.equal(state[k], expected[k]) for k in state)
    assert [name for name, _ in model.named_parameters() if name.endswith("bias")] == []
    assert model.config.bcos == target.config.bcos
    assert {name: m.b for name, m in model.named_modules() if isinstance(m, BcosLinear)} == \
        {name: m.b for name, m in target.named_modules() if isinstance(m, BcosLinear)}
    torch.testing.assert_close(model_output(model, ids, mask), model_output(target, ids, mask), rtol=0, atol=0)


def test_a_model_in_the_middle_of_its_ramp_is_not_exported(tiny, tmp_path):  # noqa: F811
    module = SequenceClassifier(str(tiny["model"]), num_labels=2, anneal_steps=4)
    module.advance_annealing(1, [])
    with pytest.raises(ValueError, match=r"^the model is at 25% of its annealed B-cos conversion, not yet a B-cos "
                                         r"model: export it once the annealing has ended$"):
        export_hf(module.model, bcos.load_tokenizer(str(tiny["model"])), tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_a_kept_bias_target_keeps_biases_and_steps_0_converts_at_once():
    model = tiny_model("bert", "BertForSequenceClassification")
    target = bcos.bcosify(copy.deepcopy(model), b=2.0, remove_biases=False)
    bcos.BcosAnnealing(model, steps=0, b=2.0, remove_biases=False)
    assert annealing_progress(model) is None
    state, expected = model.state_dict(), target.state_dict()
    assert list(state) == list(expected) and all(torch.equal(state[k], expected[k]) for k in state)
    with pytest.raises(ValueError, match="steps must be a non-negative int"):
        bcos.BcosAnnealing(tiny_model("bert", "BertModel"), steps=-1)


def test_explanations_during_the_ramp_are_flagged_incomplete():
    model = tiny_model("roberta", "RobertaForSequenceClassification")
    ids, mask = tiny_batch("roberta")
    annealing = bcos.BcosAnnealing(model, steps=2, b=1.5)
    annealing.step()
    with pytest.warns(UserWarning, match=r"middle of its annealed B-cos conversion \(progress 0.50\)"):
        explanation = bcos.explain(model, ids, mask)
    assert explanation.complete is False
    assert explanation.completeness_error().max() > 1e-3  # the biases are half there: the flag is needed
    annealing.step()
    explanation = bcos.explain(model.double(), ids, mask)
    assert explanation.complete is True
    assert explanation.completeness_error().max() < 1e-9


def test_a_saved_state_continues_the_ramp_at_the_same_point():
    model = tiny_model("llama", "LlamaForSequenceClassification")
    fresh = copy.deepcopy(model)
    ids, mask = tiny_batch("llama")
    annealing = bcos.BcosAnnealing(model, steps=5, b=2.0)
    run_steps(annealing, 3)
    resumed = bcos.BcosAnnealing(fresh, steps=5, b=2.0)
    resumed.load_state_dict(annealing.state_dict())
    assert resumed.progress == 0.6
    torch.testing.assert_close(model_output(fresh, ids, mask), model_output(model, ids, mask), rtol=0, atol=0)
    other_length = bcos.BcosAnnealing(tiny_model("llama", "LlamaForSequenceClassification"), steps=4, b=2.0)
    other_length.load_state_dict(annealing.state_dict())  # the saved ramp continues, with its own length
    assert (other_length.steps, other_length.completed) == (5, 3)
    with pytest.raises(ValueError, match="the ramp has already started"):
        other_length.set_length(8)
    run_steps(annealing, 2)
    resumed.load_state_dict(annealing.state_dict())  # a finished state: the final model
    assert resumed.finished and annealing_progress(fresh) is None


def test_auto_logit_scale_is_one_over_the_rms_of_the_first_batch_logits(tiny):  # noqa: F811
    data = datamodule(tiny)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    module = SequenceClassifier(str(tiny["model"]), num_labels=2, b=1.5, anneal_steps=0)
    assert module.logit_scale.isnan()  # not set before the first batch
    module.eval()
    with torch.no_grad():
        logits = module(batch["input_ids"], batch["attention_mask"]).double()
    module.train()
    module.set_logit_scale(batch)
    assert module.logit_scale.item() == pytest.approx(1 / logits.square().mean().sqrt().item(), rel=1e-6)
    # the scale is a float32 buffer: the rescaled RMS is 1 to float32 precision
    torch.testing.assert_close((logits * module.logit_scale.double()).square().mean(), torch.tensor(1.0).double(),
                               rtol=1e-6, atol=0)
    other = next(iter(data.val_dataloader()))
    module.set_logit_scale(other)  # set once: a later batch changes nothing
    assert module.logit_scale.item() == pytest.approx(1 / logits.square().mean().sqrt().item(), rel=1e-6)


def test_with_annealing_the_auto_scale_moves_geometrically_from_start_to_end_form(tiny):  # noqa: F811
    data = datamodule(tiny)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    torch.manual_seed(0)
    module = SequenceClassifier(str(tiny["model"]), num_labels=2, b=2.0, anneal_steps=4)
    torch.manual_seed(0)
    direct = SequenceClassifier(str(tiny["model"]), num_labels=2, b=2.0, anneal_steps=0)
    torch.manual_seed(0)
    original = SequenceClassifier(str(tiny["model"]), num_labels=2, bcos=False)
    for each in (direct, original):
        each.eval()
    with torch.no_grad():
        start = first_batch_log_scale(original(batch["input_ids"], batch["attention_mask"]))
        end = first_batch_log_scale(direct(batch["input_ids"], batch["attention_mask"]))
    module.set_logit_scale(batch)
    assert module.log_logit_scale.item() == pytest.approx(start.item(), rel=1e-5)
    optimizer = module.optimizer_for(10)["optimizer"]
    module.advance_annealing(1, [optimizer])
    assert module.log_logit_scale.item() == pytest.approx(0.75 * start.item() + 0.25 * end.item(), rel=1e-5)
    module.advance_annealing(4, [optimizer])
    assert module.log_logit_scale.item() == pytest.approx(end.item(), rel=1e-5)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in module.parameters()}  # the removed biases left the optimizer


class RecordAnnealing(L.Callback):
    """Records, per training batch, how many ramp steps the module's annealing has done (after its own hook)."""

    def __init__(self) -> None:
        self.completed: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.completed.append(pl_module.annealing.completed)


def test_lightning_resumes_the_ramp_from_a_checkpoint_and_after_its_end(tiny, tmp_path):  # noqa: F811
    def fit(max_steps: int, ckpt_path=None) -> tuple[SequenceClassifier, L.Trainer, list[int]]:
        L.seed_everything(0)
        module = SequenceClassifier(str(tiny["model"]), b=1.5, anneal_steps=6, learning_rate=1e-3)
        record = RecordAnnealing()
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_steps=max_steps,
                            enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                            default_root_dir=tmp_path, callbacks=[record])
        trainer.fit(module, datamodule(tiny), ckpt_path=ckpt_path)
        trainer.save_checkpoint(tmp_path / f"step{max_steps}.ckpt")
        return module, trainer, record.completed

    module, _, completed = fit(3)
    assert completed == [0, 1, 2] and annealing_progress(module.model) == pytest.approx(2 / 6)
    module, trainer, completed = fit(8, ckpt_path=tmp_path / "step3.ckpt")
    assert completed == [3, 4, 5, 6, 6]  # continued where the checkpoint stopped, not from the start
    assert trainer.global_step == 8 and module.annealing.finished and annealing_progress(module.model) is None
    module, trainer, completed = fit(10, ckpt_path=tmp_path / "step8.ckpt")  # the checkpoint holds the final form
    assert trainer.global_step == 10 and completed == [6, 6]
    assert [name for name, _ in module.named_parameters() if name.endswith("bias")] == []
    with pytest.raises(ValueError, match=r"saved in the middle of its annealed B-cos conversion \(step 2 of 6\): it "
                                         r"is not yet a B-cos model"):
        bcos.load(tmp_path / "step3.ckpt")
    handle = bcos.load(tmp_path / "step10.ckpt")  # after the ramp: a plain B-cos model, rebuilt without Lightning
    ids = torch.tensor([[101, 2204, 2143, 102]])
    module.eval()
    torch.testing.assert_close(handle.model(input_ids=ids).logits, module(ids), rtol=0, atol=0)
    reloaded = SequenceClassifier.load_from_checkpoint(tmp_path / "step10.ckpt", weights_only=True)
    assert reloaded.annealing.finished and annealing_progress(reloaded.model) is None
    state, expected = reloaded.state_dict(), module.state_dict()
    assert list(state) == list(expected) and all(torch.equal(state[k], expected[k]) for k in state)


def test_anneal_steps_as_a_fraction_of_training_and_bad_values(tiny):  # noqa: F811
    module = SequenceClassifier(str(tiny["model"]), num_labels=2, b=1.5, anneal_steps=0.25)
    module.optimizer_for(10)
    assert (module.annealing.steps, module.annealing.completed) == (2, 0)  # round(0.25 * 10)
    module.advance_annealing(1, [])
    module.optimizer_for(100)  # started: the length stays
    assert module.annealing.steps == 2
    for bad in (-1, 1.5, 0.0, True, "10"):
        with pytest.raises(ValueError, match=r"^anneal_steps must be a number of steps \(an int >= 0\) or a fraction "
                                             rf"of the training steps \(a float in \(0, 1\)\), got {bad!r}$"):
            SequenceClassifier(str(tiny["model"]), num_labels=2, anneal_steps=bad)
