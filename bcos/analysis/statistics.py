"""Global attribution statistics of an explained corpus (:mod:`.corpus`): which words a model relies on per class.

Everything is grouped by the explained class (the prediction). For a set of examples and a selection of their
words, the **logit share** is the sum of the selected words' contributions divided by the sum of the explained
logits (for a B-cos model the contributions of all tokens sum to the logit, so the shares of all words plus the
special tokens add up to 1), and the **absolute share** is the sum of their absolute contributions divided by the
sum of the absolute contributions of all tokens (in [0, 1], also for post-hoc methods that are not complete).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from .corpus import Corpus


def word_table(corpus: Corpus) -> pd.DataFrame:
    """One row per word occurrence: ``example`` (the corpus row's index), ``class`` (the explained class), ``word``,
    ``contribution``, ``special`` (a special token such as [CLS])."""
    rows = corpus.rows
    lengths = rows["words"].map(len).to_numpy()
    special = corpus.special_tokens
    words = np.concatenate([np.asarray(w, dtype=object) for w in rows["words"]]) if len(rows) else np.array([])
    table = pd.DataFrame({
        "example": np.repeat(rows.index.to_numpy(), lengths),
        "class": np.repeat(rows["target"].to_numpy(), lengths),
        "word": words,
        "contribution": np.concatenate([np.asarray(c, dtype=float) for c in rows["word_contributions"]])
        if len(rows) else np.array([], dtype=float),
    })
    table["special"] = table["word"].isin(special)
    return table


def shares(table: pd.DataFrame, selected: pd.Series, logits: float, absolute_total: float) -> tuple[float, float]:
    """``(logit share, absolute share)`` of the occurrences ``selected`` (a boolean mask of ``table``'s rows), given
    the sum of the explained ``logits`` and the sum of the absolute contributions of all tokens."""
    chosen = table.loc[selected, "contribution"]
    return float(chosen.sum() / logits), float(chosen.abs().sum() / absolute_total)


def _per_class(corpus: Corpus, table: pd.DataFrame,
               compute: Callable[[int, pd.DataFrame, float, float], pd.DataFrame]) -> pd.DataFrame:
    frames = []
    for target, occurrences in table.groupby("class", sort=True):
        logits = float(corpus.rows.loc[corpus.rows["target"] == target, "logit"].sum())
        frames.append(compute(int(target), occurrences, logits, float(occurrences["contribution"].abs().sum())))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _class_name(corpus: Corpus, target: int) -> str:
    return corpus.classes.get(target, str(target))


def top_words(corpus: Corpus, min_count: int = 5, top: int = 20) -> pd.DataFrame:
    """Per class, the ``top`` words (special tokens left out) with the largest mean contribution among those that
    occur at least ``min_count`` times in the examples explained as that class.

    Columns: ``class``, ``class_name``, ``word``, ``count``, ``mean_contribution``, ``logit_share``,
    ``absolute_share``; sorted by class, then mean contribution (largest first; ties by word).
    """
    if min_count < 1 or top < 1:
        raise ValueError(f"min_count and top must be at least 1, got {min_count} and {top}")
    table = word_table(_nonempty(corpus))

    def compute(target: int, occurrences: pd.DataFrame, logits: float, absolute_total: float) -> pd.DataFrame:
        words = occurrences[~occurrences["special"]].groupby("word")["contribution"].agg(
            count="size", mean_contribution="mean", total="sum", absolute=lambda c: c.abs().sum()).reset_index()
        words = words[words["count"] >= min_count]
        words = words.sort_values(["mean_contribution", "word"], ascending=[False, True], kind="stable").head(top)
        return pd.DataFrame({"class": target, "class_name": _class_name(corpus, target), "word": words["word"],
                             "count": words["count"], "mean_contribution": words["mean_contribution"],
                             "logit_share": words["total"] / logits,
                             "absolute_share": words["absolute"] / absolute_total})

    return _per_class(corpus, table, compute)


def special_token_shares(corpus: Corpus) -> pd.DataFrame:
    """Per class, the share of the explanations on special tokens ([CLS], [SEP], ...).

    Columns: ``class``, ``class_name``, ``examples``, ``mean_logit``, ``logit_share``, ``absolute_share``.
    """
    corpus = _nonempty(corpus)
    table = word_table(corpus)

    def compute(target: int, occurrences: pd.DataFrame, logits: float, absolute_total: float) -> pd.DataFrame:
        logit_share, absolute_share = shares(occurrences, occurrences["special"], logits, absolute_total)
        examples = int((corpus.rows["target"] == target).sum())
        return pd.DataFrame([{"class": target, "class_name": _class_name(corpus, target), "examples": examples,
                              "mean_logit": logits / examples, "logit_share": logit_share,
                              "absolute_share": absolute_share}])

    return _per_class(corpus, table, compute)


def sign_flips(corpus: Corpus, min_count: int = 5) -> pd.DataFrame:
    """Words (special tokens left out) whose mean contribution is positive in the examples of one class and
    negative in those of another, each class counting only if the word occurs there at least ``min_count`` times.

    Columns: ``word``, ``positive_class``, ``positive_mean``, ``positive_count``, ``negative_class``,
    ``negative_mean``, ``negative_count``, ``gap`` (positive minus negative mean); one row per word and pair of
    classes, sorted by gap (largest first; ties by word).
    """
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    corpus = _nonempty(corpus)
    table = word_table(corpus)
    means = table[~table["special"]].groupby(["word", "class"])["contribution"].agg(["mean", "size"]).reset_index()
    means = means[means["size"] >= min_count]
    pairs = means[means["mean"] > 0].merge(means[means["mean"] < 0], on="word", suffixes=("_positive", "_negative"))
    flips = pd.DataFrame({
        "word": pairs["word"],
        "positive_class": pairs["class_positive"].map(lambda c: _class_name(corpus, int(c))),
        "positive_mean": pairs["mean_positive"], "positive_count": pairs["size_positive"],
        "negative_class": pairs["class_negative"].map(lambda c: _class_name(corpus, int(c))),
        "negative_mean": pairs["mean_negative"], "negative_count": pairs["size_negative"],
        "gap": pairs["mean_positive"] - pairs["mean_negative"],
    })
    return flips.sort_values(["gap", "word"], ascending=[False, True], kind="stable").reset_index(drop=True)


def _nonempty(corpus: Corpus) -> Corpus:
    if not len(corpus.rows):
        raise ValueError("the corpus has no examples (an empty data set): explain at least one example")
    return corpus
