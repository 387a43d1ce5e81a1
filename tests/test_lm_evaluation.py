"""Minimal-pair evaluation of decoders (BLiMP, IOI): skip rules, the alignment scores, and a tiny B-cos decoder
trained a few steps and evaluated on BLiMP rows, its table checked against an independent computation."""
from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import transformers

import bcos
from bcos.cli.evaluate_lm import main as evaluate_lm
from bcos.evaluate.lm import encode_pairs, evidence_alignment, read_pairs, suite_files
from bcos.evaluate.lm.pairs import select_files
from bcos.explain.registry import EXPLAINERS
from bcos.evaluate.intervals import Bootstrap
from bcos.evaluate.lm.scoring import random_reciprocal_rank
from bcos.metrics import bootstrap_interval
from datamodules import LanguageModelingDataModule
from lightning_modules import CausalLanguageModel
from lightning_modules.causal_lm import next_token_loss
from test_causal_lm import make_tiny_decoder

pytestmark = pytest.mark.usefixtures("one_thread")

SHARED_DATA = Path(os.environ.get("BCOS_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
BLIMP_SUBSETS = ["determiner_noun_agreement_1", "regular_plural_subject_verb_agreement_1"]
ROWS = 12


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return transformers.AutoTokenizer.from_pretrained(make_tiny_decoder(tmp_path_factory.mktemp("tok") / "m"))


def test_skip_rules_are_counted(tokenizer):
    rows = [{"prefix": "Eva has scared these", "target": "children", "foil": "child", "evidence": [3]},
            {"prefix": "Craig explored that", "target": "grocery store", "foil": "grocery stores", "evidence": [2]},
            {"prefix": "Paula", "target": "references", "foil": "reference", "evidence": [0]},
            {"prefix": "The cat", "target": "is", "foil": "are", "evidence": None}]
    pairs = encode_pairs(rows, tokenizer)
    assert pairs.skipped == {"no_evidence": 1, "evidence_is_whole_prefix": 1, "same_first_token": 1}
    assert len(pairs) == 1 and pairs.rows == rows[:1]
    assert pairs.evidence.tolist() == [[False, False, False, True]]
    words = pairs.word_ids[0][pairs.attention_mask[0].bool()].tolist()
    assert words[-1] == 3 and sorted(set(words) - {-1}) == [0, 1, 2, 3]
    assert pairs.target.tolist() == [tokenizer(" children")["input_ids"][0]]


def test_reciprocal_rank_and_evidence_share_on_known_scores(tokenizer):
    rows = [{"prefix": "a b c d", "target": "x", "foil": "y", "evidence": [1]},
            {"prefix": "a b c d", "target": "x", "foil": "y", "evidence": [0, 3]}]
    pairs = encode_pairs(rows, tokenizer)
    seq = pairs.input_ids.shape[1]
    scores = torch.zeros(2, seq)
    for row, word_scores in enumerate([[3.0, 2.0, -1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]):
        for token, word in enumerate(pairs.word_ids[row].tolist()):
            if word >= 0:  # one token per word here ("a", " b", ...)
                scores[row, token] = word_scores[word]
    aligned = evidence_alignment(scores, pairs)
    # row 0: evidence "b" (2.0) is second; positive mass 2 of 6. Row 1: all tied: 1 / (1 + 2/2); no positive mass
    torch.testing.assert_close(aligned["reciprocal_rank"], torch.tensor([0.5, 0.5]))
    assert aligned["evidence_share"][0].item() == pytest.approx(2 / 6) and math.isnan(aligned["evidence_share"][1])


def test_random_reciprocal_rank_is_the_mean_over_all_orders(tokenizer):
    rows = [{"prefix": "a b c d e", "target": "x", "foil": "y", "evidence": evidence} for evidence in ([2], [0, 4])]
    expected = []
    for evidence in ([2], [0, 4]):
        ranks = [1 / (1 + min(order.index(e) for e in evidence)) for order in itertools.permutations(range(5))]
        expected.append(sum(ranks) / len(ranks))
    assert random_reciprocal_rank(encode_pairs(rows, tokenizer)).tolist() == pytest.approx(expected)


def test_bad_suites_and_rows_get_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("BCOS_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="BCOS_DATA_DIR is not set"):
        suite_files("blimp")
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        suite_files("nope")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prefix": "a", "target": "b"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1 lacks the field\(s\) \['foil', 'evidence'\]"):
        read_pairs(bad)
    with pytest.raises(ValueError, match="unknown subsets \\['x'\\]"):
        suite_files(str(bad.parent), ["x"])


@pytest.mark.parametrize("evidence, bad", [([0, 3], "3"), ([-1], "-1"), ([1.0], "1.0"), ([True], "True"),
                                           (["0"], "'0'")])
def test_evidence_must_index_the_prefix_words(tmp_path, evidence, bad):
    file = tmp_path / "pairs.jsonl"
    good = {"prefix": "the cats sleep", "target": "x", "foil": "y", "evidence": [0, 2]}
    rows = (good, {**good, "evidence": None}, {**good, "evidence": evidence})
    file.write_text("\n".join(json.dumps(row) for row in rows))
    with pytest.raises(ValueError) as error:
        read_pairs(file)
    assert str(error.value) == f"{file}:3: evidence {bad} is not a word index into the 3 prefix words"
    assert len(read_pairs(file, max_rows=2)) == 2


@pytest.fixture
def two_suites(tmp_path, monkeypatch) -> Path:
    """$BCOS_DATA_DIR with blimp/{a,b}.jsonl and ioi/ioi.jsonl."""
    row = json.dumps({"prefix": "a b", "target": "c", "foil": "d", "evidence": [0]}) + "\n"
    for suite, names in (("blimp", ("a", "b")), ("ioi", ("ioi",))):
        (tmp_path / suite).mkdir()
        for name in names:
            (tmp_path / suite / f"{name}.jsonl").write_text(row)
    monkeypatch.setenv("BCOS_DATA_DIR", str(tmp_path))
    return tmp_path


def test_subsets_keep_per_suite_the_names_it_has(two_suites):
    assert select_files(["blimp", "ioi"], ["b"]) == {("blimp", "b"): two_suites / "blimp" / "b.jsonl"}
    assert list(select_files(["blimp", "ioi"], ["ioi", "a"])) == [("blimp", "a"), ("ioi", "ioi")]
    assert len(select_files(["blimp", "ioi"])) == 3
    with pytest.raises(ValueError) as error:
        select_files(["blimp", "ioi"], ["a", "x"])
    assert str(error.value) == ("unknown subsets ['x']: in none of the suites blimp, ioi; available: blimp/a, "
                                "blimp/b, ioi/ioi")


class _Stop(Exception):
    pass


def test_cli_usage_errors_come_before_loading_models(two_suites, tmp_path, monkeypatch, capsys):
    def no_loading(path, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr("bcos.cli.evaluate_lm.load", no_loading)
    known = ", ".join(EXPLAINERS)
    for extra, message in (
            (["--subsets", "x"], "unknown subsets ['x']: in none of the suites blimp, ioi; available: blimp/a, "
                                 "blimp/b, ioi/ioi"),
            (["--methods", "bcos,nope"], f"--methods names unknown methods ['nope']; available: {known}"),
            (["--method-params", '{"nope": {}}'],
             f"--method-params names unknown methods ['nope']; available: {known}"),
    ):
        with pytest.raises(SystemExit) as exit_:
            evaluate_lm(["--conventional", "m", "--out", str(tmp_path / "out"), *extra])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"python -m bcos.evaluate.lm: error: {message}"


def test_empty_suites_and_unwritable_out_fail_before_loading_models(two_suites, tmp_path, monkeypatch, capsys):
    def no_loading(path, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr("bcos.cli.evaluate_lm.load", no_loading)
    (two_suites / "blimp" / "a.jsonl").write_text("\n")
    (tmp_path / "file").write_text("")
    for extra, message in (
            (["--subsets", "a", "--out", str(tmp_path / "out")],
             f"no minimal pairs in {two_suites / 'blimp' / 'a.jsonl'} (empty file); give suites with rows"),
            (["--subsets", "b", "--out", str(tmp_path / "file" / "out")],
             f"--out {tmp_path / 'file' / 'out'}: cannot write there (Not a directory); choose a writable folder"),
    ):
        with pytest.raises(SystemExit) as exit_:
            evaluate_lm(["--conventional", "m", "--suites", "blimp", *extra])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"python -m bcos.evaluate.lm: error: {message}"


def test_suites_without_an_evaluable_row_are_an_error(two_suites, tokenizer, tmp_path, monkeypatch, capsys):
    """Every row skipped (here: no evidence) exits 2 with the skip counts instead of writing an empty report."""
    (two_suites / "blimp" / "b.jsonl").write_text(
        json.dumps({"prefix": "a b", "target": "c", "foil": "d", "evidence": None}) + "\n")
    monkeypatch.setattr("bcos.cli.evaluate_lm.load", lambda path, **kwargs: SimpleNamespace(
        model=torch.nn.Identity(), tokenizer=tokenizer, is_bcos=False))
    with pytest.raises(SystemExit) as exit_:
        evaluate_lm(["--conventional", "m", "--suites", "blimp", "--subsets", "b", "--out", str(tmp_path / "out"),
                     "--no-progress"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"python -m bcos.evaluate.lm: error: no row of {two_suites / 'blimp' / 'b.jsonl'} could be evaluated (rows "
        "skipped: {'no_evidence': 1, 'evidence_is_whole_prefix': 0, 'same_first_token': 0})")
    assert not (tmp_path / "out" / "results.json").exists()


def test_cli_subsets_and_method_params_reach_the_evaluation(two_suites, tmp_path, monkeypatch):
    seen = {}

    def evaluate(models, files, methods, params, *rest, **kwargs):
        seen.update(files=files, params=params)
        raise _Stop

    monkeypatch.setattr("bcos.cli.evaluate_lm.load", lambda path, **kwargs: SimpleNamespace(model=torch.nn.Identity()))
    monkeypatch.setattr("bcos.cli.evaluate_lm.evaluate_pairs", evaluate)
    with pytest.raises(_Stop), pytest.warns(FutureWarning) as warned:  # the old flag names still work
        evaluate_lm(["--original", "m", "--out", str(tmp_path / "out"), "--subsets", "b", "--max-rows", "3",
                     "--method-params", '{"integrated_gradients": {"internal_batch_size": 2}, "occlusion": {"x": 1}}'])
    assert [str(w.message) for w in warned] == ["--original is deprecated; use --conventional",
                                                "--max-rows is deprecated; use --max-examples"]
    assert seen["files"] == {("blimp", "b"): two_suites / "blimp" / "b.jsonl"}
    assert seen["params"] == {"integrated_gradients": {"n_steps": 10, "internal_batch_size": 2}, "occlusion": {"x": 1}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, list[float]]:
    """A tiny B-cos Llama trained for a few steps on BLiMP sentences, exported; and its held-out losses."""
    if not (SHARED_DATA / "blimp").is_dir():
        pytest.skip(f"no BLiMP data at {SHARED_DATA / 'blimp'} (set BCOS_DATA_DIR)")
    root = tmp_path_factory.mktemp("lm_eval")
    model_dir = make_tiny_decoder(root / "original")
    text = root / "sentences.txt"
    sentences = [row["sentence_good"] for row in read_pairs(SHARED_DATA / "blimp" / f"{BLIMP_SUBSETS[0]}.jsonl", 300)]
    text.write_text("\n".join(sentences))
    data = LanguageModelingDataModule(str(text), str(model_dir), block_size=32, batch_size=8, max_eval_blocks=4)
    module = CausalLanguageModel(str(model_dir), b=1.1, learning_rate=2e-2, warmup_fraction=0.0)
    data.setup()
    probe = data.blocks["validation"]

    def held_out_loss() -> float:
        module.eval()
        with torch.no_grad():
            return next_token_loss(module(probe), probe, torch.ones_like(probe)).item()

    losses = [held_out_loss()]
    module.train()
    L.Trainer(accelerator="cpu", max_steps=10, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0).fit(module, datamodule=data)
    losses.append(held_out_loss())
    module.model.save_pretrained(root / "bcos")
    data.tokenizer.save_pretrained(root / "bcos")
    return model_dir, root / "bcos", losses


def assert_competence_recomputed(results: dict, name: str, folder: Path, tokenizer, subsets=BLIMP_SUBSETS,
                                 bootstrap: Bootstrap | None = None) -> None:
    """The pooled competence row of model ``name`` equals accuracy and probability gap recomputed pair by pair from
    the model's own logits (one unpadded prefix at a time); with ``bootstrap``, each subset's accuracy interval
    equals the bootstrap interval of the recomputed per-pair correctness."""
    model = bcos.load_model(str(folder), task="causal-lm").eval()
    correct, gaps = [], []
    for subset in subsets:
        first = len(correct)
        for row in read_pairs(SHARED_DATA / "blimp" / f"{subset}.jsonl", ROWS):
            target = tokenizer(" " + row["target"])["input_ids"][0]
            foil = tokenizer(" " + row["foil"])["input_ids"][0]
            words = row["prefix"].split()
            if not row["evidence"] or len(set(row["evidence"])) == len(words) or target == foil:
                continue
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([tokenizer(row["prefix"])["input_ids"]])).logits[0, -1]
            probabilities = torch.softmax(logits.double(), -1)
            correct.append(float(probabilities[target] > probabilities[foil]))
            gaps.append(float(probabilities[target] - probabilities[foil]))
        if bootstrap is not None:
            expected = bootstrap_interval(torch.tensor(correct[first:]), bootstrap.level, bootstrap.resamples,
                                          bootstrap.seed)
            subset_row = next(r for r in results["competence"] if r["model"] == name and r["subset"] == subset)
            assert (subset_row["accuracy_low"], subset_row["accuracy_high"]) == pytest.approx(
                (expected.low, expected.high), nan_ok=True)
    row = next(r for r in results["competence"] if r["model"] == name and r["subset"] == "all")
    assert row["n_pairs"] == len(correct) > 0
    assert row["accuracy"] == pytest.approx(sum(correct) / len(correct))
    assert row["probability_gap"] == pytest.approx(sum(gaps) / len(gaps), abs=1e-6)


def test_a_trained_tiny_bcos_decoder_is_evaluated_on_blimp(trained, tmp_path, monkeypatch):
    original_dir, bcos_dir, losses = trained
    assert losses[1] < losses[0] - 0.5, losses  # the loss fell
    monkeypatch.setenv("BCOS_DATA_DIR", str(SHARED_DATA))
    results = evaluate_lm(["--bcos", str(bcos_dir), "--conventional", str(original_dir), "--suites", "blimp",
                           "--subsets", ",".join(BLIMP_SUBSETS), "--max-examples", str(ROWS),
                           "--method-params", '{"integrated_gradients": {"n_steps": 4}}', "--batch-size", "5",
                           "--bootstrap-resamples", "300", "--seed", "7", "--out", str(tmp_path / "out"),
                           "--no-progress"])
    assert results["uncertainty"]["resamples"] == 300 and results["uncertainty"]["seed"] == 7
    assert (tmp_path / "out" / "results.md").read_text().count("| blimp |") > 10
    assert json.loads((tmp_path / "out" / "results.json").read_text())["competence"]

    # skipped rows: counted from the data itself
    skipped = {row["subset"]: row for row in results["skipped"]}
    tokenizer = transformers.AutoTokenizer.from_pretrained(bcos_dir)
    for subset in BLIMP_SUBSETS:
        rows = read_pairs(SHARED_DATA / "blimp" / f"{subset}.jsonl", ROWS)
        no_evidence = sum(not row["evidence"] for row in rows)
        assert skipped[subset]["no_evidence"] == no_evidence and skipped[subset]["n_rows"] == ROWS
        assert sum(skipped[subset][k] for k in ("no_evidence", "evidence_is_whole_prefix", "same_first_token",
                                                "n_pairs")) == ROWS
    assert skipped["determiner_noun_agreement_1"]["same_first_token"] >= 1  # "grocery store" / "grocery stores"
    assert skipped["regular_plural_subject_verb_agreement_1"]["evidence_is_whole_prefix"] >= 1

    # competence: recomputed here from the models' own logits, pair by pair
    for name, folder in (("conventional", original_dir), ("bcos", bcos_dir)):
        assert_competence_recomputed(results, name, folder, tokenizer, bootstrap=Bootstrap(300, 7))

    # alignment: one row per method and subset on the right model, scores in range and not constant
    alignment = [row for row in results["alignment"] if row["subset"] != "all"]
    methods = {(row["model"], row["method"]) for row in alignment}
    assert methods == {("-", "random"), ("bcos", "bcos"), *(("conventional", m) for m in
                                                             ("input_x_gradient", "saliency", "integrated_gradients",
                                                              "occlusion"))}
    for row in alignment:
        assert 0 < row["mrr"] <= 1
        assert row["n_pairs"] < 2 or row["mrr_low"] <= row["mrr"] <= row["mrr_high"]
        assert row["method"] == "random" or 0 <= row["evidence_share"] <= 1
        assert 0 <= row["evidence_share_pairs"] <= row["n_pairs"]
        assert row["method"] != "random" or row["evidence_share_pairs"] == 0  # chance level: no share
    assert any(row["evidence_share_pairs"] > 0 for row in alignment)
    report = (tmp_path / "out" / "results.md").read_text()
    assert "| share pairs |" in report and "95 % percentile bootstrap intervals over the pairs (300 resamples, seed 7)" in report
    bcos_all = next(r for r in results["competence"] if r["model"] == "bcos" and r["subset"] == "all")
    assert f"| {100 * bcos_all['accuracy']:.1f} [{100 * bcos_all['accuracy_low']:.1f}, " in report
    assert len({round(row["mrr"], 6) for row in alignment}) > 3


def test_the_conventional_decoder_may_be_of_a_family_without_a_bcos_adapter(tmp_path, monkeypatch):
    """A conventional OLMo (no adapter in bcosify) is scored and explained by the post-hoc methods."""
    if not (SHARED_DATA / "blimp").is_dir():
        pytest.skip(f"no BLiMP data at {SHARED_DATA / 'blimp'} (set BCOS_DATA_DIR)")
    original = make_tiny_decoder(tmp_path / "olmo", "olmo")
    monkeypatch.setenv("BCOS_DATA_DIR", str(SHARED_DATA))
    results = evaluate_lm(["--conventional", str(original), "--suites", "blimp", "--subsets", BLIMP_SUBSETS[0],
                           "--max-examples", str(ROWS), "--methods", "input_x_gradient,occlusion", "--batch-size", "5",
                           "--out", str(tmp_path / "out"), "--no-progress"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(original)
    assert_competence_recomputed(results, "conventional", original, tokenizer, BLIMP_SUBSETS[:1])
    alignment = [row for row in results["alignment"] if row["subset"] != "all"]
    assert {(row["model"], row["method"]) for row in alignment} == {
        ("-", "random"), ("conventional", "input_x_gradient"), ("conventional", "occlusion")}
    assert all(0 < row["mrr"] <= 1 for row in alignment)
