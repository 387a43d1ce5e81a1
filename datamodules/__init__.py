"""LightningDataModules for B-cos language models."""

from datamodules.text_classification import PadCollator, TextClassificationDataModule

__all__ = ["PadCollator", "TextClassificationDataModule"]
