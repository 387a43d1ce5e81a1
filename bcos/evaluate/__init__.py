"""Evaluation of explanations: faithfulness (comprehensiveness, sufficiency, sequence pointing game) and
plausibility of every explanation method on a dataset split, as a library and as a command::

    python -m bcos.evaluate --bcos <B-cos model> --conventional <conventional model> --dataset sst2 --out results/

:mod:`.core` scores methods on tokenised examples (also used by the training callback), :mod:`.models` loads
trained classifiers, :mod:`.data` reads JSONL splits, :mod:`.report` writes the table, :mod:`.cli` is the command.
Importing this package does not import Lightning (only loading a ``.ckpt`` does).
"""
from .core import (METRICS, PLAUSIBILITY_SCORES, SCORES, Classifier, Examples, MethodResult, MetricSettings,
                   accuracy, explain_in_chunks, score_method, seqpg_instances)
from .models import load_classifier

__all__ = ["METRICS", "PLAUSIBILITY_SCORES", "SCORES", "Classifier", "Examples", "MethodResult", "MetricSettings",
           "accuracy", "explain_in_chunks", "load_classifier", "score_method", "seqpg_instances"]
