"""Evaluation of explanations: faithfulness (comprehensiveness, sufficiency, sequence pointing game) and
plausibility of every explanation method on a dataset split, as a library and as a command::

    python -m bcos.evaluate --bcos <B-cos model> --conventional <conventional model> --dataset sst2 --out results/

:mod:`.core` scores methods on tokenised examples (:class:`bcos.data.Examples`) of a loaded model (a
:class:`bcos.Model`; also used by the training callback), :mod:`.intervals` draws the bootstrap confidence
intervals of the scores and of the differences to B-cos, :mod:`.report` writes the table; the data come from
:mod:`bcos.data` and the command is :mod:`bcos.cli.evaluate`.
Importing this package does not import Lightning.
"""
import warnings

from ..data import Examples
from ..handle import Model
from .core import (METRICS, PER_EXAMPLE_SCORES, PLAUSIBILITY_SCORES, SCORES, MethodResult, MetricSettings, Predictions,
                   accuracy, explain_in_chunks, predictions, score_method, seqpg_instances)
from .intervals import Bootstrap, difference_intervals, score_intervals
from .models import load_classifier

__all__ = ["METRICS", "PER_EXAMPLE_SCORES", "PLAUSIBILITY_SCORES", "SCORES", "Bootstrap", "Examples", "MethodResult",
           "MetricSettings", "Predictions", "accuracy", "difference_intervals", "explain_in_chunks", "load_classifier",
           "predictions", "score_intervals", "score_method", "seqpg_instances"]


def __getattr__(name: str):
    if name == "Classifier":
        warnings.warn("bcos.evaluate.Classifier is deprecated: it is bcos.Model (which also holds decoders)",
                      DeprecationWarning, stacklevel=2)
        return Model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
