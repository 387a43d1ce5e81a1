"""LightningDataModules for B-cos language models."""

from bcos.data import PadCollator
from datamodules.language_modeling import LanguageModelingDataModule
from datamodules.text_classification import TextClassificationDataModule

__all__ = ["LanguageModelingDataModule", "PadCollator", "TextClassificationDataModule"]
