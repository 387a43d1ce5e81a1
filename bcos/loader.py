"""One loader for every model the project uses: a hub id, a saved folder (B-cos or conventional) or a Lightning
``.ckpt`` (read as plain tensors and hyperparameters, without Lightning), returned as a :class:`~bcos.handle.Model`.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
import transformers
from huggingface_hub.errors import HFValidationError

from .handle import Model, recorded_probabilities
from .hub import (ModelFileError, build_model, load_model, load_tokenizer, load_weights, read_config_json,
                  resolve_pretrained)
from .kinds import KINDS, Kind, kind_of

#: the entry of a Lightning checkpoint that holds the transformers config of the module's ``model`` (written by
#: the project's LightningModules), from which :func:`load` rebuilds the model without Lightning
CHECKPOINT_CONFIG_KEY = "transformers_config"
#: the key of the LoRA options (``bcos.convert.lora.add_lora``'s) of a checkpoint trained with adapters
CHECKPOINT_LORA_KEY = "lora"
#: the prefix of the transformers model's weights in a checkpoint's ``state_dict`` (the module's ``.model``)
CHECKPOINT_MODEL_PREFIX = "model."


def load(source: str | os.PathLike, *, kind: Kind | None = None, logit_scale: float | None = None) -> Model:
    """Load the model at ``source`` with its tokenizer, in eval mode on the CPU.

    Args:
        source: a Lightning ``.ckpt`` of the project's LightningModules, a saved model folder (a training run's
            ``hf_export/``, B-cos or conventional), or a hub id (packaged ids load offline).
        kind: ``sequence-classification``, ``causal-lm`` or ``masked-lm``; None: the kind of the saved
            architecture (``config.architectures``, looked up in transformers' model mappings). Needed for a hub
            id or folder of a base model (e.g. a GGUF file, or ``BertModel``).
        logit_scale: the inverse temperature of :meth:`Model.probabilities`; None: the one recorded with the model
            (1 when none is).

    A causal LM's tokenizer truncates on the left, so that a long prompt keeps its end.

    Raises:
        ModelFileError: a file of the model (``config.json``, weights, the ``.ckpt``) exists but cannot be read.
        FileNotFoundError: ``source`` is neither a file, a folder nor a model the Hub (or a package) provides.
        ValueError: the kind cannot be told or differs from ``kind``; ``source`` is a folder without
            ``config.json``, a file that is not a ``.ckpt``, or a checkpoint without a transformers config.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
    path = Path(source)
    if path.is_file():
        if path.suffix != ".ckpt":
            raise ValueError(f"{path} is a file but not a Lightning .ckpt; give a .ckpt or a model folder")
        model, tokenizer_source, recorded_scale = _from_checkpoint(path)
        recorded_link = recorded_probabilities(model.config)[1]
    else:
        if path.is_dir() and not (path / "config.json").is_file():
            raise ValueError(f"{path} is a folder without config.json: not a saved model (a training run's "
                             "hf_export/ folder holds one)")
        if path.is_dir():
            read_config_json(path)
        config = _config(str(source))
        kind = kind or kind_of(config)
        if kind is None:
            raise ValueError(f"cannot tell what kind of model {source} is (its config names the architecture "
                             f"{getattr(config, 'architectures', None)}); pass kind= one of {', '.join(KINDS)}")
        model, tokenizer_source = load_model(str(source), task=kind), str(source)
        recorded_scale, recorded_link = recorded_probabilities(model.config)
    found = kind_of(model)
    if kind is not None and found is not None and found != kind:
        raise ValueError(f"{source} holds a {found} model ({type(model).__name__}), not a {kind}")
    tokenizer = load_tokenizer(tokenizer_source)
    scale = logit_scale if logit_scale is not None else 1.0 if recorded_scale is None else recorded_scale
    handle = Model(model.eval(), tokenizer, scale, str(source), kind or found, recorded_link)
    if handle.is_causal:
        tokenizer.truncation_side = "left"
    return handle


NOT_FOUND = ("model not found: {source} (expected a Hugging Face model folder, e.g. a training run's hf_export/, "
             "a Lightning .ckpt file, or a hub id)")


def _config(source: str) -> transformers.PretrainedConfig:
    """The config of a folder or hub id; FileNotFoundError for paths that do not exist and ids the Hub lacks."""
    path = Path(source)
    if not path.exists() and (path.is_absolute() or source.startswith(".") or source.count("/") > 1
                              or path.suffix == ".ckpt"):
        raise FileNotFoundError(NOT_FOUND.format(source=source))
    try:
        return transformers.AutoConfig.from_pretrained(**resolve_pretrained(source))
    except (OSError, HFValidationError) as error:
        raise FileNotFoundError(f"{NOT_FOUND.format(source=source)}; the Hub answered: {error}") from error


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The plain contents of a Lightning checkpoint (``state_dict``, ``hyper_parameters``, ...), read with
    ``torch.load(weights_only=True)``: tensors and Python literals only, no code runs. ModelFileError when the file
    cannot be read so (truncated, corrupted, or holding other objects)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if unsafe is None:
            raise ModelFileError(path, "not a checkpoint (its contents do not unpickle)") from error
        raise ModelFileError(path, f"it holds a {unsafe.group(1)} object, not only tensors and Python literals",
                             "Checkpoints are read with weights_only=True, so that loading one runs no code: give a "
                             "checkpoint written by this project's training, or the run's hf_export/ folder") from error
    except (RuntimeError, EOFError) as error:
        problem = str(error).split(". ")[0]
        raise ModelFileError(path, f"not a complete checkpoint ({problem})") from error


def _from_checkpoint(path: Path) -> tuple[torch.nn.Module, str, float | None]:
    """The transformers model of a checkpoint, the source of its tokenizer, and the trained logit scale."""
    checkpoint = read_checkpoint(path)
    config_dict = checkpoint.get(CHECKPOINT_CONFIG_KEY)
    hyper_parameters = checkpoint.get("hyper_parameters") or {}
    if config_dict is None or "model_name_or_path" not in hyper_parameters:
        raise ValueError(f"{path} holds no transformers config ({CHECKPOINT_CONFIG_KEY!r}) or no model_name_or_path "
                         "hyperparameter: it was not written by this project's LightningModules (or by an older "
                         "version); pass the run's hf_export/ folder instead")
    config_dict = dict(config_dict)
    config = transformers.AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    state = {key.removeprefix(CHECKPOINT_MODEL_PREFIX): tensor for key, tensor in checkpoint["state_dict"].items()
             if key.startswith(CHECKPOINT_MODEL_PREFIX)}
    model = build_model(config)
    lora_options = checkpoint.get(CHECKPOINT_LORA_KEY)
    if lora_options is None:
        model = load_weights(model, state, str(path))
    else:  # the adapters' weights are in the state: load them into adapters, then merge them into the B-cos layers
        from .convert.lora import add_lora, merged_copy

        peft_model = add_lora(model, **lora_options)
        load_weights(model, state, str(path))
        model = merged_copy(peft_model)
    log_scale = checkpoint["state_dict"].get("log_logit_scale")
    scale = None if log_scale is None else float(log_scale.exp())
    return model, str(hyper_parameters["model_name_or_path"]), scale
