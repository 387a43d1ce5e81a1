"""Faithfulness and plausibility metrics on plain tensors plus a model callable.

- :func:`erasure_metrics` / :func:`comprehensiveness` / :func:`sufficiency`: AOPC over erasure fractions.
- :func:`build_seqpg_instances` / :func:`pointing_game`: the sequence pointing game.
- :func:`plausibility`: token AUPRC, token-F1 and IOU-F1 against human rationales, on words.
"""
from .erasure import (DEFAULT_FRACTIONS, AOPCResult, PredictProba, comprehensiveness, erasure_metrics,
                      sufficiency)
from .plausibility import PlausibilityResult, plausibility, word_scores
from .pointing_game import (PointingGameResult, SeqPGInstances, build_seqpg_instances, pointing_game,
                            special_affixes)
from .precision_recall import average_precision, pr_auc, precision_recall_curve

__all__ = [
    "AOPCResult", "DEFAULT_FRACTIONS", "PlausibilityResult", "PointingGameResult", "PredictProba", "SeqPGInstances",
    "average_precision", "build_seqpg_instances", "comprehensiveness", "erasure_metrics", "plausibility",
    "pointing_game", "pr_auc", "precision_recall_curve", "special_affixes", "sufficiency", "word_scores",
]
