"""The registry of model families, and the family-specific options they declare.

A family module registers each of its architectures where it defines them::

    RESIDUAL = Option("residual", str, "max", "CIFAR ResNet: ...", choices=("max", "local"))
    register("resnet20", partial(CifarResNet, depth=20), "CIFAR ResNet-20 ...", options=(RESIDUAL,))

An :class:`Option` is declared once, with its type, default, help text and allowed values; the
search configuration, the command-line flags, their help and ``netadjust flops`` are all
derived from these declarations (:func:`all_options`), and :func:`get_arch` checks the values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, closest
from ..schema import check_value

if TYPE_CHECKING:
    from .base import Arch

COMMON_SETTINGS = ("num_classes", "in_channels", "input_size", "width_mult")
CIFAR_GEOMETRY = {"num_classes": 10, "in_channels": 3, "input_size": 32}
IMAGENET_GEOMETRY = {"num_classes": 1000, "in_channels": 3, "input_size": 224}


@dataclass(frozen=True)
class Option:
    """A setting one or more families take beyond the common ones."""

    name: str
    type: type  # int, float or str
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None  # numbers: the smallest allowed value

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (``None`` if it is)."""
        wrong_type = check_value(self.name, value, self.type)
        if wrong_type:
            return wrong_type
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        if self.type in (int, float) and not (math.isfinite(value) and (self.minimum is None or value >= self.minimum)):
            if self.type is int:
                rule = "a positive integer" if self.minimum == 1 else f"an integer >= {self.minimum:g}"
            else:
                rule = "a finite number" + (f" >= {self.minimum:g}" if self.minimum is not None else "")
            return f"{self.name} must be {rule}, got {value!r}"
        return None


@dataclass(frozen=True)
class Family:
    name: str
    factory: Callable[..., Arch]
    description: str
    options: tuple[Option, ...]
    geometry: Mapping[str, int]  # natural num_classes / in_channels / input_size, where no data set says


_REGISTRY: dict[str, Family] = {}


def register(name: str, factory: Callable[..., Arch], description: str, options: Sequence[Option] = (),
             geometry: Mapping[str, int] | None = None) -> None:
    """Make ``factory(name=..., num_classes=..., ..., **options)`` available as ``get_arch(name, ...)``.

    ``geometry``: the family's natural ``num_classes``, ``in_channels`` and ``input_size``
    (e.g. ImageNet's 1000 classes at 224 px), used for any of them the caller leaves out
    (default: CIFAR's 10 classes, 3 channels, 32 px).
    """
    if name in _REGISTRY:
        raise ValueError(f"architecture {name!r} is registered twice")
    for option in options:
        other = all_options().get(option.name)
        if other is not None and other != option:
            raise ValueError(f"option {option.name!r} of {name} differs from the one another family declared")
    natural = {**CIFAR_GEOMETRY, **(geometry or {})}
    _REGISTRY[name] = Family(name, factory, description, tuple(options), natural)


def all_options() -> dict[str, Option]:
    """Every family-specific option of any registered family, by name, in registration order."""
    return {o.name: o for family in _REGISTRY.values() for o in family.options}


def family_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The family-specific options that ``values`` (a flat config or parsed flags) sets (not None);
    :func:`get_arch` refuses those the chosen family does not take."""
    return {name: values[name] for name in all_options() if values.get(name) is not None}


def list_archs() -> dict[str, str]:
    """Registered architecture names and one-line descriptions."""
    return {name: family.description for name, family in _REGISTRY.items()}


def options_of(name: str) -> tuple[Option, ...]:
    """The options architecture ``name`` takes (none for an unregistered one)."""
    family = _REGISTRY.get(name)
    return family.options if family else ()


def get_arch(name: str, **settings: Any) -> Arch:
    """The architecture ``name`` with the given settings (num_classes, ..., and its options).

    ``name`` is a registered family, or a module factory: ``torchvision:NAME``, ``timm:NAME`` or
    ``package.module:factory`` (models/traced.py), which take the common settings only.
    """
    from .traced import SPEC_FORMS, is_spec, traced_arch

    if is_spec(name):
        bad = [k for k in settings if k not in COMMON_SETTINGS]
        if bad:
            raise ConfigError(f"{name} does not take option(s) {', '.join(bad)}; it takes {', '.join(COMMON_SETTINGS)}")
        return traced_arch(name, **{**CIFAR_GEOMETRY, **settings})
    if name not in _REGISTRY:
        raise ConfigError(f"unknown architecture {name!r}{closest(str(name), _REGISTRY)}; "
                          f"known: {', '.join(_REGISTRY)} (see `netadjust models`), or a model of your own: "
                          f"{SPEC_FORMS}")
    family = _REGISTRY[name]
    declared = {o.name: o for o in family.options}
    bad = [k for k in settings if k not in COMMON_SETTINGS and k not in declared]
    if bad:
        takes = ", ".join(COMMON_SETTINGS + tuple(declared))
        raise ConfigError(f"{name} does not take option(s) {', '.join(bad)}; it takes {takes}")
    problems = [p for o in family.options if o.name in settings and (p := o.problem(settings[o.name]))]
    if problems:
        raise ConfigError(f"{name}: " + "; ".join(problems))
    options = {o.name: o.type(settings.get(o.name, o.default)) for o in family.options}
    common = {**family.geometry, **{k: v for k, v in settings.items() if k in COMMON_SETTINGS}}
    return family.factory(name=name, **common, **options)
