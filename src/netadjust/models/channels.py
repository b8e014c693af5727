"""What a network's channels are made of: the description each family gives while building.

Every Conv2d, Linear and BatchNorm2d a family builds is tagged with :func:`describe`: the
channel *space* of its output (dim 0 of each of its tensors) and, for a conv or linear layer,
of its input (dim 1 of the weight). A :data:`Space` is an ordered tuple of :class:`Segment`
(a DenseNet reader's input is the stem segment followed by one segment per growth key);
``None`` marks a dim that is not a channel dim (the classifier's classes, the stem's image
channels, a depthwise conv's dim 1). :func:`channel_map` reads the tags back as, for every
entry of the state dict, the space of each of its dims. ``models/resize.py`` is the one place
that applies it (see its docstring for what ``free`` and ``inert`` mean and why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

if TYPE_CHECKING:
    from .base import Arch


class Segment(NamedTuple):
    """A run of channels that resize together.

    ``name``: a width key, or a derived name (``stem``, ``head``, ``<block>.stream`` for a
    "max" residual stream, ``blocks.{i}.squeeze`` for a squeeze-excite bottleneck);
    ``size``: its channels at the widths described; ``free``: its channels may be selected
    in any subset and order (else only a prefix is kept); ``inert``: new channels must output
    exactly zero (their BN starts at weight 0).
    """

    name: str
    size: int
    free: bool = False
    inert: bool = False


Space = tuple[Segment, ...]


def space(name: str, size: int, *, free: bool = False, inert: bool = False) -> Space:
    """A space of one segment (concatenate spaces with ``+``)."""
    return (Segment(name, size, free, inert),)


def width(sp: Space) -> int:
    """How many channels a space has."""
    return sum(seg.size for seg in sp)


def describe(modules, out: Space | None, inp: Space | None = None):
    """Tag a module, or each of a list/tuple of modules (e.g. ``conv_bn(...)``), with the space of
    its output and, for a conv or linear layer, its input (a BatchNorm's one space is ``out``).
    Returns ``modules`` unchanged, so it can wrap a constructor call."""
    for module in modules if isinstance(modules, (list, tuple)) else (modules,):
        module.channel_spaces = (out, inp)
    return modules


class Entry(NamedTuple):
    """One state-dict entry: its module, what it is, its shape and the space of each of its dims."""

    module: str
    kind: str  # "weight", "bias" (conv / linear), "bn_weight", "bn_bias", "bn_mean", "bn_var", "other"
    shape: tuple[int, ...]
    spaces: tuple[Space | None, ...]


_BN_KINDS = {"weight": "bn_weight", "bias": "bn_bias", "running_mean": "bn_mean", "running_var": "bn_var"}


def _entry(module_name: str, module: nn.Module, tensor_name: str, tensor: torch.Tensor) -> Entry:
    shape = tuple(tensor.shape)
    if tensor.dim() == 0:  # num_batches_tracked
        return Entry(module_name, "other", shape, ())
    spaces = getattr(module, "channel_spaces", None)
    if spaces is None:
        raise ValueError(f"{module_name} ({type(module).__name__}) has no channel description (models/channels.py)")
    out, inp = spaces
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return Entry(module_name, _BN_KINDS[tensor_name], shape, (out,))
    if isinstance(module, (nn.Conv2d, nn.Linear)) and tensor_name == "bias":
        return Entry(module_name, "bias", shape, (out,))
    if isinstance(module, (nn.Conv2d, nn.Linear)) and tensor_name == "weight":
        groups = getattr(module, "groups", 1)
        if groups != 1 and not groups == module.in_channels == module.out_channels:
            raise ValueError(f"{module_name}: only dense and depthwise convs can be described, got groups={groups}")
        return Entry(module_name, "weight", shape, (out, inp if groups == 1 else None) + (None,) * (tensor.dim() - 2))
    raise ValueError(f"{module_name}.{tensor_name}: no channel rule for {type(module).__name__}")


def model_entries(model: nn.Module) -> dict[str, Entry]:
    """The entries of ``model.state_dict()`` with their spaces, checked against the tensors' shapes
    and for one size and one pair of flags per segment name."""
    modules = dict(model.named_modules())
    out: dict[str, Entry] = {}
    seen: dict[str, Segment] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        module_name, _, tensor_name = name.rpartition(".")
        entry = _entry(module_name, modules[module_name], tensor_name, tensor)
        for dim, sp in enumerate(entry.spaces):
            if sp is None:
                continue
            if width(sp) != tensor.shape[dim]:
                raise ValueError(f"{name}: dim {dim} has {tensor.shape[dim]} channels, its space {sp} has {width(sp)}")
            for seg in sp:
                if seen.setdefault(seg.name, seg) != seg:
                    raise ValueError(f"segment {seg.name!r} described two ways: {seen[seg.name]} and {seg}")
        out[name] = entry
    return out


def arch_entries(arch: Arch, widths: Mapping[str, int] | None = None) -> dict[str, Entry]:
    """:func:`model_entries` of ``arch.build(widths)``, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = arch.build(widths)
    return model_entries(model)


def channel_map(arch: Arch, widths: Mapping[str, int] | None = None) -> dict[str, tuple[Space | None, ...]]:
    """For every entry of ``arch.build(widths).state_dict()``, the space of each dim (``None``: not
    a channel dim; ``()`` for a scalar such as ``num_batches_tracked``)."""
    return {name: entry.spaces for name, entry in arch_entries(arch, widths).items()}


def segments(entries: Mapping[str, Entry]) -> dict[str, Segment]:
    """Every segment named in ``entries``, by name, in order of first appearance."""
    return {seg.name: seg for entry in entries.values() for sp in entry.spaces if sp for seg in sp}


def offsets(sp: Sequence[Segment]) -> dict[str, int]:
    """Where each segment of a space starts."""
    out, at = {}, 0
    for seg in sp:
        out[seg.name] = at
        at += seg.size
    return out
