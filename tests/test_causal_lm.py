"""Decoder LM training: block packing, the causal-LM LightningModule (loss falls, perplexity logged) and train.py on
decoder configs (export reloads as a B-cos model)."""
from __future__ import annotations

import importlib.util
import inspect
import json
import math
import sys
from pathlib import Path

import lightning as L
import pytest
import yaml
import torch
import transformers

import bcos
from datamodules import LanguageModelingDataModule
from datamodules.language_modeling import pack_blocks, read_documents
from lightning_modules import CausalLanguageModel
from lightning_modules.causal_lm import next_token_loss, predicted_tokens

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
SENTENCES = ["the cat sat on the mat .", "a dog ran in the park .", "the bird sang in the tree .",
             "a fish swam in the sea ."]


def make_tiny_decoder(folder: Path, architecture: str = "llama", seed: int = 0) -> Path:
    """A tiny random decoder saved with the SmolLM2 tokenizer (whose vocabulary it has). Like SmolLM2, the Llama
    has no padding index: its zero embedding row would be a zero row of the tied B-cos head, whose cosine is 0/0
    with unnormalised weights."""
    torch.manual_seed(seed)
    tokenizer = bcos.load_tokenizer(SMOLLM2)
    if architecture == "llama":
        config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, intermediate_size=37,
                                          max_position_embeddings=128, eos_token_id=tokenizer.eos_token_id,
                                          tie_word_embeddings=True)
        model = transformers.LlamaForCausalLM(config)
    elif architecture == "olmo":  # a family without a B-cos adapter
        config = transformers.OlmoConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=37,
                                         max_position_embeddings=128, eos_token_id=tokenizer.eos_token_id)
        model = transformers.OlmoForCausalLM(config)
    else:
        config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                         bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
                                         eos_token_id=tokenizer.eos_token_id)
        model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_text_data(folder: Path, n_train: int = 200, n_validation: int = 20) -> Path:
    """``train.jsonl`` and ``validation.jsonl`` of four repeated sentences (learnable in a few steps)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, size in (("train", n_train), ("validation", n_validation)):
        rows = [{"text": SENTENCES[i % len(SENTENCES)]} for i in range(size)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_lm")
    return {"model": make_tiny_decoder(root / "model"), "data": write_text_data(root / "data"), "root": root}


def test_blocks_are_the_documents_joined_by_eos_and_cut_to_length(tiny):
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny["model"])
    blocks = pack_blocks(SENTENCES, tokenizer, block_size=5)
    stream = [token for text in SENTENCES for token in [*tokenizer(text)["input_ids"], tokenizer.eos_token_id]]
    assert blocks.shape == (len(stream) // 5, 5)
    assert blocks.flatten().tolist() == stream[:blocks.numel()]
    assert pack_blocks(SENTENCES * 50, tokenizer, block_size=5, max_blocks=3, chunk=2).shape == (3, 5)


def test_datamodule_holds_out_documents_and_reads_text_files(tiny, tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(SENTENCES * 10) + "\n\n")
    assert read_documents(str(text)) == {"train": SENTENCES * 10}
    data = LanguageModelingDataModule([str(tiny["data"]), str(text)], str(tiny["model"]), block_size=8, batch_size=4,
                                      max_eval_blocks=None)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape == (4, 8) and torch.all(batch["attention_mask"] == 1)
    assert data.blocks["validation"].shape[0] >= 2  # from validation.jsonl and 5 % of the text file's lines
    with pytest.raises(ValueError, match="block_size must be at least 1"):
        LanguageModelingDataModule(str(text), str(tiny["model"]), block_size=0)
    with pytest.raises(ValueError, match="has no column 'body'.*Set text_column"):
        read_documents(str(tiny["data"]), text_column="body")
    short = LanguageModelingDataModule(str(text), str(tiny["model"]), block_size=100)
    with pytest.raises(ValueError, match="shorter than one block of 100 tokens"):
        short.setup()


def test_next_token_loss_ignores_padding_targets():
    logits = torch.randn(2, 4, 7)
    ids = torch.randint(0, 7, (2, 4))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    expected = torch.stack([torch.nn.functional.cross_entropy(logits[0, :3], ids[0, 1:], reduction="sum"),
                            torch.nn.functional.cross_entropy(logits[1, :1], ids[1, 1:2], reduction="sum")]).sum()
    torch.testing.assert_close(next_token_loss(logits, ids, mask, "sum"), expected)
    torch.testing.assert_close(next_token_loss(logits, ids, mask), expected / 4)


def test_next_token_loss_counts_only_pairs_of_real_tokens_with_left_padding():
    logits = torch.randn(3, 5, 7)
    ids = torch.randint(0, 7, (3, 5))
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    pairs = [(row, t) for row in range(3) for t in range(4) if mask[row, t] and mask[row, t + 1]]
    assert len(pairs) == 2 + 2 + 4  # the last pad position before the first real token is not one
    expected = torch.stack([torch.nn.functional.cross_entropy(logits[row, t], ids[row, t + 1], reduction="sum")
                            for row, t in pairs]).sum()
    torch.testing.assert_close(next_token_loss(logits, ids, mask, "sum"), expected)
    torch.testing.assert_close(next_token_loss(logits, ids, mask), expected / len(pairs))
    assert predicted_tokens(mask).sum().item() == len(pairs)


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_a_tiny_bcos_decoder_learns_and_logs_perplexity(architecture, tmp_path):
    model_dir = make_tiny_decoder(tmp_path / "model", architecture)
    data = LanguageModelingDataModule(str(write_text_data(tmp_path / "data")), str(model_dir), block_size=16,
                                      batch_size=8, max_eval_blocks=4)
    module = CausalLanguageModel(str(model_dir), b=1.1, learning_rate=3e-2, warmup_fraction=0.0)
    assert module.model.config.bcos["b"] == 1.1
    data.setup()
    probe = data.blocks["validation"]

    def held_out_loss() -> float:
        module.eval()  # no dropout
        with torch.no_grad():
            return next_token_loss(module(probe, torch.ones_like(probe)), probe, torch.ones_like(probe)).item()

    before = held_out_loss()
    module.train()
    trainer = L.Trainer(accelerator="cpu", max_steps=12, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    after = held_out_loss()
    assert after < before - 1.0, (before, after)
    metrics = trainer.validate(module, datamodule=data, verbose=False)[0]
    assert metrics["val/loss"] == pytest.approx(after, rel=1e-4)
    assert metrics["val/perplexity"] == pytest.approx(math.exp(after), rel=1e-4)
    assert metrics["val/num_tokens"] == probe.numel() - probe.shape[0]


def _train_module():
    spec = importlib.util.spec_from_file_location("train", REPO / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    return train


DECODER_RUNS = {  # the documented decoder runs: their overlays over configs/decoders/base.yaml, and what they train
    "smollm2": (["decoders/smollm2.yaml"], "HuggingFaceTB/SmolLM2-135M-Instruct", True, None),
    "smollm2-conventional": (["decoders/smollm2.yaml", "conventional.yaml"], "HuggingFaceTB/SmolLM2-135M-Instruct",
                             False, None),
    "smollm2-lora": (["decoders/smollm2.yaml", "decoders/lora.yaml"], "HuggingFaceTB/SmolLM2-135M-Instruct", True, 8),
    "gpt2": (["decoders/gpt2.yaml"], "openai-community/gpt2", True, None),
    "gpt2-conventional": (["decoders/gpt2.yaml", "conventional.yaml"], "openai-community/gpt2", False, None),
}


def decoder_config_arguments(overlays: list[str]) -> list[str]:
    return [argument for name in ["decoders/base.yaml", *overlays] for argument in ("--config", str(REPO / "configs" / name))]


@pytest.mark.parametrize("run", DECODER_RUNS)
def test_decoder_configs_compose_into_the_documented_runs(run, capsys, monkeypatch):
    overlays, model_name, bcos_flag, lora_rank = DECODER_RUNS[run]
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with pytest.raises(SystemExit) as exit_info:
        _train_module().main(["fit", *decoder_config_arguments(overlays), "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["class_path"] == "lightning_modules.CausalLanguageModel"
    assert config["data"]["class_path"] == "datamodules.LanguageModelingDataModule"
    init = config["model"]["init_args"]
    assert (init["model_name_or_path"], init["bcos"]) == (model_name, bcos_flag)
    assert (init["lora"] or {}).get("r") == lora_rank
    # CausalLanguageModel's defaults (the paper's b), not the default SequenceClassifier's that jsonargparse would keep
    assert (init["b"], init["normalize_weights"]) == (1.1, False)
    assert init["learning_rate"] == (1e-3 if lora_rank else 1e-4)


@pytest.mark.parametrize("explicit", [{}, {"b": 1.5, "normalize_weights": True}])
def test_a_config_that_switches_classes_gets_the_chosen_classes_defaults(explicit, tmp_path, capsys, monkeypatch):
    """Arguments CausalLanguageModel and LanguageModelingDataModule share with train.py's default classes take the
    chosen classes' defaults (not SequenceClassifier's, as jsonargparse alone would give); set ones stay."""
    from datamodules import LanguageModelingDataModule
    from lightning_modules import CausalLanguageModel

    config = {"model": {"class_path": "lightning_modules.CausalLanguageModel",
                        "init_args": {"model_name_or_path": "tiny", **explicit}},
              "data": {"class_path": "datamodules.LanguageModelingDataModule", "init_args": {"dataset": "text"}}}
    (tmp_path / "switch.yaml").write_text(json.dumps(config))
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with pytest.raises(SystemExit):
        _train_module().main(["fit", "--config", str(tmp_path / "switch.yaml"), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    for key, cls, given in (("model", CausalLanguageModel, {"model_name_or_path": "tiny", **explicit}),
                            ("data", LanguageModelingDataModule, {"dataset": "text"})):
        defaults = {name: parameter.default for name, parameter in inspect.signature(cls).parameters.items()
                    if parameter.default is not inspect.Parameter.empty and name != "tokenizer"}  # linked, not printed
        init = printed[key]["init_args"]
        assert {name: init[name] for name in defaults if name not in given} == {
            name: value for name, value in defaults.items() if name not in given}
        assert {name: init[name] for name in given} == given


def test_every_decoder_config_is_used_by_a_documented_run():
    used = {"decoders/base.yaml", *(name for overlays, *_ in DECODER_RUNS.values() for name in overlays)}
    shipped = {f"decoders/{path.name}" for path in (REPO / "configs" / "decoders").glob("*.yaml")}
    assert shipped <= used


def test_train_py_fits_a_decoder_and_exports_a_bcos_model(tiny, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    root = tiny["root"] / "cli"
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "max_steps": 4, "val_check_interval": 2, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                               "init_args": {"save_dir": str(root / "runs"), "name": "tiny_lm"}}},
        "model": {"class_path": "lightning_modules.CausalLanguageModel",
                  "init_args": {"model_name_or_path": str(tiny["model"]), "learning_rate": 1e-2}},
        "data": {"class_path": "datamodules.LanguageModelingDataModule",
                 "init_args": {"dataset": str(tiny["data"]), "block_size": 16, "batch_size": 4, "max_eval_blocks": 2}},
    }
    root.mkdir(parents=True)
    (root / "tiny_lm.yaml").write_text(json.dumps(config))
    cli = _train_module().main(["fit", "--config", str(root / "tiny_lm.yaml")])
    assert cli.trainer.global_step == 4 and "val/perplexity" in cli.trainer.callback_metrics
    assert (cli.trainer.checkpoint_callback.monitor, cli.trainer.checkpoint_callback.mode) == ("val/loss", "min")
    export = Path(cli.trainer.log_dir) / "hf_export"
    reloaded = bcos.load_pretrained(export)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, cli.model.model.eval()(input_ids=ids).logits)
    assert bcos.explain(reloaded, ids).completeness_error().max() < 1e-3
