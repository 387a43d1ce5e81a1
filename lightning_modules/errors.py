"""The error of a run whose configuration cannot work, found before its first training step."""
from __future__ import annotations


class RunConfigurationError(ValueError):
    """The run's options contradict its model, its checkpoint or its folders (e.g. sequences longer than the
    model's positions, an unwritable export folder, a resumed checkpoint trained with other hyperparameters).
    Raised before any training step; ``train.py`` reports it as a usage error (one message, exit status 2)."""
