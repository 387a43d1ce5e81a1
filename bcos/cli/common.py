"""The conventions the three commands share: how the parser is built, comma-separated lists, the model flags
(``--model`` for one model; ``--bcos`` and ``--conventional`` for a comparison), the row limit ``--max-examples``,
the tokens per example ``--max-length`` (default: the length the model was trained with, else
:data:`DEFAULT_MAX_LENGTH`), ``--device``, usage errors (exit status 2 with a message saying what is wrong), and the
provenance block of the records they write."""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import captum
import torch
import transformers

from .. import __version__
from ..handle import Model

#: tokens per example (training's ``data.max_length`` and the commands' ``--max-length``) when neither the option
#: nor the loaded model (the length it was trained with, recorded at export) says otherwise
DEFAULT_MAX_LENGTH = 128


def names(text: str) -> list[str]:
    """A comma-separated list, blanks dropped: ``"a, b,"`` → ``["a", "b"]``."""
    return [name.strip() for name in text.split(",") if name.strip()]


def new_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A parser named ``prog`` described by the first paragraph of ``doc``, showing defaults in ``--help``."""
    return argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


class _DeprecatedAliases(argparse.Action):
    """Stores the value; an option string other than the first is a deprecated alias and warns."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if option_string is not None and option_string != self.option_strings[0]:
            warnings.warn(f"{option_string} is deprecated; use {self.option_strings[0]}", FutureWarning,
                          stacklevel=2)
        setattr(namespace, self.dest, values)


def add_comparison_models(p: argparse.ArgumentParser, bcos_help: str, conventional_help: str,
                          deprecated_conventional: Sequence[str] = ()) -> None:
    """``--bcos`` and ``--conventional`` (model folders, hub ids or Lightning ``.ckpt`` files, read by
    :func:`bcos.load`); ``deprecated_conventional``: old names of ``--conventional``."""
    p.add_argument("--bcos", help=bcos_help)
    p.add_argument("--conventional", *deprecated_conventional, action=_DeprecatedAliases, help=conventional_help)


def add_max_examples(p: argparse.ArgumentParser, help_text: str, deprecated: Sequence[str] = ()) -> None:
    """``--max-examples N`` (a positive row limit; ``deprecated``: its old names)."""
    p.add_argument("--max-examples", *deprecated, type=_positive, default=None, action=_DeprecatedAliases,
                   help=help_text)


def add_bootstrap(p: argparse.ArgumentParser, seed_help: str = "seed of the bootstrap") -> None:
    """``--seed`` and ``--bootstrap-resamples`` (of the 95 % intervals, :class:`bcos.evaluate.intervals.Bootstrap`)."""
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--bootstrap-resamples", type=_positive, default=2000,
                   help="resamples of the 95 %% bootstrap confidence intervals")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An option's value that must be a finite number > 0 (a scale); argparse turns the errors into usage errors."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def method_params(text: str) -> dict[str, dict[str, Any]]:
    """``--method-params``: a JSON object of explainer parameters by method, ``{"lime": {"n_samples": 100}}``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict) or not all(isinstance(params, dict) for params in value.values()):
        raise argparse.ArgumentTypeError(f"must be a JSON object of parameters by method, e.g. "
                                         f"'{{\"lime\": {{\"n_samples\": 100}}}}', got {text!r}")
    return value


def add_max_length(p: argparse.ArgumentParser, help_text: str = "tokens per example (longer ones are truncated)"
                   ) -> None:
    """``--max-length N`` (positive); resolve it per model with :func:`max_length_for`."""
    p.add_argument("--max-length", type=_positive, default=None,
                   help=f"{help_text}; default: the length the model was trained with, when its export or checkpoint "
                   f"records it, else {DEFAULT_MAX_LENGTH}")


def max_length_for(max_length: int | None, model: Model) -> int:
    """The tokens per example for ``model``: ``--max-length`` when given, else the length the model was trained
    with (:attr:`Model.max_length`), else :data:`DEFAULT_MAX_LENGTH`."""
    if max_length is not None:
        return max_length
    return model.max_length or DEFAULT_MAX_LENGTH


def _device(text: str) -> str:
    """A device torch knows and this machine has; argparse turns the errors into usage errors."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine (no GPU, or a torch "
                                             "built without CUDA); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine; use --device cpu")
    elif device.type not in ("cpu", "mps"):
        raise argparse.ArgumentTypeError(f"{text}: the commands run on cpu, cuda or mps")
    return text


def _devices(text: str) -> list[str]:
    """Comma-separated devices, each checked as :func:`_device` checks one."""
    entries = [entry.strip() for entry in text.split(",")]
    if not all(entries):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty entry; give devices like cpu or cuda:0,cuda:1")
    return [_device(entry) for entry in entries]


def add_device(p: argparse.ArgumentParser, several: bool = False) -> None:
    """``--device``: one device, or with ``several`` a comma-separated list of them (parsed to a list)."""
    described = "where the models run (cpu, cuda, cuda:1, ...)" + ("; several, comma-separated: one process each"
                                                                  if several else "")
    p.add_argument("--device", type=_devices if several else _device,
                   default="cuda" if torch.cuda.is_available() else "cpu", help=described)


def provenance(prog: str, argv: Sequence[str] | None) -> dict[str, Any]:
    """What a record says about how it was made: library versions, the command line and the date (UTC)."""
    return {
        "versions": {"bcos": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "captum": captum.__version__},
        "command": " ".join([prog, *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
