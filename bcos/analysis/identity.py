"""Identity words per HateXplain community, and the share of the explanations that falls on them.

:data:`IDENTITY_WORDS` is a small hand-written lexicon: for each of the ten communities of
:data:`~bcos.analysis.bias.HATEXPLAIN_COMMUNITIES`, the neutral words that name the community (its name in
HateXplain's target list, its singular and plural, adjective and the common neutral synonyms), in the spirit of the
identity terms of Dixon et al. 2018 ("Measuring and mitigating unintended bias in text classification"). Slurs are
deliberately left out: a share on these words measures how much a model relies on a *neutral mention* of the
community. Words are compared lower-cased with the words of the explanations (HateXplain's text is lower-cased).
Pass a lexicon of your own (``{community: [words]}``, e.g. from a JSON file) to measure other words.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from .corpus import Corpus
from .statistics import shares, word_table

IDENTITY_WORDS: dict[str, tuple[str, ...]] = {
    "African": ("african", "africans", "black", "blacks"),
    "Islam": ("islam", "islamic", "muslim", "muslims"),
    "Jewish": ("jew", "jews", "jewish", "judaism"),
    "Homosexual": ("gay", "gays", "homosexual", "homosexuals", "lesbian", "lesbians"),
    "Women": ("woman", "women", "female", "females", "girl", "girls"),
    "Refugee": ("refugee", "refugees", "immigrant", "immigrants", "migrant", "migrants"),
    "Arab": ("arab", "arabs", "arabic"),
    "Caucasian": ("caucasian", "caucasians", "white", "whites"),
    "Asian": ("asian", "asians", "chinese"),
    "Hispanic": ("hispanic", "hispanics", "latino", "latinos", "latina", "mexican", "mexicans"),
}


def identity_shares(corpus: Corpus, members: pd.DataFrame,
                    lexicon: Mapping[str, Sequence[str]] = IDENTITY_WORDS) -> pd.DataFrame:
    """Per community (a column of ``members``, ``[posts, communities]`` aligned with ``corpus.rows``) and explained
    class, over the community's posts: how often its identity words occur and the logit and absolute shares of the
    explanations on them (:func:`bcos.analysis.statistics.shares`).

    Columns: ``community``, ``class``, ``class_name``, ``posts``, ``identity_words`` (occurrences),
    ``logit_share``, ``absolute_share``.

    Raises:
        ValueError: a community without an entry in ``lexicon``, or ``members`` not aligned with the corpus.
    """
    if len(members) != len(corpus.rows):
        raise ValueError(f"got memberships of {len(members)} posts for a corpus of {len(corpus.rows)}")
    missing = [community for community in members.columns if community not in lexicon]
    if missing:
        raise ValueError(f"no identity words for community {missing[0]!r}; the lexicon has "
                         f"{', '.join(lexicon)}")
    table = word_table(corpus)
    lowered = table["word"].str.lower()
    rows = []
    for community in members.columns:
        posts = corpus.rows.index[members[community].to_numpy(bool)]
        words = {word.lower() for word in lexicon[community]}
        for target, occurrences in table[table["example"].isin(posts)].groupby("class", sort=True):
            selected = lowered[occurrences.index].isin(words)
            in_class = corpus.rows.loc[posts][corpus.rows.loc[posts, "target"] == target]
            logit_share, absolute_share = shares(occurrences, selected, float(in_class["logit"].sum()),
                                                 float(occurrences["contribution"].abs().sum()))
            rows.append({"community": community, "class": int(target),
                         "class_name": corpus.classes.get(int(target), str(target)), "posts": len(in_class),
                         "identity_words": int(selected.sum()), "logit_share": logit_share,
                         "absolute_share": absolute_share})
    return pd.DataFrame(rows)
