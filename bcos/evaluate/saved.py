"""Each method's result saved as soon as it is scored, so that an interrupted evaluation continues where it stopped.

A saved result carries a *key*: a digest of everything it depends on (the method and its parameters, the metric
settings, the tokenised examples and pointing-game instances, the model's parameters and logit scale). A result is
reused only when the key of the new run equals the saved one; any change of model, data or setting recomputes it.
Files are written atomically (a complete file or none) and read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from .core import MethodResult

FORMAT = 1


def tensor_digest(*tensors: torch.Tensor | None) -> str:
    """SHA-256 of the tensors' shapes, dtypes and values (None counts as a tensor of its own)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        if tensor is None:
            digest.update(b"none")
            continue
        values = tensor.detach().cpu().contiguous()
        digest.update(f"{values.dtype}{tuple(values.shape)}".encode())
        digest.update(values.view(-1).view(torch.uint8).numpy().tobytes() if values.numel() else b"")
    return digest.hexdigest()


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers by name (the same weights give the same digest)."""
    state = model.state_dict()
    return tensor_digest(*(state[name] for name in sorted(state))) + hashlib.sha256(
        "\n".join(sorted(state)).encode()).hexdigest()[:16]


def result_key(**parts: Any) -> str:
    """A digest of ``parts`` (JSON-serialisable values; others by their ``str``)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def save_result(path: Path, key: str, result: MethodResult) -> None:
    """Write ``result`` with ``key`` to ``path`` (through a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "key": key, "scores": result.scores,
               "seconds_per_example": result.seconds_per_example, "attributions": result.attributions.cpu(),
               "n_seqpg_instances": result.n_seqpg_instances, "settings": json.dumps(result.settings, default=str),
               "per_example": result.per_example, "per_instance": result.per_instance}
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)


def load_result(path: Path, key: str) -> MethodResult | None:
    """The result saved at ``path`` if its key is ``key``; None when there is none or it was computed from other
    inputs or settings. Raises ValueError naming the file when it cannot be read."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which one, and what to do
        raise ValueError(f"cannot read the saved method result {path} ({type(error).__name__}, the cause below); "
                         "delete it to recompute") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a saved method result of this version; delete it to recompute")
    if payload["key"] != key:
        return None
    return MethodResult(dict(payload["scores"]), payload["seconds_per_example"], payload["attributions"],
                        payload["n_seqpg_instances"], json.loads(payload["settings"]), payload["per_example"],
                        payload["per_instance"])
