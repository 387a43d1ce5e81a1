"""Conversion of transformers models into B-cos models."""
from .adapters import ADAPTERS, Adapter, adapter_for, supported_architectures, transformer_blocks
from .bcosify import BcosOptions, ConversionReport, bcosify

__all__ = ["ADAPTERS", "Adapter", "BcosOptions", "ConversionReport", "adapter_for", "bcosify", "supported_architectures", "transformer_blocks"]
