"""Widths: the searchable configuration of a network.

A widths mapping sends each searchable layer's stable key (e.g. ``stage1.block0.conv1``) to
its number of output channels. It is the only thing the search changes, so any round of a
search can be rebuilt from it. This module validates such mappings against an architecture's
keys and reads/writes them as JSON.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .errors import WidthsError, closest

Widths = dict[str, int]


def validate_widths(widths: Mapping[str, Any], expected: Mapping[str, int], *, arch: str = "") -> Widths:
    """Check ``widths`` has exactly the keys of ``expected`` with positive integer values.

    Every problem is collected and reported in one :class:`WidthsError`. Returns a plain dict
    in the order of ``expected`` (so printing and JSON are stable).
    """
    if not isinstance(widths, Mapping):
        raise WidthsError(f"widths must be a mapping from layer key to channel count, got {type(widths).__name__}")
    problems: list[str] = []
    unknown = [k for k in widths if k not in expected]
    for key in unknown:
        problems.append(f"unknown key {key!r}{closest(str(key), expected)}")
    missing = [k for k in expected if k not in widths]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        problems.append(f"missing {len(missing)} key(s): {shown}")
    for key, value in widths.items():
        if key in expected and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(f"{key} = {value!r} is not a positive integer")
    if problems:
        where = f" for {arch}" if arch else ""
        raise WidthsError(f"invalid widths{where}: " + "; ".join(problems))
    return {k: int(widths[k]) for k in expected}


def load_widths(path: str | os.PathLike) -> dict[str, Any]:
    """Read a widths mapping from a JSON file (not yet validated against an architecture).

    The file holds one JSON object ``{"key": channels, ...}``; an object with a ``"widths"``
    member (a round record or a checkpoint summary) is accepted too.
    """
    from .io import read_document

    data = read_document(path, "widths file", WidthsError)
    if isinstance(data, dict) and isinstance(data.get("widths"), dict):
        data = data["widths"]
    if not isinstance(data, dict):
        raise WidthsError(f"widths file {path} must hold a JSON object of layer key -> channels, got {type(data).__name__}")
    return data


def save_widths(path: str | os.PathLike, widths: Mapping[str, int]) -> None:
    """Write a widths mapping as pretty JSON, atomically."""
    from .io import write_json_atomic

    write_json_atomic(path, dict(widths))
