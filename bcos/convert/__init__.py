"""Conversion of transformers models into B-cos models."""
from .adapters import ADAPTERS, Adapter, adapter_for, supported_architectures, transformer_blocks
from .annealing import BcosAnnealing, annealing_progress
from .bcosify import BcosOptions, ConversionReport, bcosify
from .calibration import calibrate_output_gains, gain_layers

__all__ = ["ADAPTERS", "Adapter", "BcosAnnealing", "BcosOptions", "ConversionReport", "adapter_for", "annealing_progress", "bcosify", "calibrate_output_gains", "gain_layers", "supported_architectures", "transformer_blocks"]
