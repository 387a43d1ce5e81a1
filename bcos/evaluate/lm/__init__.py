"""Decoder evaluation on minimal pairs (BLiMP, IOI): competence (target over foil) and the alignment of contrastive
explanations with the annotated evidence words, as a library and as a command::

    python -m bcos.evaluate.lm --bcos <B-cos decoder> --original <conventional decoder> --out results/lm

:mod:`.pairs` reads and tokenises the pairs (with the skip rules), :mod:`.scoring` scores them, :mod:`.run`
evaluates models on suites, :mod:`.report` writes Markdown and JSON; the command is :mod:`bcos.cli.evaluate_lm`.
"""
from .pairs import SKIP_REASONS, PairBatch, encode_pairs, read_pairs, suite_files
from .run import evaluate_pairs
from .scoring import competence, contrastive_attributions, evidence_alignment, next_token_log_probs

__all__ = ["SKIP_REASONS", "PairBatch", "competence", "contrastive_attributions", "encode_pairs", "evaluate_pairs",
           "evidence_alignment", "next_token_log_probs", "read_pairs", "suite_files"]
