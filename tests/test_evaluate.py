"""``python -m bcos.evaluate``: the table it writes (Markdown, CSV, JSON) holds what ``bcos.explain`` and
``bcos.metrics`` give when called directly on the same inputs, and entropy, special-token share, prediction rates
and confidence intervals as computed by hand from them; bad inputs fail with clear errors before any work."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

import bcos
from bcos.evaluate import Predictions, load_classifier
from bcos.cli.evaluate import main
from bcos.explain import get_explainer, tokenizer_special_ids
from bcos.metrics import build_seqpg_instances, erasure_metrics, plausibility, pointing_game, special_affixes
from lightning_modules import SequenceClassifier, export_hf, export_module
from test_faithfulness_callback import train_tiny
from test_training import make_tiny_model, write_tiny_data

N_EXAMPLES = 8
SEED, RESAMPLES = 1, 500
PARAMS = {"integrated_gradients": {"n_steps": 4}, "lime": {"n_samples": 16}}
ROWS = [("bcos", "bcos"), ("integrated_gradients", "conventional"), ("integrated_gradients", "bcos"),
        ("lime", "conventional"), ("lime", "bcos")]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A trained tiny B-cos model as a Lightning checkpoint, a trained conventional one as a Hugging Face folder,
    and evaluation data whose rationale is the word that gives the label away (the second one)."""
    root = tmp_path_factory.mktemp("tiny_evaluate")
    data = write_tiny_data(root / "data", {"train": 32, "validation": 12})
    base = make_tiny_model(root / "base")
    module = train_tiny(base, data, root / "cache")
    module.trainer.save_checkpoint(root / "bcos.ckpt")
    export_module(module, bcos.load_tokenizer(str(base)), root / "bcos_hf")
    conventional = train_tiny(base, data, root / "cache", is_bcos=False, steps=20)
    export_hf(conventional.model, bcos.load_tokenizer(str(base)), root / "conventional")
    rows = [json.loads(line) for line in (data / "validation.jsonl").read_text().splitlines()]
    (root / "eval").mkdir()
    (root / "eval" / "validation.jsonl").write_text("".join(
        json.dumps({**row, "rationale": [int(i == 1) for i in range(len(row["text"].split()))]}) + "\n"
        for row in rows))
    (root / "eval" / "test.jsonl").write_text(json.dumps({"text": " ", "label": 0}) + "\n")
    return {"bcos": root / "bcos.ckpt", "bcos_hf": root / "bcos_hf", "conventional": root / "conventional",
            "data": root / "eval", "bcos_scale": float(module.logit_scale)}


def run(tiny: dict[str, Path], out: Path, *extra: str) -> dict:
    return main(["--bcos", str(tiny["bcos"]), "--conventional", str(tiny["conventional"]),
                 "--dataset", str(tiny["data"]), "--split", "validation", "--max-examples", str(N_EXAMPLES),
                 "--seqpg-segment-length", "3", "--method-params", json.dumps(PARAMS), "--out", str(out),
                 "--seed", str(SEED), "--bootstrap-resamples", str(RESAMPLES), *extra])


