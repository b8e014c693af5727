"""Atomic file writes: a run directory never holds a half-written file.

Each writer writes to a temporary file (``.NAME.XXXX.tmp``) in the same directory, flushes it
to disk, gives it the mode a plain ``open`` would (0666 less the umask) and renames it over the
target (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


def _write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    _write_atomic(path, lambda f: f.write(data))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (with a trailing newline), atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def save_torch_atomic(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` to ``path``, atomically."""
    import torch

    _write_atomic(path, lambda f: torch.save(obj, f))
