"""``python -m bcos.explain``: the JSON scores it writes equal ``bcos.explain`` (and the explainers) called
directly on the same input, it writes HTML / PNG heatmaps, and bad inputs fail with clear errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

import bcos
from bcos.explain import get_explainer
from bcos.cli.common import DEFAULT_MAX_LENGTH
from bcos.cli.explain import main
from test_faithfulness_callback import train_tiny
from test_training import make_tiny_model, write_tiny_data
from test_viz import PNG_SIGNATURE, parse

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "a gripping <script> film"
IG = {"integrated_gradients": {"n_steps": 4}, "lime": {"n_samples": 8}}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny conventional BERT classifier and its B-cos version (Hugging Face folders with the MiniLM
    tokenizer), and a tiny B-cos Llama language model."""
    root = tmp_path_factory.mktemp("explain_cli")
    conventional = make_tiny_model(root / "conventional")
    tokenizer = bcos.load_tokenizer(str(conventional))
    classifier = bcos.bcosify(transformers.AutoModelForSequenceClassification.from_pretrained(conventional))
    classifier.config.id2label, classifier.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0,
                                                                                                "positive": 1}
    classifier.save_pretrained(root / "bcos")
    tokenizer.save_pretrained(root / "bcos")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, intermediate_size=37,
                                      max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    bcos.bcosify(transformers.LlamaForCausalLM(config)).save_pretrained(root / "decoder")
    tokenizer.save_pretrained(root / "decoder")
    return {"conventional": conventional, "bcos": root / "bcos", "decoder": root / "decoder"}