@pytest.fixture(scope="module")
def evaluated(tiny, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("evaluation")
    return run(tiny, out, "--methods", "bcos,integrated_gradients,lime", "--posthoc-on-bcos")


def direct(model: torch.nn.Module, scale: float, tokenizer, method: str, rows: list[dict]) -> dict[str, float]:
    """Every score of ``method`` on ``rows``, from ``bcos.explain`` / ``bcos.metrics`` called directly, and
    the per-example entropy and special-token share and the prediction rates computed by hand (numpy)."""
    batch = tokenizer([row["text"] for row in rows], padding=True, truncation=True, max_length=64,
                      return_tensors="pt", return_offsets_mapping=True)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], torch.tensor([row["label"] for row in rows])

    def predict_proba(input_ids, attention_mask):
        with torch.no_grad():
            return (model(input_ids=input_ids, attention_mask=attention_mask).logits * scale).softmax(-1)

    explainer = get_explainer(method, model, tokenizer, **PARAMS.get(method, {}))
    scores = explainer.attribute(ids, mask).scores
    special = tokenizer_special_ids(tokenizer)
    erasure = erasure_metrics(predict_proba, ids, mask, scores, replacement_id=tokenizer.mask_token_id,
                              special_token_ids=special, pad_token_id=tokenizer.pad_token_id)
    prefix, suffix = special_affixes(tokenizer)
    instances = build_seqpg_instances(predict_proba, ids, mask, labels, segment_length=3, prefix_ids=prefix,
                                      suffix_ids=suffix, special_token_ids=special, seed=SEED)
    assert len(instances) > 0
    segments = instances.labels.shape[1]
    segment_scores = explainer.attribute(instances.input_ids.repeat_interleave(segments, 0),
                                         instances.attention_mask.repeat_interleave(segments, 0),
                                         instances.labels.flatten()).scores
    # the tokenizer's own words: the whitespace words here, as the texts have no punctuation
    word_ids = torch.tensor([[-1 if word is None else word for word in batch.word_ids(i)] for i in range(len(rows))])
    rationale = torch.tensor([row["rationale"] for row in rows])
    plausible = plausibility(scores, word_ids, rationale)
    magnitude, real = scores.abs().double().numpy(), mask.bool().numpy()
    is_special = np.isin(ids.numpy(), special) & real
    content = real & ~is_special
    p = np.where(content, magnitude, 0) / np.where(content, magnitude, 0).sum(-1, keepdims=True)
    entropy = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(-1) / np.log(content.sum(-1))
    share = np.where(is_special, magnitude, 0).sum(-1) / np.where(real, magnitude, 0).sum(-1)
    predicted = predict_proba(ids, mask).argmax(-1).numpy()
    return {"comprehensiveness": erasure["comprehensiveness"].mean, "sufficiency": erasure["sufficiency"].mean,
            "seqpg": pointing_game(segment_scores.view(len(instances), segments, -1), instances).mean,
            "plausibility_auprc": plausible.auprc, "plausibility_token_f1": plausible.token_f1,
            "plausibility_iou_f1": plausible.iou_f1, "entropy": entropy.mean(), "special_token_share": share.mean(),
            "per_example_entropy": entropy, "per_example_special_token_share": share,
            **{f"predicted_rate_{k}": float((predicted == k).mean()) for k in range(2)},
            **{f"label_rate_{k}": float((labels.numpy() == k).mean()) for k in range(2)},
            "model_accuracy": float((predicted == labels.numpy()).mean())}


def with_intervals(names: list[str]) -> list[str]:
    return [column for name in names for column in (name, f"{name}_low", f"{name}_high")]


