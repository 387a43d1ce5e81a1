"""LightningModules for B-cos language models (one base, :class:`BcosModule`), the Hugging Face export, and the
error of a run configured so that it cannot work (:class:`RunConfigurationError`)."""
import warnings

from lightning_modules.base import BcosModule
from lightning_modules.causal_lm import CausalLanguageModel
from lightning_modules.errors import RunConfigurationError
from lightning_modules.export import export_hf, export_module
from lightning_modules.sequence_classifier import SequenceClassifier

__all__ = ["BcosModule", "CausalLanguageModel", "RunConfigurationError", "SequenceClassifier", "export_hf",
           "export_module"]


def __getattr__(name: str):
    if name == "HFExport":  # moved: it is a callback
        from callbacks import HFExport

        warnings.warn("lightning_modules.HFExport is deprecated; use callbacks.HFExport", FutureWarning, stacklevel=2)
        return HFExport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
