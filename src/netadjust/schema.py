"""Typed reading of JSON-shaped data: config files, round records, summaries.

Files a user writes (a config) or that a crash or an editor may have damaged (a run directory)
are read into dataclasses field by field, each value checked against the field's annotation,
so that a wrong value gives one message naming the field, what it holds and what is allowed,
never a ``TypeError`` deep inside the search.

Supported annotations: ``int``, ``float`` (an ``int`` is accepted and converted), ``bool``,
``str``, ``Any``, ``X | None``, ``dict[K, V]`` and ``list[T]`` of these. ``bool`` is never
taken for a number, nor a number for ``bool``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def describe(tp: Any) -> str:
    """What values of annotation ``tp`` look like, for an error message."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if tp is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is dict:
        return f"a mapping of {describe(args[0]).removeprefix('a ').removeprefix('an ')} to " \
               f"{describe(args[1]).removeprefix('a ').removeprefix('an ')}"
    if origin is list:
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}"
    return "any value"


def conforms(value: Any, tp: Any) -> bool:
    """Whether the JSON value ``value`` fits annotation ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin is dict:
        return isinstance(value, Mapping) and all(conforms(k, args[0]) and conforms(v, args[1])
                                                  for k, v in value.items())
    if origin is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value)
    raise TypeError(f"unsupported annotation {tp!r}")


def convert(value: Any, tp: Any) -> Any:
    """``value`` with ints where ``tp`` says float (so ``1`` in a config file becomes ``1.0``)."""
    if tp is float and isinstance(value, int):
        return float(value)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return next((convert(value, a) for a in args if conforms(value, a)), value)
    return value


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every dataclass field of ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_value(name: str, value: Any, tp: Any) -> str | None:
    """A problem sentence if ``value`` does not fit ``tp`` (``None`` if it does)."""
    if conforms(value, tp):
        return None
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"{name} must be {describe(tp)}, got {shown}"


def read_fields(cls: type[T], data: Mapping[str, Any], *, where: str, extra: str = "error") -> T:
    """An instance of dataclass ``cls`` from ``data``, every field checked.

    Missing fields without a default, and values of the wrong type, are reported together in
    one :class:`~netadjust.errors.ConfigError` that starts with ``where``. Keys that are not
    fields are an error (``extra="error"``) or ignored (``extra="ignore"``: newer files read by
    older code).
    """
    from .errors import ConfigError

    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    types_ = field_types(cls)
    problems = []
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        problems.append(f"missing {', '.join(repr(m) for m in missing)}")
    if extra == "error":
        unknown = [k for k in data if k not in types_]
        if unknown:
            problems.append(f"unknown {', '.join(repr(k) for k in unknown)}")
    values = {}
    for name, tp in types_.items():
        if name in data:
            problem = check_value(name, data[name], tp)
            if problem:
                problems.append(problem)
            values[name] = convert(data[name], tp)
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return cls(**values)
