"""``python -m bcos.analysis``: global attribution statistics of an explained corpus (written by ``python -m
bcos.explain_corpus``) as a standalone HTML report with the tables as CSV files.

    python -m bcos.analysis --corpus corpora/hatexplain_test --out reports/hatexplain_test

Per explained class: the words with the largest mean contribution (with their counts, at least ``--min-count``),
their share of the explained logit, the share on special tokens, and the words whose contribution flips sign between
classes. For a corpus with HateXplain's ``annotator_targets`` column: the community bias AUCs (subgroup, BPSN, BNSP
and their generalised mean) and the share of the explanations on each community's identity words.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..analysis.bias import HATEXPLAIN_COMMUNITIES, POWER, targeted_counts
from ..analysis.corpus import read_corpus
from ..analysis.identity import IDENTITY_WORDS
from ..analysis.report import write_report
from ..analysis.sections import bias_sections, community_bias, word_sections
from .common import names, new_parser, provenance

PROG = "python -m bcos.analysis"
TARGETS_COLUMN = "annotator_targets"


def parser() -> argparse.ArgumentParser:
    p = new_parser(PROG, __doc__)
    p.add_argument("--corpus", type=Path, required=True, help="a folder written by python -m bcos.explain_corpus")
    p.add_argument("--out", type=Path, required=True, help="the report folder (report.html and the CSV tables)")
    p.add_argument("--min-count", type=int, default=5, help="occurrences a word needs in a class to be listed")
    p.add_argument("--top", type=int, default=20, help="words listed per class")
    p.add_argument("--communities", type=names, default=None,
                   help=f"comma-separated target communities for the bias metrics (default, when the corpus has "
                   f"{TARGETS_COLUMN}: those of {', '.join(HATEXPLAIN_COMMUNITIES)} that occur)")
    p.add_argument("--normal-class", default="normal", help="the non-toxic class (name or id) of the bias metrics")
    p.add_argument("--min-votes", type=int, default=2, help="annotators who must name a community as the target")
    p.add_argument("--identity-words", type=Path, default=None,
                   help="a JSON file {community: [words]} (default: the lexicon of bcos.analysis.identity)")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the command on ``argv`` (default: the command line); returns ``files`` and the generalised means of the
    bias metrics (when computed). Bad inputs exit with a usage error (status 2) that says what is wrong."""
    p = parser()
    args = p.parse_args(argv)
    try:
        if args.min_count < 1 or args.top < 1 or args.min_votes < 1:
            raise ValueError("--min-count, --top and --min-votes must be at least 1")
        corpus = read_corpus(args.corpus)
        sections = word_sections(corpus, args.min_count, args.top)
        communities = args.communities
        if communities is None and TARGETS_COLUMN in corpus.rows.columns:
            present = targeted_counts(corpus.rows[TARGETS_COLUMN], args.min_votes)
            communities = [community for community in HATEXPLAIN_COMMUNITIES if present[community]]
        bias = None
        if communities:
            lexicon = IDENTITY_WORDS
            if args.identity_words is not None:
                if not args.identity_words.is_file():
                    raise FileNotFoundError(f"--identity-words file not found: {args.identity_words}")
                lexicon = json.loads(args.identity_words.read_text(encoding="utf-8"))
            bias = community_bias(corpus, communities, args.normal_class, TARGETS_COLUMN, args.min_votes, lexicon)
            sections += bias_sections(bias, POWER)
    except (ValueError, FileNotFoundError) as error:
        p.error(str(error))
    settings = corpus.meta["settings"]
    rows = corpus.rows
    facts = {"model": settings["model"], "method": settings["method"],
             "data": f"{settings['dataset']} / {settings['split']} ({len(rows)} examples)",
             "accuracy": f"{(rows['prediction'] == rows['label']).mean():.4f}",
             "made by": provenance(PROG, argv)["command"]}
    files = write_report(sections, args.out, f"What the model relies on: {settings['model']}", facts)
    print(f"wrote {files[0]} and {len(files) - 1} CSV tables")
    return {"files": [str(path) for path in files], "bias_means": None if bias is None else bias.means}
