"""Tests of lightning_modules/: SequenceClassifier (loss, training, checkpoints) and the Hugging Face export."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
import transformers

import bcos
from datamodules import TextClassificationDataModule
from lightning_modules import SequenceClassifier, export_module
from lightning_modules.optim import linear_warmup_decay

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
_WORDS = {0: ["bad", "awful", "dull", "boring"], 1: ["good", "great", "fine", "lovely"], 2: ["red", "blue", "green"]}
LABEL_NAMES = ["negative", "positive", "colour"]


def make_tiny_model(folder: Path, num_labels: int = 2, hidden_size: int = 32, seed: int = 0) -> Path:
    """A tiny random BertForSequenceClassification saved with the MiniLM tokenizer (whose vocabulary it has)."""
    torch.manual_seed(seed)
    tokenizer = bcos.load_tokenizer(MINILM)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden_size, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=37, max_position_embeddings=128,
                                     num_labels=num_labels)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_tiny_data(folder: Path, sizes: dict[str, int] | None = None, num_labels: int = 2) -> Path:
    """``{split}.jsonl`` files whose label (named in ``label_name``) is given away by one word of the text
    (learnable in a few steps)."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, size in (sizes or {"train": 64, "validation": 21, "test": 10}).items():
        rows = [{"text": f"a {rng.choice(_WORDS[i % num_labels])} film {rng.choice(['today', 'here', 'again'])}",
                 "label": i % num_labels, "label_name": LABEL_NAMES[i % num_labels]} for i in range(size)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {"model": make_tiny_model(root / "model"), "data": write_tiny_data(root / "data"), "cache": root / "cache"}


def datamodule(tiny: dict[str, Path], **kwargs) -> TextClassificationDataModule:
    kwargs = {"batch_size": 16, "max_length": 32, "cache_dir": str(tiny["cache"]), **kwargs}
    return TextClassificationDataModule(str(tiny["data"]), str(tiny["model"]), **kwargs)


def trainer(**kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0)
    return L.Trainer(**{**options, **kwargs})


def mean_loss(module: SequenceClassifier, loader) -> float:
    module.eval()
    with torch.no_grad():
        losses = [module.loss(module(b["input_ids"], b["attention_mask"]), b["labels"]) for b in loader]
    return torch.stack(losses).mean().item()


def test_losses_and_their_defaults(tiny):
    logits, labels = torch.tensor([[0.5, -1.0], [2.0, 0.1]]), torch.tensor([1, 0])
    bcos_module = SequenceClassifier(str(tiny["model"]), num_labels=2)
    conventional = SequenceClassifier(str(tiny["model"]), num_labels=2, bcos=False)
    assert (bcos_module.loss_name, conventional.loss_name) == ("bce", "ce")
    assert bcos_module.logit_scale.isnan() and conventional.logit_scale.item() == 1  # B-cos: "auto", set later
    bcos_module = SequenceClassifier(str(tiny["model"]), num_labels=2, logit_scale=1.0)
    expected_bce = -(torch.log(1 - torch.sigmoid(torch.tensor([0.5, 0.1]))).sum()
                     + torch.log(torch.sigmoid(torch.tensor([-1.0, 2.0]))).sum()) / 4
    torch.testing.assert_close(bcos_module.loss(logits, labels), expected_bce)
    torch.testing.assert_close(conventional.loss(logits, labels), F.cross_entropy(logits, labels))
    assert SequenceClassifier(str(tiny["model"]), num_labels=2, bcos=False, loss="bce").loss_name == "bce"
    with pytest.raises(ValueError, match="loss must be one of"):
        SequenceClassifier(str(tiny["model"]), num_labels=2, loss="mse")


def test_model_is_converted_and_logit_scale_scales_the_loss(tiny):
    module = SequenceClassifier(str(tiny["model"]), num_labels=2, b=1.5, logit_scale=10.0)
    assert module.model.config.bcos["b"] == 1.5
    assert module.model.training  # from_pretrained returns eval mode; training needs dropout on
    ids, labels = torch.tensor([[101, 2204, 2143, 102]]), torch.tensor([1])
    module.eval()
    logits = module.model(input_ids=ids).logits
    torch.testing.assert_close(module(ids), logits)  # the model's own logits: what the export gives
    targets = torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(module.loss(logits, labels), F.binary_cross_entropy_with_logits(10 * logits, targets))
    probabilities = module.predict_step({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, 0)["probabilities"]
    torch.testing.assert_close(probabilities, torch.sigmoid(10 * logits))
    conventional = SequenceClassifier(str(tiny["model"]), num_labels=2, bcos=False)
    assert getattr(conventional.model.config, "bcos", None) is None


def test_a_few_steps_lower_the_loss(tiny):
    L.seed_everything(0)
    data = datamodule(tiny)
    data.setup()
    options = {"logit_scale": 1.0}  # unscaled, so that the loss starts at ln 2 (B-cos logits are ~0)
    module = SequenceClassifier(str(tiny["model"]), learning_rate=1e-2, **options)
    fit = trainer(max_steps=40, limit_val_batches=0)
    fit.fit(module, data)  # num_labels from the datamodule
    assert module.hparams.num_labels == 2 and fit.global_step == 40
    fresh = SequenceClassifier(str(tiny["model"]), num_labels=2, **options)
    before, after = mean_loss(fresh, data.train_dataloader()), mean_loss(module, data.train_dataloader())
    assert before == pytest.approx(0.6931, abs=1e-3)
    assert after < 0.1 * before


def test_unnormalized_learning_rate_covers_all_but_the_normalised_bcos_weights(tiny):
    def rates(**options) -> dict[str, float]:
        module = SequenceClassifier(str(tiny["model"]), num_labels=2, learning_rate=1e-3, **options)
        names = {id(param): name for name, param in module.named_parameters()}
        optimizer = module.optimizer_for(10)["optimizer"]
        return {names[id(param)]: group["initial_lr"] for group in optimizer.param_groups for param in group["params"]}

    split = rates(unnormalized_learning_rate=1e-4)
    # BERT's B-cos layers: attention output, FFN in and out, pooler, classifier; Q/K/V stay linear (attention is
    # the dynamic-linear map), embeddings and norm gains are no B-cos layers
    bcos_layer = r"(attention\.output\.dense|intermediate\.dense|layer\.\d+\.output\.dense|pooler\.dense|classifier)\.weight$"
    assert {name for name, rate in split.items() if rate == 1e-3} == {
        name for name in split if re.search(bcos_layer, name)} != set()
    assert {rate for name, rate in split.items() if not re.search(bcos_layer, name)} == {1e-4}
    assert set(rates().values()) == {1e-3}  # not set: one rate
    assert set(rates(unnormalized_learning_rate=1e-4, normalize_weights=False).values()) == {1e-4}


def test_schedule_warms_up_then_decays():
    factors = [linear_warmup_decay(step, warmup_steps=2, total_steps=6) for step in range(7)]
    assert factors == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_checkpoint_reloads_and_other_architectures_fail_clearly(tiny, tmp_path):
    L.seed_everything(0)
    module = SequenceClassifier(str(tiny["model"]), learning_rate=1e-3)
    fit = trainer(max_steps=2, limit_val_batches=0)
    fit.fit(module, datamodule(tiny))
    path = tmp_path / "bcos.ckpt"
    fit.save_checkpoint(path)
    ids = torch.tensor([[101, 2204, 2143, 102], [101, 2919, 2143, 102]])

    reloaded = SequenceClassifier.load_from_checkpoint(path).eval()
    module.eval()
    assert reloaded.hparams.num_labels == 2
    torch.testing.assert_close(reloaded(ids), module(ids), rtol=0, atol=0)

    with pytest.raises(ValueError, match=r"checkpoint holds B-cos \(b=1.5\) BertForSequenceClassification from "
                                         r"'.*/model', 2 labels, which does not fit the configured conventional "
                                         r"BertForSequenceClassification from '.*/model', 2 labels: 19 keys of the "
                                         r"configured model missing from the checkpoint \(e.g. model.bert.embeddings"
                                         r".LayerNorm.bias"):
        SequenceClassifier.load_from_checkpoint(path, bcos=False)
    other_b = SequenceClassifier(str(tiny["model"]), num_labels=2, b=2.0)
    with pytest.warns(UserWarning, match=r"trained with other model options: b=1.5 \(configured 2.0\)"):
        trainer().validate(other_b, datamodule(tiny), ckpt_path=path, verbose=False)

    wider = make_tiny_model(tmp_path / "wider", hidden_size=48)
    with pytest.raises(ValueError, match=r"'.*/model', 2 labels, which does not fit the configured B-cos \(b=1.5\) "
                                         r"BertForSequenceClassification from '.*/wider', 2 labels: .* tensors of "
                                         r"another shape \(checkpoint vs configured\) \(e.g. "
                                         r"model.bert.embeddings.LayerNorm.weight \(32,\) vs \(48,\)"):
        SequenceClassifier.load_from_checkpoint(path, model_name_or_path=str(wider))


def test_export_reloads_with_identical_logits(tiny, tmp_path):
    ids = torch.tensor([[101, 2204, 2143, 2182, 102], [101, 2919, 2143, 102, 0]])
    mask = (ids != 0).long()
    tokenizer = bcos.load_tokenizer(str(tiny["model"]))
    for bcos_flag, loader in ((True, bcos.load_pretrained), (False, bcos.load_model)):
        module = SequenceClassifier(str(tiny["model"]), num_labels=2, bcos=bcos_flag, logit_scale=300.0,
                                    anneal_steps=0).eval()
        folder = export_module(module, tokenizer, tmp_path / f"export-{bcos_flag}")
        reloaded = loader(str(folder)).eval()
        assert (getattr(reloaded.config, "bcos", None) is not None) == bcos_flag
        assert reloaded.config.logit_scale == pytest.approx(300.0)
        expected = module.model(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).logits, expected, rtol=0, atol=0)
        assert bcos.load_tokenizer(str(folder))("good film")["input_ids"] == tokenizer("good film")["input_ids"]


def test_exports_and_checkpoints_record_the_trained_max_length(tiny, tmp_path):
    module = SequenceClassifier(str(tiny["model"]), num_labels=2)
    fit = trainer(max_steps=1, limit_val_batches=0)
    fit.fit(module, datamodule(tiny, max_length=24))
    folder = export_module(module, bcos.load_tokenizer(str(tiny["model"])), tmp_path / "export")
    fit.save_checkpoint(tmp_path / "run.ckpt")
    assert bcos.load(folder).max_length == 24 and bcos.load(tmp_path / "run.ckpt").max_length == 24
    unattached = export_module(SequenceClassifier(str(tiny["model"]), num_labels=2), bcos.load_tokenizer(
        str(tiny["model"])), tmp_path / "unattached")
    assert bcos.load(unattached).max_length is None  # no data, nothing recorded: the commands use their default


def test_num_labels_must_match_the_data(tiny, tmp_path):
    three_labels = make_tiny_model(tmp_path / "three", num_labels=3)
    with pytest.raises(ValueError, match="configured with num_labels=3 but the data has 2 labels"):
        trainer(max_steps=1).fit(SequenceClassifier(str(three_labels), num_labels=3), datamodule(tiny))


@pytest.mark.parametrize("learn", [False, True])
def test_logit_scale_is_stored_as_its_log_and_must_be_positive(learn):
    module = SequenceClassifier("unused-until-num-labels-is-known", logit_scale=250.0, learn_logit_scale=learn)
    assert isinstance(module.log_logit_scale, nn.Parameter) == learn
    assert module.logit_scale.item() == pytest.approx(250.0)
    for bad in (-1.0, 0.0, float("nan"), float("inf"), "automatic"):
        with pytest.raises(ValueError, match=rf"^logit_scale must be a positive number or 'auto', got {bad!r}$"):
            SequenceClassifier("unused-until-num-labels-is-known", logit_scale=bad)
