"""Word statistics, community bias and the report of ``bcos.analysis`` against hand-computed values and
scikit-learn, and ``python -m bcos.analysis`` on a corpus folder."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from bcos.analysis import (Corpus, bias_aucs, generalised_mean, identity_shares, memberships, roc_auc, sign_flips,
                           special_token_shares, top_words)
from bcos.analysis.bias import communities_of
from bcos.analysis.corpus import META_FILE
from bcos.cli.analyze import main

SPECIAL = ["[CLS]", "[SEP]"]
CLASSES = {"0": "toxic", "1": "normal"}
# four explained sentences: (explained class, its logit, words, word contributions) -- the contributions sum to the
# logit, as a B-cos model's do
SENTENCES = [
    (0, 4.0, ["[CLS]", "good", "film", "[SEP]"], [0.5, 2.0, 1.0, 0.5]),
    (0, 1.0, ["[CLS]", "good", "plot", "[SEP]"], [0.25, 1.0, -0.5, 0.25]),
    (1, 3.0, ["[CLS]", "bad", "film", "[SEP]"], [1.0, 3.0, -1.0, 0.0]),
    (1, 2.0, ["[CLS]", "good", "bad", "[SEP]"], [0.0, -1.0, 2.0, 1.0]),
]


def hand_corpus(words_of_first: list[str] | None = None) -> Corpus:
    rows = pd.DataFrame([{"row": i, "target": target, "prediction": target, "logit": logit, "words": words,
                          "word_contributions": scores, "label": [0, 1, 1, 0][i],
                          "probabilities": [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]][i],
                          "annotator_targets": [[["X"], ["X"], ["None"]], [["None"]] * 3, [["X"], ["X", "Y"], ["Y"]],
                                                [["Y"], ["None"], ["Y"]]][i]}
                         for i, (target, logit, words, scores) in enumerate(SENTENCES)])
    if words_of_first is not None:
        rows.at[0, "words"] = words_of_first
    return Corpus(rows, {"classes": CLASSES, "special_tokens": SPECIAL, "chunks": 1,
                         "settings": {"model": "hand <b>made</b>", "method": "bcos", "dataset": "hand",
                                      "split": "test"}})


def test_top_words_per_class_equal_the_hand_computed_means_and_shares():
    table = top_words(hand_corpus(), min_count=1)
    # class 0: logits sum to 5, absolute contributions to 6; class 1: 5 and 9
    expected = pd.DataFrame([
        (0, "toxic", "good", 2, 1.5, 3 / 5, 3 / 6), (0, "toxic", "film", 1, 1.0, 1 / 5, 1 / 6),
        (0, "toxic", "plot", 1, -0.5, -0.5 / 5, 0.5 / 6),
        (1, "normal", "bad", 2, 2.5, 5 / 5, 5 / 9), (1, "normal", "film", 1, -1.0, -1 / 5, 1 / 9),
        (1, "normal", "good", 1, -1.0, -1 / 5, 1 / 9),
    ], columns=["class", "class_name", "word", "count", "mean_contribution", "logit_share", "absolute_share"])
    pd.testing.assert_frame_equal(table.reset_index(drop=True), expected, check_dtype=False)
    assert top_words(hand_corpus(), min_count=2)["word"].tolist() == ["good", "bad"]
    assert top_words(hand_corpus(), min_count=1, top=1)["word"].tolist() == ["good", "bad"]


def test_special_token_shares_equal_the_hand_computed_ones():
    table = special_token_shares(hand_corpus())
    assert table["examples"].tolist() == [2, 2]
    assert table["mean_logit"].tolist() == [2.5, 2.5]
    assert table["logit_share"].tolist() == pytest.approx([1.5 / 5, 2.0 / 5])
    assert table["absolute_share"].tolist() == pytest.approx([1.5 / 6, 2.0 / 9])


def test_sign_flips_are_the_words_positive_for_one_class_and_negative_for_another():
    flips = sign_flips(hand_corpus(), min_count=1)
    assert flips[["word", "positive_class", "negative_class"]].values.tolist() == [
        ["good", "toxic", "normal"], ["film", "toxic", "normal"]]
    assert flips["gap"].tolist() == [2.5, 2.0]
    assert flips[["positive_count", "negative_count"]].values.tolist() == [[2, 1], [1, 1]]
    assert sign_flips(hand_corpus(), min_count=2).empty  # "good" occurs once in class normal


def test_an_empty_corpus_and_bad_counts_are_refused():
    empty = Corpus(hand_corpus().rows.iloc[:0], hand_corpus().meta)
    with pytest.raises(ValueError, match="the corpus has no examples"):
        top_words(empty)
    with pytest.raises(ValueError, match="min_count and top must be at least 1, got 0 and 20"):
        top_words(hand_corpus(), min_count=0)


def test_roc_auc_equals_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 200) / 5  # many ties
    labels = rng.integers(0, 2, 200)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="needs positive and negative examples; got 3 positive and 0 negative"):
        roc_auc([0.1, 0.2, 0.3], [1, 1, 1])


def test_subgroup_bpsn_and_bnsp_aucs_equal_scikit_learn_on_their_selections():
    rng = np.random.default_rng(1)
    n = 120
    toxic = rng.integers(0, 2, n)
    inside = rng.random(n) < 0.3
    scores = np.clip(0.5 * toxic + 0.3 * inside + rng.normal(0, 0.3, n), 0, 1)  # the community raises the score
    aucs = bias_aucs(scores, toxic, pd.DataFrame({"X": inside})).iloc[0]
    assert (aucs["posts"], aucs["toxic_posts"]) == (inside.sum(), toxic[inside].sum())
    assert aucs["subgroup_auc"] == pytest.approx(roc_auc_score(toxic[inside], scores[inside]))
    bpsn = (~inside & (toxic == 1)) | (inside & (toxic == 0))
    bnsp = (~inside & (toxic == 0)) | (inside & (toxic == 1))
    assert aucs["bpsn_auc"] == pytest.approx(roc_auc_score(toxic[bpsn], scores[bpsn]))
    assert aucs["bnsp_auc"] == pytest.approx(roc_auc_score(toxic[bnsp], scores[bnsp]))
    assert aucs["bpsn_auc"] < aucs["subgroup_auc"] < aucs["bnsp_auc"]  # harmless mentions look toxic


def test_an_auc_without_both_labels_is_nan_with_a_warning():
    with pytest.warns(UserWarning, match="subgroup_auc of 'X' is undefined: the 2 posts it compares are all toxic"):
        aucs = bias_aucs([0.1, 0.9, 0.4, 0.6], [1, 1, 0, 1], pd.DataFrame({"X": [True, True, False, False]}))
    assert np.isnan(aucs.loc[0, "subgroup_auc"])


def test_generalised_mean_is_the_power_mean():
    assert generalised_mean([0.5, 0.8], -5) == pytest.approx(((0.5 ** -5 + 0.8 ** -5) / 2) ** (-1 / 5))
    assert generalised_mean([0.5, float("nan"), 0.8], -5) == generalised_mean([0.5, 0.8], -5)
    assert generalised_mean([0.0, 0.8], -5) == 0.0
    assert generalised_mean([0.3, 0.3, 0.3], -5) == pytest.approx(0.3)


def test_a_community_needs_two_annotator_votes_and_one_that_never_occurs_is_named():
    assert communities_of([["A"], ["A", "B"], ["None"]]) == {"A"}
    assert communities_of([["A", "A"], ["B"], ["None"]]) == set()  # one annotator counts once
    members = memberships(hand_corpus().rows["annotator_targets"], ["X", "Y"])
    assert members.values.tolist() == [[True, False], [False, False], [True, True], [False, True]]
    with pytest.raises(ValueError, match="community 'Martian' is the target of no post .*; communities present: "
                       "None, X, Y"):
        memberships(hand_corpus().rows["annotator_targets"], ["X", "Martian"])


def test_identity_shares_equal_the_hand_computed_ones():
    corpus = hand_corpus()
    members = pd.DataFrame({"X": [True, False, True, False]})
    table = identity_shares(corpus, members, {"X": ["FILM"]})  # compared lower-cased
    assert table[["class_name", "posts", "identity_words"]].values.tolist() == [["toxic", 1, 1], ["normal", 1, 1]]
    assert table["logit_share"].tolist() == pytest.approx([1.0 / 4.0, -1.0 / 3.0])
    assert table["absolute_share"].tolist() == pytest.approx([1.0 / 4.0, 1.0 / 5.0])
    with pytest.raises(ValueError, match="no identity words for community 'X'; the lexicon has Y"):
        identity_shares(corpus, members, {"Y": ["bad"]})


def write_corpus_folder(folder: Path, corpus: Corpus) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).write_text(json.dumps(corpus.meta))
    pq.write_table(pa.Table.from_pandas(corpus.rows, preserve_index=False), folder / "shard-00000.parquet")
    return folder


def test_the_report_escapes_tokens_embeds_png_charts_and_writes_the_tables(tmp_path):
    script = "<script>alert(1)</script>"
    corpus = write_corpus_folder(tmp_path / "corpus", hand_corpus([SPECIAL[0], script, "film", SPECIAL[1]]))
    (tmp_path / "lexicon.json").write_text(json.dumps({"X": ["film"], "Y": ["bad"]}))
    result = main(["--corpus", str(corpus), "--out", str(tmp_path / "report"), "--min-count", "1",
                   "--communities", "X,Y", "--normal-class", "normal", "--identity-words",
                   str(tmp_path / "lexicon.json")])
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<script" not in page.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "hand &lt;b&gt;made&lt;/b&gt;" in page
    charts = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(charts) == 3  # two classes' top words, the bias AUCs
    assert all(base64.b64decode(chart).startswith(b"\x89PNG\r\n\x1a\n") for chart in charts)
    written = pd.read_csv(tmp_path / "report" / "top_words_toxic.csv")
    assert written["word"].tolist() == [script, "film", "good", "plot"]  # film and good tie at 1.0: by word
    assert sorted(path.name for path in (tmp_path / "report").glob("*.csv")) == [
        "bias_aucs.csv", "bias_means.csv", "identity_shares.csv", "sign_flips.csv", "special_tokens.csv",
        "top_words_normal.csv", "top_words_toxic.csv"]
    aucs = pd.read_csv(tmp_path / "report" / "bias_aucs.csv")
    # toxicity score 1 - p(normal) = p(toxic); X: posts 0 (toxic, 0.9) and 2 (normal, 0.3)
    assert aucs.loc[0, "subgroup_auc"] == roc_auc_score([1, 0], [0.9, 0.3])
    assert result["bias_means"]["subgroup_auc"] == pytest.approx(generalised_mean(aucs["subgroup_auc"], -5))
    shares = pd.read_csv(tmp_path / "report" / "identity_shares.csv")
    assert shares.loc[shares["community"] == "X", "identity_words"].tolist() == [1, 1]  # "film" in posts 0 and 2


@pytest.mark.parametrize("extra, message", [
    (["--communities", "X,Martian"], "community 'Martian' is the target of no post"),
    (["--communities", "X", "--normal-class", "benign"],
     "unknown class 'benign'; the model's classes are 0 (toxic), 1 (normal)"),
    (["--min-count", "0"], "--min-count, --top and --min-votes must be at least 1"),
])
def test_bad_analysis_inputs_are_usage_errors(tmp_path, capsys, extra, message):
    corpus = write_corpus_folder(tmp_path / "corpus", hand_corpus())
    with pytest.raises(SystemExit) as exit_info:
        main(["--corpus", str(corpus), "--out", str(tmp_path / "report"), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_a_corpus_without_annotator_targets_asked_for_communities_is_told_how_to_get_them(tmp_path, capsys):
    corpus = hand_corpus()
    corpus = write_corpus_folder(tmp_path / "corpus", Corpus(corpus.rows.drop(columns="annotator_targets"),
                                                             corpus.meta))
    with pytest.raises(SystemExit):
        main(["--corpus", str(corpus), "--out", str(tmp_path / "report"), "--communities", "X"])
    assert "write it with --keep-columns annotator_targets" in capsys.readouterr().err
