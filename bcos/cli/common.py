"""The conventions the three commands share: how the parser is built, comma-separated lists, the model flags
(``--model`` for one model; ``--bcos`` and ``--conventional`` for a comparison), the row limit ``--max-examples``,
``--device``, usage errors (exit status 2 with a message saying what is wrong), and the provenance block of the
records they write."""
from __future__ import annotations

import argparse
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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where the models run (cpu, cuda, cuda:1, ...)")


def provenance(prog: str, argv: Sequence[str] | None) -> dict[str, Any]:
    """What a record says about how it was made: library versions, the command line and the date (UTC)."""
    return {
        "versions": {"bcos": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "captum": captum.__version__},
        "command": " ".join([prog, *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
