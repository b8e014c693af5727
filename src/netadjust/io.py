"""Reading settings files, and atomic file writes (a run directory never holds a half-written file).

:func:`read_document` reads a JSON or TOML file a user wrote, with one clear error for each
way it can be wrong. Each writer writes to a temporary file (``.NAME.XXXX.tmp``) in the same directory, flushes it
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


def read_document(path: str | os.PathLike, what: str, error: type[Exception]) -> Any:
    """The parsed content of the JSON (or, for a ``.toml`` name, TOML) file ``path``.

    A missing or unreadable file, text that is not UTF-8 and a syntax error each raise
    ``error`` with a message that names ``what`` the file is and the file.
    """
    path = Path(path)
    kind = "TOML" if path.suffix == ".toml" else "JSON"
    try:
        text = path.read_bytes().decode()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not {kind} text (not UTF-8); expected a {kind} file") from None
    try:
        if kind == "TOML":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise error(f"{what} {path}: TOML needs Python 3.11 or newer; use a .json file") from None
            return tomllib.loads(text)
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise error(f"{what} {path} is not valid {kind}: {exc}") from None


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
