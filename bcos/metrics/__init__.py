"""Faithfulness and plausibility metrics on plain tensors plus a model callable.

- :func:`erasure_metrics` / :func:`comprehensiveness` / :func:`sufficiency`: AOPC over erasure fractions.
- :func:`build_seqpg_instances` / :func:`pointing_game`: the sequence pointing game.
- :func:`plausibility`: token AUPRC, token-F1 and IOU-F1 against human rationales, on words.
- :func:`normalized_entropy`, :func:`special_token_share`, :func:`prediction_rates`: sparsity and bias signatures.
- :func:`bootstrap_interval`, :func:`paired_difference_interval`, :func:`independent_difference_interval`: confidence
  intervals of mean scores and of their differences.
"""
from .erasure import (DEFAULT_FRACTIONS, AOPCResult, PredictProba, comprehensiveness, erasure_metrics,
                      sufficiency)
from .plausibility import PlausibilityResult, plausibility, word_scores
from .pointing_game import (PointingGameResult, SeqPGInstances, build_seqpg_instances, pointing_game,
                            special_affixes)
from .precision_recall import average_precision, pr_auc, precision_recall_curve
from .sparsity import normalized_entropy, prediction_rates, special_token_share
from .uncertainty import Interval, bootstrap_interval, independent_difference_interval, paired_difference_interval

__all__ = [
    "AOPCResult", "DEFAULT_FRACTIONS", "Interval", "PlausibilityResult", "PointingGameResult", "PredictProba", "SeqPGInstances",
    "average_precision", "bootstrap_interval", "build_seqpg_instances", "comprehensiveness", "erasure_metrics",
    "independent_difference_interval",
    "normalized_entropy", "paired_difference_interval", "plausibility", "pointing_game", "pr_auc",
    "precision_recall_curve", "prediction_rates", "special_affixes", "special_token_share", "sufficiency",
    "word_scores",
]
