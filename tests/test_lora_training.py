"""The ``lora`` switch of the LightningModules: only adapters and the new head train, checkpoints resume and load
with ``bcos.load``, exports merge the adapters and keep them, and the SmolLM2 LoRA config resolves."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import bcos
from bcos.convert.lora import BcosLoraLinear, load_lora
from lightning_modules import CausalLanguageModel, SequenceClassifier, export_module
from lightning_modules.export import LORA_ADAPTER_FOLDER
from test_training import datamodule, mean_loss, tiny, trainer  # noqa: F401  (tiny is a fixture)

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]
IDS = torch.tensor([[101, 2204, 2143, 2182, 102], [101, 2919, 2143, 102, 0]])
MASK = (IDS != 0).long()
CONFIGS = Path(__file__).parents[1] / "configs"


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK).logits


def test_lora_trains_only_the_adapters_and_the_new_head(tiny):
    L.seed_everything(0)
    data = datamodule(tiny)
    data.setup()
    module = SequenceClassifier(str(tiny["model"]), num_labels=2, lora={"r": 4}, logit_scale=1.0, learning_rate=1e-2)
    frozen = {name: parameter.detach().clone() for name, parameter in module.model.named_parameters()
              if "lora_" not in name and "classifier" not in name}
    trainer(max_steps=30, limit_val_batches=0).fit(module, data)
    trained = dict(module.model.named_parameters())
    assert all(torch.equal(trained[name], value) for name, value in frozen.items())
    assert sorted({name.split(".")[0] for name, p in module.model.named_parameters() if p.requires_grad}) == [
        "bert", "classifier"]
    assert all("lora_" in name for name, p in module.model.bert.named_parameters() if p.requires_grad)
    assert any(isinstance(layer, BcosLoraLinear) for layer in module.model.modules())
    fresh = SequenceClassifier(str(tiny["model"]), num_labels=2, lora={"r": 4}, logit_scale=1.0)
    assert mean_loss(module, data.train_dataloader()) < 0.5 * mean_loss(fresh, data.train_dataloader())
    explanation = bcos.explain(module.model.double().eval(), IDS, MASK)
    assert explanation.completeness_error().max() <= 1e-6


def test_lora_export_merges_the_adapters_and_keeps_them(tiny, tmp_path):
    L.seed_everything(0)
    module = SequenceClassifier(str(tiny["model"]), lora={"r": 4}, learning_rate=1e-2)
    trainer(max_steps=5, limit_val_batches=0).fit(module, datamodule(tiny))
    module.eval()
    expected = logits(module.model)
    folder = export_module(module, bcos.load_tokenizer(str(tiny["model"])), tmp_path / "export")

    merged = bcos.load(folder)
    assert not any(isinstance(layer, BcosLoraLinear) for layer in merged.model.modules())
    torch.testing.assert_close(logits(merged.model), expected, rtol=0, atol=1e-6)
    assert any(isinstance(layer, BcosLoraLinear) for layer in module.model.modules())  # training copy unmerged

    base = SequenceClassifier(str(tiny["model"]), num_labels=2, anneal_steps=0).model.eval()
    with_adapter = load_lora(base, folder / LORA_ADAPTER_FOLDER)
    torch.testing.assert_close(logits(with_adapter), expected, rtol=0, atol=1e-6)


def test_a_lora_checkpoint_resumes_and_loads_without_lightning(tiny, tmp_path):
    L.seed_everything(0)
    module = SequenceClassifier(str(tiny["model"]), lora={"r": 4}, learning_rate=1e-2)
    fit = trainer(max_steps=3, limit_val_batches=0)
    fit.fit(module, datamodule(tiny))
    path = tmp_path / "lora.ckpt"
    fit.save_checkpoint(path)
    module.eval()
    expected = logits(module.model)

    reloaded = SequenceClassifier.load_from_checkpoint(path).eval()
    torch.testing.assert_close(logits(reloaded.model), expected, rtol=0, atol=0)
    resumed = SequenceClassifier(str(tiny["model"]), num_labels=2, lora={"r": 4}, learning_rate=1e-2)
    more = trainer(max_steps=5, limit_val_batches=0)
    more.fit(resumed, datamodule(tiny), ckpt_path=path)
    assert more.global_step == 5

    handle = bcos.load(path)
    assert not any(isinstance(layer, BcosLoraLinear) for layer in handle.model.modules())
    torch.testing.assert_close(logits(handle.model), expected, rtol=0, atol=1e-6)


def test_lora_and_annealing_are_refused_together(tiny):
    with pytest.raises(ValueError, match=r"^lora and anneal_steps cannot be combined: .* set anneal_steps: 0$"):
        SequenceClassifier(str(tiny["model"]), num_labels=2, lora={"r": 4}, anneal_steps=10)


def test_the_smollm2_lora_config_trains_a_bcos_smollm2_with_adapters():
    init = {}  # the documented LoRA run: base, SmolLM2 and LoRA overlays, later ones overriding
    for name in ("decoders/base.yaml", "decoders/smollm2.yaml", "decoders/lora.yaml"):
        init.update(yaml.safe_load((CONFIGS / name).read_text())["model"]["init_args"])
    assert init["model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and init["bcos"] is True
    assert init["lora"]["r"] == 8
    module = CausalLanguageModel(**init)
    trainable = [name for name, p in module.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)  # the tied LM head stays frozen
    adapted = [layer for layer in module.model.modules() if hasattr(layer, "lora_A")]
    assert len(adapted) == 30 * 7  # q, k, v, o, gate, up, down in each of the 30 blocks
    assert sum(isinstance(layer, BcosLoraLinear) for layer in adapted) == 30 * 3  # o, up, down are B-cos layers
