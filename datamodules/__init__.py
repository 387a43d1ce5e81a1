"""LightningDataModules for B-cos language models."""

from datamodules.language_modeling import LanguageModelingDataModule
from datamodules.text_classification import PadCollator, TextClassificationDataModule

__all__ = ["LanguageModelingDataModule", "PadCollator", "TextClassificationDataModule"]
