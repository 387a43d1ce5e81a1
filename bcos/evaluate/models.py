"""Deprecated loaders, kept for old callers: use :func:`bcos.load`, which loads every model the project uses."""
from __future__ import annotations

import os
import warnings

from ..handle import Model
from ..loader import load


def load_classifier(path: str | os.PathLike, logit_scale: float | None = None) -> Model:
    """Deprecated: ``bcos.load(path, kind="sequence-classification", logit_scale=logit_scale)``."""
    warnings.warn("bcos.evaluate.load_classifier is deprecated; use bcos.load(path, kind='sequence-classification')",
                  DeprecationWarning, stacklevel=2)
    return load(path, kind="sequence-classification", logit_scale=logit_scale)


def load_language_model(path: str | os.PathLike, logit_scale: float | None = None) -> Model:
    """Deprecated: ``bcos.load(path, kind="causal-lm", logit_scale=logit_scale)``."""
    warnings.warn("bcos.evaluate.load_language_model is deprecated; use bcos.load(path, kind='causal-lm')",
                  DeprecationWarning, stacklevel=2)
    return load(path, kind="causal-lm", logit_scale=logit_scale)