def test_the_table_holds_what_the_metrics_give_directly(evaluated, tiny):
    files = {kind: Path(path) for kind, path in evaluated["files"].items()}
    with files["csv"].open() as file:
        table = list(csv.DictReader(file))
    per_example = ["comprehensiveness", "sufficiency", "seqpg", "plausibility_auprc", "plausibility_token_f1"]
    sparsity = ["entropy", "special_token_share"]
    assert list(table[0]) == [
        "method", "model", *with_intervals(per_example), "plausibility_iou_f1", *with_intervals(sparsity),
        *("bcos_minus_" + name for name in with_intervals(per_example + sparsity)), "seconds_per_example",
        "model_accuracy", "n_examples", "n_seqpg_instances", "n_plausibility", "predicted_rate_0", "predicted_rate_1",
        "label_rate_0", "label_rate_1"]
    assert [(row["method"], row["model"]) for row in table] == ROWS
    saved = json.loads(files["json"].read_text())
    assert saved["n_examples"] == N_EXAMPLES and saved["settings"]["method_params"] == PARAMS
    assert saved["sampling"]["seed"] == SEED and saved["sampling"]["per_class"] == {"0": 4, "1": 4}
    assert saved["explainers"]["lime (bcos)"]["n_samples"] == 16 and saved["explainers"]["lime (bcos)"]["seed"] == 0
    assert saved["metric_settings_by_run"]["bcos (bcos)"]["comprehensiveness"]["replacement_id"] == 103  # [MASK]
    assert {"torch", "transformers", "captum", "bcos"} <= set(saved["versions"])
    markdown = files["md"].read_text()
    assert "| method | model | Comp ↑ | Suff ↓ | SeqPG ↑ |" in markdown and "| bcos | bcos |" in markdown

    lines = (tiny["data"] / "validation.jsonl").read_text().splitlines()
    rows = [json.loads(lines[number - 1]) for number in saved["example_rows"]]  # the stratified sample
    module = SequenceClassifier.load_from_checkpoint(tiny["bcos"]).eval()
    tokenizer = bcos.load_tokenizer(str(tiny["conventional"]))
    models = {"bcos": (module.model, float(module.logit_scale)),
              "conventional": (bcos.load_model(str(tiny["conventional"])).eval(), 1.0)}
    for row, saved_row in zip(table, saved["results"]):
        expected = direct(*models[row["model"]], tokenizer, row["method"], rows)
        for name, value in expected.items():
            if name.startswith("per_example_"):
                name = name.removeprefix("per_example_")
                assert saved_row["per_example"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
                continue
            assert float(row[name]) == pytest.approx(value, rel=1e-5, abs=1e-6), (row["method"], row["model"], name)
            assert saved_row[name] == pytest.approx(value, rel=1e-5, abs=1e-6)
        assert int(row["n_plausibility"]) == N_EXAMPLES  # every example has its rationale word within 64 tokens
        assert math.isfinite(float(row["seconds_per_example"])) and float(row["seconds_per_example"]) > 0
    assert saved["models"]["bcos"]["accuracy"] == pytest.approx(float(table[0]["model_accuracy"]))
    assert saved["models"]["bcos"]["logit_scale"] == pytest.approx(float(module.logit_scale))
    rates = saved["models"]["conventional"]["prediction_rates"]
    assert rates["predicted"] == [float(table[1]["predicted_rate_0"]), float(table[1]["predicted_rate_1"])]
    assert rates["labelled"] == [0.5, 0.5]


def explicit_interval(values: list, resamples: int, seed: int) -> tuple[float, float]:
    """The documented protocol written out in numpy: finite values, ``torch.randint(n, (resamples, n))`` from a
    generator seeded with ``seed``, the 2.5 and 97.5 percentiles of the resampled means."""
    values = np.array([np.nan if value is None else value for value in values], dtype=float)
    values = values[np.isfinite(values)]
    indices = torch.randint(len(values), (resamples, len(values)), generator=torch.Generator().manual_seed(seed))
    return tuple(np.percentile(values[indices.numpy()].mean(axis=1), [2.5, 97.5]))


def explicit_independent_interval(first: list, second: list, resamples: int, seed: int) -> tuple[float, tuple]:
    """The difference of two means over different samples, written out: ``first``'s index matrix, then
    ``second``'s, from one seeded generator; the 2.5 and 97.5 percentiles of the differences of resampled means."""
    first, second = (np.array(values, dtype=float) for values in (first, second))
    first, second = first[np.isfinite(first)], second[np.isfinite(second)]
    generator = torch.Generator().manual_seed(seed)
    rows = [torch.randint(len(values), (resamples, len(values)), generator=generator).numpy() for values in (first, second)]
    means = first[rows[0]].mean(axis=1) - second[rows[1]].mean(axis=1)
    return first.mean() - second.mean(), tuple(np.percentile(means, [2.5, 97.5]))


def test_intervals_follow_the_documented_bootstrap_of_the_per_example_scores(evaluated):
    saved = json.loads(Path(evaluated["files"]["json"]).read_text())
    assert {key: saved["uncertainty"][key] for key in ("level", "resamples", "seed")} == {
        "level": 0.95, "resamples": RESAMPLES, "seed": SEED}
    rows = {(row["method"], row["model"]): row for row in saved["results"]}
    bcos_row = rows["bcos", "bcos"]
    assert saved["uncertainty"]["independent_differences"] == [
        f"seqpg of {method} (conventional)" for method, model in rows if model == "conventional"]
    for key, row in rows.items():
        values = {**row["per_example"], **row["per_instance"]}
        assert sorted(values) == sorted(["comprehensiveness", "sufficiency", "plausibility_auprc",
                                         "plausibility_token_f1", "entropy", "special_token_share", "seqpg"])
        assert len(row["per_example"]["comprehensiveness"]) == N_EXAMPLES
        assert len(row["per_instance"]["seqpg"]) == row["n_seqpg_instances"] > 0
        for name, scores in values.items():
            assert np.nanmean(np.array(scores, dtype=float)) == pytest.approx(row[name], rel=1e-6), (key, name)
            low, high = explicit_interval(scores, RESAMPLES, SEED)
            assert (row[f"{name}_low"], row[f"{name}_high"]) == pytest.approx((low, high), rel=1e-9), (key, name)
        if key == ("bcos", "bcos"):
            assert not any(name.startswith("bcos_minus_") for name in row)
            continue
        assert sorted(name.removeprefix("bcos_minus_") for name in row
                      if name.startswith("bcos_minus_") and not name.endswith(("_low", "_high"))) == sorted(values)
        for name in values:
            source = "per_instance" if name == "seqpg" else "per_example"
            first, second = ([np.nan if v is None else v for v in scores[source][name]] for scores in (bcos_row, row))
            if name == "seqpg" and key[1] != "bcos":  # each model's own instances: resampled independently
                mean, (low, high) = explicit_independent_interval(first, second, RESAMPLES, SEED)
            else:  # the same examples (or instances): the paired bootstrap, written out
                difference = np.array(first, dtype=float) - np.array(second, dtype=float)
                mean, (low, high) = np.nanmean(difference), explicit_interval(list(difference), RESAMPLES, SEED)
            assert row[f"bcos_minus_{name}"] == pytest.approx(mean, rel=1e-9, abs=1e-12)
            assert (row[f"bcos_minus_{name}_low"], row[f"bcos_minus_{name}_high"]) == pytest.approx(
                (low, high), rel=1e-9, abs=1e-12), (key, name)
    markdown = Path(evaluated["files"]["md"]).read_text()
    comp = bcos_row["comprehensiveness"], bcos_row["comprehensiveness_low"], bcos_row["comprehensiveness_high"]
    assert "| bcos | bcos | {:.2f} [{:.2f}, {:.2f}] |".format(*comp) in markdown
    lime = rows["lime", "conventional"]
    cell = "{:+.2f} [{:+.2f}, {:+.2f}]".format(*(lime[f"bcos_minus_comprehensiveness{suffix}"]
                                                 for suffix in ("", "_low", "_high")))
    assert f"| lime | conventional | {cell}" in markdown
    assert "## B-cos minus each post-hoc method (95 % bootstrap interval, paired over the same examples)" in markdown
    assert "on another model, which builds its own instances, the two instance sets are resampled independently" in (
        markdown.replace("\n", " "))
    assert f"{RESAMPLES} resamples, seed {SEED}" in markdown


def test_a_decoder_checkpoint_is_refused_with_a_clear_error(tiny, tmp_path):
    from lightning_modules import CausalLanguageModel
    from test_causal_lm import make_tiny_decoder

    module = CausalLanguageModel(str(make_tiny_decoder(tmp_path / "decoder")), b=1.1)
    checkpoint = tmp_path / "decoder.ckpt"  # the parts of a Lightning checkpoint the loader reads
    contents = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(contents)
    torch.save(contents, checkpoint)
    with pytest.raises(ValueError) as error:
        bcos.load(checkpoint, kind="sequence-classification")
    assert str(error.value) == f"{checkpoint} holds a causal-lm model (LlamaForCausalLM), not a sequence-classification"
    assert bcos.load(checkpoint).kind == "causal-lm"


def test_checkpoints_and_exports_load_with_the_trained_logit_scale(tiny):
    from_checkpoint, from_export = bcos.load(tiny["bcos"]), bcos.load(tiny["bcos_hf"])
    assert from_checkpoint.is_bcos and from_export.is_bcos
    # the trained scale (the automatic one, set from the first batch), not a default
    assert from_export.logit_scale == pytest.approx(tiny["bcos_scale"]) and tiny["bcos_scale"] > 1
    assert from_checkpoint.logit_scale == pytest.approx(tiny["bcos_scale"])
    assert from_export.link == from_checkpoint.link == "sigmoid"  # trained with BCE
    assert bcos.load(tiny["bcos_hf"], logit_scale=2.0).logit_scale == 2.0
    with pytest.warns(DeprecationWarning, match="use bcos.load"):
        assert load_classifier(tiny["bcos_hf"]).logit_scale == from_export.logit_scale
    ids = torch.tensor([[101, 1037, 2204, 2143, 102], [101, 1037, 11771, 2143, 102]])
    mask = torch.ones_like(ids)
    torch.testing.assert_close(from_export.predict_proba(ids, mask), from_checkpoint.predict_proba(ids, mask))


@pytest.mark.parametrize("change, message", [
    ({"--bcos": "missing/model"}, "model not found: missing/model"),
    ({"--methods": "bcos,lime2"}, "unknown methods ['lime2']; known methods: bcos, integrated_gradients"),
    ({"--dataset": "sst3"}, "Unknown dataset 'sst3': not one of ['ag_news', 'hatexplain', 'imdb', 'sst2']"),
    ({"--split": "train"}, "split 'train' of dataset"),
    ({"--split": "test"}, "has no examples with a non-empty text and a label (empty split)"),
    ({"--metrics": "comprehensiveness,aopc"}, "argument --metrics: unknown metrics ['aopc']"),
    ({"--metrics": ","}, "argument --metrics: no metrics given; choose from comprehensiveness, sufficiency, seqpg"),
    ({"--fractions": "0,1.5,-2"}, "argument --fractions: erasure fractions must be in (0, 1] (shares of an "
                                  "example's content tokens), got 0.0, 1.5, -2.0"),
    ({"--max-examples": "-1"}, "argument --max-examples: must be at least 1, got -1"),
    ({"--seqpg-segments": "0"}, "argument --seqpg-segments: must be at least 2, got 0"),
    ({"--seqpg-confidence": "1.5"}, "argument --seqpg-confidence: must be in [0, 1), got 1.5"),
    ({"--bootstrap-resamples": "0"}, "argument --bootstrap-resamples: must be at least 1, got 0"),
    ({"--batch-size": "0"}, "argument --batch-size: must be at least 1, got 0"),
    ({"--method-params": '{"lime": {"n_samples": -3}}'}, "--method-params: lime n_samples must be a positive "
                                                          "integer, got -3"),
    ({"--text-column": "sentence"}, "Column 'sentence' not found in split 'validation'; columns present: "),
    ({"--rationale-column": "evidence"}, "--rationale-column 'evidence' is not a column of "),
    ({"--bcos": "CONVENTIONAL"}, "holds a conventional model"),
    ({"--out": "FILE/out"}, "FILE/out: cannot write there (Not a directory); choose a writable folder"),
])
def test_bad_inputs_fail_with_a_clear_error(tiny, tmp_path, capsys, change, message):
    (tmp_path / "FILE").write_text("")
    options = {"--bcos": str(tiny["bcos"]), "--conventional": str(tiny["conventional"]),
               "--dataset": str(tiny["data"]), "--split": "validation", "--methods": "bcos", "--out": str(tmp_path)}
    replace = {"CONVENTIONAL": str(tiny["conventional"]), "FILE/out": str(tmp_path / "FILE" / "out")}
    options.update({key: replace.get(value, value) for key, value in change.items()})
    with pytest.raises(SystemExit) as exit_info:
        main([item for pair in options.items() for item in pair])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "python -m bcos.evaluate: error: " in error and message.replace("FILE", str(tmp_path / "FILE")) in error
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("labels, message", [
    ([0, 1, 5, 0, 1, 7], "2 label(s) in column 'label' are not class ids 0..1 of the 2-class --bcos model (row 3: 5, "
                         "row 6: 7); fix the labels or evaluate a model with the data's classes"),
    ([0, 1.9, 1], "line 2: label 1.9 is not an integer class id"),
    ([True, False], "line 1: label True is not an integer class id"),
])
def test_labels_that_are_not_class_ids_are_refused_naming_file_and_row(tiny, tmp_path, capsys, monkeypatch, labels,
                                                                       message):
    """Labels outside the model's classes (or not integers) are not counted in any score: the command refuses them
    before explaining anything."""
    monkeypatch.setattr("bcos.cli.evaluate.evaluate", lambda *args: pytest.fail("the evaluation ran"))
    file = tmp_path / "validation.jsonl"
    file.write_text("".join(json.dumps({"text": f"a good film {i}", "label": label}) + "\n"
                            for i, label in enumerate(labels)))
    with pytest.raises(SystemExit) as exit_info:
        main(["--bcos", str(tiny["bcos"]), "--dataset", str(file), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "python -m bcos.evaluate: error: " + (
        f"{file}: {message}" if message.startswith("2 label") else f"{file}, {message}; label column 'label' must "
        "hold integers 0..N-1 (class names go in a 'label_name' column)")


def test_unwritable_outputs_fail_before_loading_a_model(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("bcos.cli.evaluate.load", lambda *args, **kwargs: pytest.fail("a model was loaded"))
    (tmp_path / "out" / "results.md").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["--bcos", str(tiny["bcos"]), "--dataset", str(tiny["data"]), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"python -m bcos.evaluate: error: --out {tmp_path / 'out'}: {tmp_path / 'out' / 'results.md'} exists and "
        "cannot be overwritten (a folder or read-only); remove it or choose another folder")


def test_a_late_write_failure_keeps_the_results_in_a_reported_folder(tiny, tmp_path, capsys, monkeypatch):
    import bcos.cli.evaluate as command

    written = []

    def fail_first(out, table, summary):
        written.append(Path(out))
        if len(written) == 1:
            raise OSError(28, "No space left on device")
        return command.write_report.__wrapped__(out, table, summary)

    fail_first.__wrapped__ = command.write_report
    monkeypatch.setattr(command, "write_report", fail_first)
    with pytest.raises(SystemExit) as exit_info:
        main(["--bcos", str(tiny["bcos"]), "--dataset", str(tiny["data"]), "--metrics", "comprehensiveness",
              "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 1
    rescue = written[1]
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"python -m bcos.evaluate: error: writing the results into {tmp_path / 'out'} failed ([Errno 28] No space "
        f"left on device); they are in {rescue}")
    saved = json.loads((rescue / "results.json").read_text())
    (row,) = saved["results"]
    assert row["method"] == "bcos" and len(row["per_example"]["comprehensiveness"]) == 12


def test_an_interrupted_evaluation_continues_with_the_methods_not_yet_done(tiny, tmp_path, monkeypatch):
    """The first run is interrupted while scoring its second method; rerunning scores only that one and writes
    the table a run without interruption writes; another setting or ``--fresh`` recomputes everything."""
    import bcos.cli.evaluate as command

    scored = []

    def counted(classifier, explainer, *args, **kwargs):
        scored.append(type(explainer).__name__)
        if interrupt_at == len(scored):
            raise KeyboardInterrupt
        return score_method(classifier, explainer, *args, **kwargs)

    score_method = command.score_method
    monkeypatch.setattr(command, "score_method", counted)
    methods = ["--methods", "bcos,saliency", "--metrics", "comprehensiveness,sufficiency,seqpg,entropy"]
    interrupt_at = 2
    with pytest.raises(KeyboardInterrupt):
        run(tiny, tmp_path / "out", *methods)
    assert sorted(path.name for path in (tmp_path / "out" / command.SAVED).iterdir()) == ["bcos__bcos.pt"]
    assert not (tmp_path / "out" / "results.json").exists()

    interrupt_at, scored[:] = 0, []
    resumed = run(tiny, tmp_path / "out", *methods)
    assert len(scored) == 1 and resumed["reused_results"] == ["bcos (bcos)"]
    uninterrupted = run(tiny, tmp_path / "whole", *methods)
    assert len(scored) == 3 and uninterrupted["reused_results"] == []
    for row, reference in zip(resumed["results"], uninterrupted["results"], strict=True):
        assert row.keys() == reference.keys()
        for name, value in row.items():
            if name != "seconds_per_example":
                assert value == reference[name] or (value != value and reference[name] != reference[name]), name

    scored[:] = []
    run(tiny, tmp_path / "out", *methods, "--fractions", "0.5")  # other settings: nothing is reused
    assert len(scored) == 2
    scored[:] = []
    again = run(tiny, tmp_path / "out", *methods, "--fractions", "0.5", "--fresh")
    assert len(scored) == 2 and again["reused_results"] == []


def test_saved_results_are_keyed_by_the_weights_and_unreadable_files_are_named(tmp_path):
    from bcos.evaluate.saved import load_result, model_digest

    model = torch.nn.Linear(3, 2)
    copy = torch.nn.Linear(3, 2)
    copy.load_state_dict(model.state_dict())
    assert model_digest(copy) == model_digest(model)
    with torch.no_grad():
        copy.weight[0, 0] += 1e-6
    assert model_digest(copy) != model_digest(model)
    broken = tmp_path / "bcos__bcos.pt"
    broken.write_bytes(b"not a torch file")
    with pytest.raises(ValueError) as error:
        load_result(broken, "key")
    assert str(error.value) == (f"cannot read the saved method result {broken} (UnpicklingError, the cause below); "
                                "delete it to recompute")


def test_max_examples_draws_a_seeded_sample_stratified_by_label(tiny, tmp_path):
    """A class-sorted file: the first N rows would all be of one class (and leave the pointing game without
    pairs); the sample has both classes in proportion, in file order, reproducibly with its seed."""
    from bcos.data import read_split
    from bcos.data.splits import stratified_sample

    labels = np.array([0] * 6 + [1] * 3 + [2])
    chosen = stratified_sample(labels, 5, seed=0)
    # shares 3, 1.5, 0.5: floors 3, 1, 0, the class without a row gets one
    assert np.bincount(labels[chosen]).tolist() == [3, 1, 1] and chosen.tolist() == sorted(set(chosen.tolist()))
    rng = np.random.default_rng(0)  # the documented draw: per class in label order, a permutation of its rows
    expected = [np.flatnonzero(labels == label)[rng.permutation(count)[:take]]
                for label, count, take in ((0, 6, 3), (1, 3, 1), (2, 1, 1))]
    assert chosen.tolist() == sorted(np.concatenate(expected).tolist())
    rows = [json.loads(line) for line in (tiny["data"] / "validation.jsonl").read_text().splitlines()]
    rows.sort(key=lambda row: row["label"])
    (tmp_path / "sorted").mkdir()
    (tmp_path / "sorted" / "validation.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    split = read_split(str(tmp_path / "sorted"), "validation", max_examples=6, seed=3)
    assert split.sampling["per_class"] == {0: 3, 1: 3} and split.sampling["seed"] == 3
    assert split.rows["source_row"] == sorted(split.rows["source_row"])
    assert split.rows["source_row"] == read_split(str(tmp_path / "sorted"), "validation", 6, seed=3).rows["source_row"]
    assert {tuple(read_split(str(tmp_path / "sorted"), "validation", 6, seed=s).rows["source_row"])
            for s in range(5)} != {tuple(split.rows["source_row"])}
    result = main(["--bcos", str(tiny["bcos"]), "--dataset", str(tmp_path / "sorted"), "--max-examples", "6",
                   "--seed", "3", "--metrics", "seqpg", "--seqpg-segment-length", "3", "--out", str(tmp_path / "out")])
    assert result["sampling"]["per_class"] == {0: 3, 1: 3} and result["results"][0]["n_seqpg_instances"] == 3
    assert result["example_rows"] == [row + 1 for row in split.rows["source_row"]]
    assert "stratified by label (seed 3): class 0: 3, class 1: 3." in Path(result["files"]["md"]).read_text()


def test_column_options_and_plausibility_coverage(tiny, tmp_path):
    """Columns named as in training's data options; a null rationale and a rationale truncated away each leave
    their example out of plausibility with a warning giving the count, the rest is scored (n in the table)."""
    rows = [json.loads(line) for line in (tiny["data"] / "validation.jsonl").read_text().splitlines()]
    rows[2]["rationale"] = None
    rows[5]["rationale"] = [0, 0, 0, 1]  # the 4th word: cut at 5 tokens ([CLS] a <word> film [SEP])
    (tmp_path / "standard").mkdir()
    (tmp_path / "standard" / "validation.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "renamed").mkdir()
    (tmp_path / "renamed" / "validation.jsonl").write_text("".join(json.dumps(
        {"sentence": row["text"], "target": row["label"], "evidence": row["rationale"]}) + "\n" for row in rows))
    common = ["--bcos", str(tiny["bcos"]), "--metrics", "plausibility", "--max-length", "5"]
    with pytest.warns(UserWarning) as warned:
        renamed = main([*common, "--dataset", str(tmp_path / "renamed"), "--text-column", "sentence",
                        "--label-column", "target", "--rationale-column", "evidence", "--out", str(tmp_path / "a")])
    messages = [str(w.message) for w in warned]
    assert (f"1 of the 12 rows of {tmp_path / 'renamed' / 'validation.jsonl'} have no rationale (null in column "
            "'evidence'): plausibility leaves them out and scores the others") in messages
    assert ("1 of the examples with a rationale lost every rationale word to truncation at --max-length 5 (bcos "
            "model's tokenizer): plausibility is scored on the other 10") in messages
    standard = main([*common, "--dataset", str(tmp_path / "standard"), "--out", str(tmp_path / "b")])
    (row,), (reference,) = renamed["results"], standard["results"]
    assert row["n_plausibility"] == 10 and row["plausibility_auprc"] == reference["plausibility_auprc"]
    for name, values in reference["per_example"].items():
        np.testing.assert_array_equal(row["per_example"][name], values)
    assert sum(value is not None and not math.isnan(value) for value in row["per_example"]["plausibility_auprc"]) == 10
    coverage = renamed["metric_settings_by_run"]["bcos (bcos)"]["plausibility"]["coverage"]
    assert coverage == {"examples": 12, "no_rationale": 1, "no_gold_words": 0, "truncated_away": 1, "scored": 10}
    assert " | plausibility n |" in Path(renamed["files"]["md"]).read_text()


def test_the_command_does_not_import_lightning():
    code = "import sys, bcos.cli.evaluate; print(sorted(m for m in sys.modules if m.startswith('lightning')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_callback_and_the_command_score_the_same_token_ids(tiny, tmp_path):
    """One data layer: the validation split as the training callback's probe (the data module's loader) and as
    ``python -m bcos.evaluate`` reads it holds the same token ids, masks, labels, word ids and rationales."""
    from types import SimpleNamespace

    from bcos.data import read_split, tokenize_split
    from callbacks import FaithfulnessCallback
    from datamodules import TextClassificationDataModule

    data = write_tiny_data(tmp_path / "data", {"train": 8, "validation": 10})
    rows = [json.loads(line) for line in (data / "validation.jsonl").read_text().splitlines()]
    rows[3]["text"] = "   "  # an empty text: both leave it out
    (data / "validation.jsonl").write_text("".join(
        json.dumps({**row, "rationale": [int(i == 1) for i in range(len(row["text"].split()))]}) + "\n"
        for row in rows))
    module = TextClassificationDataModule(str(data), str(tiny["conventional"]), max_length=64, eval_batch_size=4,
                                          cache_dir=str(tmp_path / "cache"))
    probe = FaithfulnessCallback(probe_size=100).probe(SimpleNamespace(val_dataloaders=module.val_dataloader()))
    split = read_split(str(data), "validation")
    examples = tokenize_split(split, bcos.load_tokenizer(str(tiny["conventional"])), max_length=64)
    assert len(examples) == len(rows) - 1 and split.skipped == {"empty_texts": 1, "unlabelled": 0}
    for name in ("input_ids", "attention_mask", "labels", "word_ids", "rationale"):
        assert torch.equal(getattr(probe, name), getattr(examples, name)), name
    assert examples.has_rationales


@pytest.mark.parametrize("predicted,labels", [([0, 1, 1, 2, 2, 0], [0, 1, 2, 2, 1, 1]), ([1, 1, 1], [0, 0, 1]),
                                              ([2, 2], [0, 1])])
def test_macro_f1_equals_scikit_learn(predicted, labels):
    result = Predictions(torch.tensor(predicted), torch.tensor(labels), num_classes=3)
    assert result.macro_f1 == pytest.approx(f1_score(labels, predicted, average="macro", zero_division=0))