def encode(folder: Path, text: str = TEXT) -> tuple[torch.Tensor, torch.Tensor]:
    batch = bcos.load_tokenizer(str(folder))(text, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def test_json_scores_equal_bcos_explain(models, tmp_path):
    record = main(["--model", str(models["bcos"]), "--text", TEXT, "--out", str(tmp_path / "heatmap.html")])
    model = bcos.load_pretrained(models["bcos"])
    ids, mask = encode(models["bcos"])
    explanation = bcos.explain(model, ids, mask)
    written = json.loads((tmp_path / "heatmap.json").read_text())
    assert written == {key: value for key, value in record.items() if key != "files"}
    (entry,) = written["inputs"]
    assert entry["rows"]["bcos"] == explanation.contributions[0].double().tolist()
    assert sum(entry["rows"]["bcos"]) == pytest.approx(float(explanation.logit[0]), rel=1e-4)
    assert entry["tokens"] == bcos.token_strings(ids, mask, bcos.load_tokenizer(str(models["bcos"])))[0]
    assert entry["prediction"] == entry["target"] == ["negative", "positive"][int(explanation.prediction[0])]
    assert list(entry["probabilities"]) == ["negative", "positive"] and entry["title"] == TEXT
    html = (tmp_path / "heatmap.html").read_text()
    assert parse(html).tokens == entry["tokens"] and "<script>" not in html
    assert record["files"] == [str(tmp_path / "heatmap.html"), str(tmp_path / "heatmap.json")]


def test_every_method_and_target(models, tmp_path):
    texts = ["a gripping film", "dull and lifeless"]
    record = main(["--model", str(models["bcos"]), "--text", texts[0], "--text", texts[1], "--methods",
                   "bcos,integrated_gradients,lime", "--method-params", json.dumps(IG), "--target", "all",
                   "--out", str(tmp_path / "all.html")])
    model, tokenizer = bcos.load_pretrained(models["bcos"]), bcos.load_tokenizer(str(models["bcos"]))
    assert [entry["title"] for entry in record["inputs"]] == texts
    for text, entry in zip(texts, record["inputs"]):
        ids, mask = encode(models["bcos"], text)
        assert list(entry["rows"]) == [f"{method}: {label}" for method in ("bcos", "integrated_gradients", "lime")
                                       for label in ("negative", "positive")]
        assert entry["target"] == "every class"
        for c, label in enumerate(("negative", "positive")):
            assert entry["rows"][f"bcos: {label}"] == bcos.explain(model, ids, mask, c).contributions[0].tolist()
            direct = get_explainer("integrated_gradients", model, tokenizer, n_steps=4).attribute(ids, mask, c)
            assert entry["rows"][f"integrated_gradients: {label}"] == pytest.approx(direct.scores[0].tolist(),
                                                                                   rel=1e-5, abs=1e-7)


def test_target_foil_and_a_checkpoint(models, tmp_path):
    data = write_tiny_data(tmp_path / "data", {"train": 16, "validation": 4})
    module = train_tiny(make_tiny_model(tmp_path / "base"), data, tmp_path / "cache", steps=2)
    module.trainer.save_checkpoint(tmp_path / "tiny.ckpt")
    record = main(["--model", str(tmp_path / "tiny.ckpt"), "--text", TEXT, "--target", "good", "--foil", "0",
                   "--labels", "bad,good", "--out", str(tmp_path / "contrast.html")])
    ids, mask = encode(tmp_path / "base")
    explanation = bcos.explain(module.model, ids, mask, target=1, foil=0)
    (entry,) = record["inputs"]
    assert entry["rows"]["bcos"] == pytest.approx(explanation.contributions[0].tolist(), rel=1e-5, abs=1e-9)
    assert entry["target"] == "good rather than bad" and record["logit_scale"] == float(module.logit_scale)
    assert record["max_length"] == 32  # the length the checkpoint was trained with (train_tiny's data)
    assert list(entry["probabilities"]) == ["bad", "good"]


def test_next_token_explanations_of_a_language_model(models, tmp_path):
    record = main(["--model", str(models["decoder"]), "--text", TEXT, "--target", "film", "--foil", "movie",
                   "--out", str(tmp_path / "decoder.png"), "--words"])
    tokenizer = bcos.load_tokenizer(str(models["decoder"]))
    target, foil = tokenizer.convert_tokens_to_ids(["film", "movie"])
    ids, mask = encode(models["decoder"])
    explanation = bcos.explain(bcos.load_pretrained(models["decoder"]), ids, mask, target=target, foil=foil)
    (entry,) = record["inputs"]
    assert entry["rows"]["bcos"] == pytest.approx(explanation.contributions[0].tolist(), rel=1e-5, abs=1e-9)
    assert entry["target"] == "'film' rather than 'movie'" and len(entry["probabilities"]) == 5
    assert (tmp_path / "decoder.png").read_bytes().startswith(PNG_SIGNATURE)
    assert not (tmp_path / "decoder.html").exists()


def test_a_language_model_keeps_the_end_of_a_long_prompt(models, tmp_path):
    tokenizer = bcos.load_tokenizer(str(models["decoder"]))
    words = tokenizer.convert_ids_to_tokens(tokenizer(TEXT, add_special_tokens=False)["input_ids"])
    assert len(words) > 3
    record = main(["--model", str(models["decoder"]), "--text", TEXT, "--max-length", "5",
                   "--out", str(tmp_path / "long.html")])
    (entry,) = record["inputs"]
    assert entry["tokens"] == [tokenizer.cls_token, *words[-3:], tokenizer.sep_token]


def test_files_words_and_png(models, tmp_path):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("a gripping film\n\n  \ndull and lifeless\n", encoding="utf-8")
    record = main(["--model", str(models["bcos"]), "--file", str(inputs), "--words", "--png", "--hide-special",
                   "--out", str(tmp_path / "words.html"), "--json", str(tmp_path / "scores" / "words.json")])
    assert [entry["title"] for entry in record["inputs"]] == ["a gripping film", "dull and lifeless"]
    assert (tmp_path / "words.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (tmp_path / "scores" / "words.json").is_file() and not (tmp_path / "words.json").exists()
    special = set(bcos.load_tokenizer(str(models["bcos"])).all_special_tokens)
    shown = parse((tmp_path / "words.html").read_text()).tokens
    expected = [token for entry in record["inputs"]
                for token in bcos.merge_subwords(entry["tokens"], entry["rows"]["bcos"], special)[0]
                if token not in special]
    assert shown == expected and "lifeless" in shown
    assert record["inputs"][0]["tokens"][0] == "[CLS]"  # the JSON keeps the special tokens


@pytest.mark.parametrize("change,message", [
    ({"--model": "runs/missing/hf_export"}, "model not found: runs/missing/hf_export (expected a Hugging Face model "
     "folder, e.g. a training run's hf_export/, a Lightning .ckpt file, or a hub id)"),
    ({"--text": "   "}, "empty input: a --text is empty; give the text to explain"),
    ({"--text": None, "--file": "EMPTY"}, "empty input: EMPTY has no text; write one text per line"),
    ({"--text": None, "--file": "missing.txt"}, "input file not found: missing.txt"),
    ({"--text": None}, 'no input: give --text "..." or --file inputs.txt'),
    ({"--methods": "bcos,gradcam"}, "unknown method 'gradcam'; known methods: bcos, integrated_gradients, "
     "kernel_shap, shapley_sampling, lime, input_x_gradient, saliency, occlusion, attention"),
    ({"--method-params": '{"lim": {"n_samples": 8}}'}, "unknown method 'lim'; known methods: bcos, "
     "integrated_gradients, kernel_shap, shapley_sampling, lime, input_x_gradient, saliency, occlusion, attention"),
    ({"--methods": "lime", "--method-params": '{"lime": {"samples": 8}}'}, "--method-params for lime: "
     "lime takes no parameter samples; its parameters: alpha, baseline_token_id, causal, kernel_width, n_samples, "
     "perturbations_per_eval, seed"),
    ({"--model": "CONVENTIONAL", "--methods": "bcos"}, "method bcos needs a B-cos model, but CONVENTIONAL holds a "
     "conventional model; explain it with post-hoc methods, e.g. --methods integrated_gradients,lime"),
    ({"--target": "neutral"}, "unknown --target 'neutral'; the model's classes are 0 (negative), 1 (positive), or "
     "'all'"),
    ({"--target": "all", "--foil": "negative"}, "--foil explains one contrast: give one --target (not 'all') with "
     "it"),
    ({"--model": "DECODER", "--target": "gripping film"}, "--target 'gripping film' is 2 tokens for this tokenizer; "
     "a language model's --target must be exactly one token (mind the leading space, e.g. ' Paris')"),
    ({"--out": "heatmap.pdf"}, "--out heatmap.pdf must end in .html or .png"),
    ({"--labels": "bad,neutral,good"}, "--labels gives 3 names for a model with 2 classes"),
    ({"--model": "DECODER", "--labels": "a,b"}, "--labels names the classes of a classifier; a language model's "
     "classes are its tokens"),
    ({"--labels": "good,good"}, "--labels names 'good' more than once; give each class its own name"),
    ({"--labels": "good,"}, "--labels has an empty name ('good,'); give every class a name"),
    ({"--model": "DECODER", "--target": "all"}, "--target all (one row per class) is for classifiers; a language "
     "model's classes are its whole vocabulary: give one token to explain, e.g. --target ' Paris' (for the word "
     "'all', --target ' all')"),
    ({"--json": "heatmap.html"}, "--json heatmap.html is also where the heatmaps go (heatmap.html); give the scores "
     "another file, e.g. --json scores.json"),
    ({"--out": "heatmap.png", "--json": "./heatmap.png"}, "--json heatmap.png is also where the heatmaps go "
     "(heatmap.png); give the scores another file, e.g. --json scores.json"),
    ({"--logit-scale": "-1"}, "argument --logit-scale: must be a finite number > 0, got -1"),
    ({"--logit-scale": "0"}, "argument --logit-scale: must be a finite number > 0, got 0"),
    ({"--logit-scale": "nan"}, "argument --logit-scale: must be a finite number > 0, got nan"),
    ({"--logit-scale": "hot"}, "argument --logit-scale: must be a number, got 'hot'"),
    ({"--max-length": "0"}, "argument --max-length: must be at least 1, got 0"),
    ({"--max-length": "1e3"}, "argument --max-length: must be a whole number, got '1e3'"),
    ({"--method-params": "{lime: 8}"}, "argument --method-params: not valid JSON (Expecting property name enclosed "
     "in double quotes: line 1 column 2 (char 1)): '{lime: 8}'"),
    ({"--method-params": '{"lime": 8}'}, "argument --method-params: must be a JSON object of parameters by method, "
     "e.g. '{\"lime\": {\"n_samples\": 100}}', got '{\"lime\": 8}'"),
    ({"--device": "cuda"}, "argument --device: cuda: CUDA is not available on this machine (no GPU, or a torch built "
     "without CUDA); use --device cpu"),
    ({"--device": "gpu0"}, "argument --device: 'gpu0' is not a device; use cpu, cuda or cuda:N"),
])
def test_bad_inputs_fail_with_a_clear_error(models, tmp_path, monkeypatch, capsys, change, message):
    (tmp_path / "EMPTY").write_text("\n  \n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the messages name the relative paths given
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA
    paths = {"CONVENTIONAL": str(models["conventional"]), "DECODER": str(models["decoder"])}
    options = {"--model": str(models["bcos"]), "--text": TEXT, "--out": "heatmap.html"}
    options.update(change)
    argv = [item for flag, value in options.items() if value is not None for item in (flag, paths.get(value, value))]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    expected = message.replace("CONVENTIONAL", paths["CONVENTIONAL"])
    assert capsys.readouterr().err.strip().endswith(f"python -m bcos.explain: error: {expected}")
    assert not (tmp_path / "heatmap.html").exists()


@pytest.mark.parametrize("damage,file", [("truncate", "model.safetensors"), ("truncate", "config.json"),
                                         ("conventional", "model.safetensors"), ("conventional", "config.json")])
def test_an_unreadable_model_file_is_one_clear_error(models, tmp_path, capsys, damage, file):
    folder = tmp_path / "model"
    shutil.copytree(models["conventional" if damage == "conventional" else "bcos"], folder)
    content = (folder / file).read_bytes()
    (folder / file).write_bytes(content[:len(content) // 2])  # an interrupted copy
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(folder), "--text", TEXT, "--out", str(tmp_path / "heatmap.html")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    what = "not a complete safetensors file" if file == "model.safetensors" else "not valid JSON"
    assert message.startswith(f"python -m bcos.explain: error: {folder / file} cannot be read: {what} (")
    assert message.endswith("The file is truncated or corrupted (an interrupted copy or save?): copy it again, or "
                            "export the model again")
    assert not (tmp_path / "heatmap.html").exists()


def test_a_truncated_checkpoint_is_one_clear_error(models, tmp_path, capsys):
    data = write_tiny_data(tmp_path / "data", {"train": 16, "validation": 4})
    module = train_tiny(make_tiny_model(tmp_path / "base"), data, tmp_path / "cache", steps=1)
    checkpoint = tmp_path / "last.ckpt"
    module.trainer.save_checkpoint(checkpoint)
    content = checkpoint.read_bytes()
    checkpoint.write_bytes(content[:len(content) // 2])
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(checkpoint), "--text", TEXT, "--out", str(tmp_path / "heatmap.html")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"python -m bcos.explain: error: {checkpoint} cannot be read: not a complete checkpoint (PytorchStreamReader "
        "failed reading zip archive: failed finding central directory). The file is truncated or corrupted (an "
        "interrupted copy or save?): copy it again, or export the model again")


def test_max_length_defaults_to_the_trained_length(models, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(models["bcos"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "trained_max_length": 4}))
    text = "a gripping film about a long day"
    recorded = main(["--model", str(folder), "--text", text, "--out", str(tmp_path / "recorded.html")])
    given = main(["--model", str(folder), "--text", text, "--out", str(tmp_path / "given.html"), "--max-length", "6"])
    unrecorded = main(["--model", str(models["bcos"]), "--text", text, "--out", str(tmp_path / "default.html")])
    tokenizer = bcos.load_tokenizer(str(folder))
    assert len(recorded["inputs"][0]["tokens"]) == 4 and recorded["max_length"] == 4
    assert len(given["inputs"][0]["tokens"]) == 6 and given["max_length"] == 6  # the flag wins
    assert len(unrecorded["inputs"][0]["tokens"]) == len(tokenizer(text)["input_ids"]) < DEFAULT_MAX_LENGTH
    assert unrecorded["max_length"] == DEFAULT_MAX_LENGTH == 128


def test_the_module_runs_as_a_command(models, tmp_path):
    out = tmp_path / "heatmap.html"
    result = subprocess.run([sys.executable, "-m", "bcos.explain", "--model", str(models["bcos"]), "--text", TEXT,
                             "--out", str(out)], capture_output=True, text=True, cwd=Path(__file__).parents[1],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and out.with_suffix(".json").is_file() and f"wrote {out}" in result.stdout
