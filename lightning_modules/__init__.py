"""LightningModules for B-cos language models, and the Hugging Face export callback."""
from lightning_modules.causal_lm import CausalLanguageModel
from lightning_modules.export import HFExport, export_hf, export_module
from lightning_modules.sequence_classifier import SequenceClassifier

__all__ = ["CausalLanguageModel", "HFExport", "SequenceClassifier", "export_hf", "export_module"]
