"""Output locations checked before any work starts, so that a run never computes results it cannot write."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def writable_folder(folder: str | os.PathLike, files: Iterable[str], option: str) -> Path:
    """``folder`` (created with its parents) once a file can be written in it and none of ``files`` (names in
    it) is a folder or a read-only file; raises ValueError naming ``option`` otherwise."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        raise ValueError(f"{option} {folder}: cannot write there ({error.strerror or error}); choose a writable "
                         "folder") from error
    for name in files:
        target = path / name
        if target.is_dir() or (target.exists() and not os.access(target, os.W_OK)):
            raise ValueError(f"{option} {folder}: {target} exists and cannot be overwritten (a folder or read-only); "
                             "remove it or choose another folder")
    return path
