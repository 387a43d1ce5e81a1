"""Conversion of transformers models into B-cos models."""
from .adapters import ADAPTERS, Adapter, adapter_for, supported_architectures, transformer_blocks
from .annealing import BcosAnnealing, annealing_progress
from .bcosify import BcosOptions, ConversionReport, bcosify

__all__ = ["ADAPTERS", "Adapter", "BcosAnnealing", "BcosOptions", "ConversionReport", "adapter_for", "annealing_progress", "bcosify", "supported_architectures", "transformer_blocks"]
