"""The analysis of an explained corpus as report sections: the word statistics per class and, for data with
annotated target communities (HateXplain), the community bias and the identity-word shares."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .bias import POWER, bias_aucs, memberships, summary
from .corpus import Corpus
from .identity import IDENTITY_WORDS, identity_shares
from .report import Section, bar_chart, grouped_bar_chart
from .statistics import sign_flips, special_token_shares, top_words


@dataclass(frozen=True)
class CommunityBias:
    """``aucs`` (per community, :func:`~bcos.analysis.bias.bias_aucs`), ``means`` (their generalised means) and
    ``identity`` (per community and class, :func:`~bcos.analysis.identity.identity_shares`)."""

    aucs: pd.DataFrame
    means: dict[str, float]
    identity: pd.DataFrame


def class_id(corpus: Corpus, name: str) -> int:
    """The id of the class named ``name``; raises ValueError naming the classes there are."""
    for index, label in corpus.classes.items():
        if label == name or str(index) == name:
            return index
    raise ValueError(f"unknown class {name!r}; the model's classes are "
                     f"{', '.join(f'{index} ({label})' for index, label in corpus.classes.items())}")


def community_bias(corpus: Corpus, communities: Sequence[str], normal_class: str = "normal",
                   targets_column: str = "annotator_targets", min_votes: int = 2,
                   lexicon: Mapping[str, Sequence[str]] = IDENTITY_WORDS, power: float = POWER) -> CommunityBias:
    """The bias metrics of the toxicity score ``1 - p(normal_class)`` for the binary label "not ``normal_class``",
    per community (targeted by at least ``min_votes`` annotators in ``targets_column``), and the identity-word
    shares.

    Raises:
        ValueError: an unknown class or column, or a community that no post targets.
    """
    if targets_column not in corpus.rows.columns:
        raise ValueError(f"unknown column {targets_column!r}: the corpus has {', '.join(corpus.rows.columns)}; "
                         "write it with --keep-columns annotator_targets (HateXplain's validation and test splits)")
    normal = class_id(corpus, normal_class)
    members = memberships(corpus.rows[targets_column], communities, min_votes)
    scores = 1.0 - np.array([p[normal] for p in corpus.rows["probabilities"]])
    toxic = (corpus.rows["label"].to_numpy() != normal).astype(int)
    aucs = bias_aucs(scores, toxic, members)
    return CommunityBias(aucs, summary(aucs, power), identity_shares(corpus, members, lexicon))


def word_sections(corpus: Corpus, min_count: int = 5, top: int = 20) -> list[Section]:
    """The special-token shares, one section per class with its top words (chart and table), and the sign
    flips."""
    specials = special_token_shares(corpus)
    sections = [Section("Special tokens", "Share of the explained logit (and of the absolute attribution) on special "
                        "tokens, per explained class.", tables={"special_tokens": specials})]
    words = top_words(corpus, min_count, top)
    for target, table in words.groupby("class", sort=True):
        name = corpus.classes.get(int(target), str(target))
        sections.append(Section(
            f"Class {name}: words with the largest mean contribution",
            f"Words occurring at least {min_count} times in the examples explained as {name}.",
            charts=[bar_chart(table["word"].tolist(), table["mean_contribution"].tolist(),
                              f"class {name}: top {len(table)} words", "mean contribution")] if len(table) else [],
            tables={f"top_words_{name}": table.reset_index(drop=True)}))
    sections.append(Section("Words whose contribution flips sign between classes",
                            f"Mean contribution positive for one explained class and negative for another (each at "
                            f"least {min_count} occurrences).", tables={"sign_flips": sign_flips(corpus, min_count)}))
    return sections


def bias_sections(bias: CommunityBias, power: float = POWER) -> list[Section]:
    """The AUCs per community (chart and table), their generalised means and the identity-word shares."""
    means = pd.DataFrame([{"metric": metric, f"generalised_mean_p{power:g}": value}
                          for metric, value in bias.means.items()])
    return [
        Section("Community bias (HateXplain)", "Subgroup, BPSN and BNSP ROC AUC of the toxicity score 1 - p(normal) "
                "per target community (Borkan et al. 2019), and their generalised mean.",
                charts=[grouped_bar_chart(bias.aucs, "community", ["subgroup_auc", "bpsn_auc", "bnsp_auc"],
                                          "bias AUCs per community")],
                tables={"bias_aucs": bias.aucs, "bias_means": means}),
        Section("Attribution on identity words", "Per community and explained class, over the community's posts: the "
                "share of the explained logit and of the absolute attribution on the community's identity words.",
                tables={"identity_shares": bias.identity}),
    ]
