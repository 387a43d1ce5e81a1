"""Loading trained classifiers: Hugging Face exports and Lightning checkpoints."""
from __future__ import annotations

from pathlib import Path

import torch

from ..hub import load_model, load_tokenizer
from .core import Classifier


def is_language_model_checkpoint(path: str | Path) -> bool:
    """Whether the Lightning ``.ckpt`` at ``path`` holds a decoder (``CausalLanguageModel``): its hyperparameters
    lack ``num_labels`` or its weights include an ``lm_head``."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    state = checkpoint.get("state_dict", {})
    return ("num_labels" not in checkpoint.get("hyper_parameters", {})
            or any(key.startswith("lm_head.") or ".lm_head." in key for key in state))


def load_classifier(path: str | Path, logit_scale: float | None = None) -> Classifier:
    """Load a fine-tuned sequence classifier (in eval mode, on the CPU) with its tokenizer.

    Args:
        path: a Hugging Face model folder (the ``hf_export/`` a training run writes; B-cos or conventional), or a
            Lightning ``.ckpt`` of ``lightning_modules.SequenceClassifier`` (needs the training extras; Lightning
            is imported only then).
        logit_scale: the inverse temperature of the probabilities; None: the one the model was trained with (the
            ``.ckpt``'s ``logit_scale``, or ``config.logit_scale`` of a training run's export; 1 when absent).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is neither a ``.ckpt`` file nor a folder with a ``config.json``, or is the ``.ckpt``
            of a language model.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path} (expected a Hugging Face model folder, e.g. a training "
                                "run's hf_export/, or a Lightning .ckpt file)")
    if path.is_file() and path.suffix == ".ckpt":
        from lightning_modules import SequenceClassifier  # lazy: the library does not depend on Lightning

        if is_language_model_checkpoint(path):
            raise ValueError(f"{path} is a checkpoint of a language model (lightning_modules.CausalLanguageModel), "
                             "not of a sequence classifier; pass the run's hf_export/ folder instead, or load it "
                             "with CausalLanguageModel.load_from_checkpoint")

        module = SequenceClassifier.load_from_checkpoint(path, map_location="cpu")
        model, tokenizer = module.model, load_tokenizer(module.hparams.model_name_or_path)
        saved_scale = float(module.logit_scale)
    elif (path / "config.json").is_file():
        model, tokenizer = load_model(str(path)), load_tokenizer(str(path))
        saved_scale = float(getattr(model.config, "logit_scale", 1.0))
    else:
        raise ValueError(f"{path} is neither a Lightning .ckpt file nor a Hugging Face model folder (no config.json)")
    return Classifier(model.eval(), tokenizer, saved_scale if logit_scale is None else logit_scale, str(path))


def load_language_model(path: str | Path, logit_scale: float | None = None) -> Classifier:
    """Load a decoder (B-cos or conventional; a Hugging Face folder or a hub id) in eval mode with its tokenizer.

    The tokenizer truncates on the left, so that a long prompt keeps its end (the next token is predicted after it).
    ``logit_scale``: None uses the one the model was trained with (``config.logit_scale``; 1 when absent).
    """
    model = load_model(str(path), task="causal-lm").eval()
    tokenizer = load_tokenizer(str(path))
    tokenizer.truncation_side = "left"
    scale = getattr(model.config, "logit_scale", 1.0) if logit_scale is None else logit_scale
    return Classifier(model, tokenizer, float(scale), str(path))
