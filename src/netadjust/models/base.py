"""What every model family provides, and the exact FLOPs convention.

FLOPs convention (the paper's, and most vision papers'): **FLOPs are multiply-accumulates
(MACs) of convolutions and fully connected layers**, stem and classifier included. Bias
additions, BatchNorm, activations, pooling, residual additions and channel dropout count
nothing. ``torch.utils.flop_counter.FlopCounterMode`` counts 2 per MAC for the same
operations, so ``2 * arch.macs(w)`` equals its total on the built model (checked in tests).

Parameter counts include conv and linear weights, biases and BatchNorm's affine pair.

FLOPs and parameters are computed from :meth:`Arch.layers`, a list of integer
:class:`Layer` records resolved at given widths, without building a model: a ResNet-110
configuration evaluates in tens of microseconds, which the budget solver relies on.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConfigError
from ..widths import Widths, validate_widths

if TYPE_CHECKING:
    from .blocks import SegmentedNet
    from .channels import Space


class Layer(NamedTuple):
    """One MAC-bearing layer (conv, or linear as a 1x1 conv on a 1x1 map) at concrete widths."""

    name: str
    cin: int
    cout: int
    kernel: int | tuple[int, int] = 1  # square, or (height, width)
    out_hw: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = False
    norm: bool = True  # followed by a BatchNorm with affine weight and bias

    @property
    def kernel_area(self) -> int:
        return self.kernel[0] * self.kernel[1] if isinstance(self.kernel, tuple) else self.kernel * self.kernel

    @property
    def macs(self) -> int:
        return self.kernel_area * (self.cin // self.groups) * self.cout * self.out_hw[0] * self.out_hw[1]

    @property
    def params(self) -> int:
        weights = self.kernel_area * (self.cin // self.groups) * self.cout
        return weights + (self.cout if self.bias else 0) + (2 * self.cout if self.norm else 0)


class PreNormLayer(Layer):
    """A conv (or linear) preceded by BatchNorm over its *input* (pre-activation order).

    Same MACs as :class:`Layer`; the parameters add the input BN's ``2 * cin`` affine pair.
    ``norm`` keeps its meaning: a BN also follows the conv.
    """

    __slots__ = ()

    @property
    def params(self) -> int:
        return super().params + 2 * self.cin


def forward_difference(cost: Callable[[Mapping[str, int]], float], widths: Mapping[str, int]) -> dict[str, float]:
    """Per key, ``cost`` with one more channel of that key minus ``cost`` at ``widths``."""
    base = cost(widths)
    trial = dict(widths)
    out = {}
    for key, value in widths.items():
        trial[key] = value + 1
        out[key] = cost(trial) - base
        trial[key] = value
    return out


def scale_width(width: int, mult: float) -> int:
    """A base width times a width multiplier, rounded to the nearest integer (at least 1)."""
    return max(1, int(round(width * mult)))


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output size of a convolution or pooling window (floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


class Arch(ABC):
    """A model family with all its fixed settings; only the searchable widths vary.

    Subclasses set ``_defaults`` (every searchable key with its initial width, in forward
    order) and define the layer list at given widths (for exact FLOPs) and a builder from
    widths to a :class:`SegmentedNet` whose probe points (one :class:`ChannelDrop` per key)
    sit at each searchable conv's BN output.
    """

    _defaults: Widths
    resizable = True  # gives channel_map(): trained weights carry to other widths (warm start)

    def __init__(self, *, name: str, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 width_mult: float = 1.0) -> None:
        problems = []
        for field, value in (("num_classes", num_classes), ("in_channels", in_channels), ("input_size", input_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{field} must be a positive integer, got {value!r}")
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not 0 < width_mult < math.inf:
            problems.append(f"width_mult must be a finite number > 0, got {width_mult!r}")
        if problems:
            raise ConfigError(f"{name}: " + "; ".join(problems))
        self.name = name
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
        self.width_mult = float(width_mult)

    # -- what a family defines ---------------------------------------------------------
    @abstractmethod
    def layers(self, widths: Mapping[str, int]) -> list[Layer]:
        """Every MAC-bearing layer at ``widths`` (assumed valid), in forward order."""

    @abstractmethod
    def _build(self, widths: Widths) -> SegmentedNet:
        """The network for validated ``widths``."""

    def options(self) -> dict[str, Any]:
        """Family-specific settings (beyond the common ones) needed to rebuild this arch: the
        values of the options its registration declares (models/registry.py)."""
        from .registry import options_of

        return {o.name: getattr(self, o.name) for o in options_of(self.name)}

    # -- shared machinery --------------------------------------------------------------
    def default_widths(self) -> Widths:
        """The initial widths of every searchable key, in forward order."""
        return dict(self._defaults)

    def settings(self) -> dict[str, Any]:
        """Everything :func:`netadjust.models.get_arch` needs to recreate this arch."""
        return {"arch": self.name, "num_classes": self.num_classes, "in_channels": self.in_channels,
                "input_size": self.input_size, "width_mult": self.width_mult, **self.options()}

    def keys(self) -> list[str]:
        return list(self.default_widths())

    def width_steps(self) -> dict[str, int]:
        """Per key, the multiple its width must be (1 for every key of the hand-written families)."""
        return dict.fromkeys(self.default_widths(), 1)

    def validate(self, widths: Mapping[str, Any]) -> Widths:
        return validate_widths(widths, self.default_widths(), arch=self.name)

    def build(self, widths: Mapping[str, int] | None = None) -> SegmentedNet:
        """Build the network (on the CPU, freshly initialised) for ``widths`` (default: initial)."""
        return self._build(self.validate(self.default_widths() if widths is None else widths))

    def macs(self, widths: Mapping[str, int]) -> int:
        """Exact multiply-accumulates of one forward pass of one image."""
        return sum(layer.macs for layer in self.layers(widths))

    def params(self, widths: Mapping[str, int]) -> int:
        """Exact number of trainable parameters."""
        return sum(layer.params for layer in self.layers(widths))

    def channel_map(self, widths: Mapping[str, int] | None = None) -> dict[str, tuple[Space | None, ...]]:
        """For every entry of ``build(widths).state_dict()``, the channel space of each dim (``None``
        where a dim is not a channel dim): the description ``models/resize.py`` resizes by. The
        families give it by tagging their modules while building (``models/channels.py``)."""
        from .channels import channel_map

        return channel_map(self, widths)

    def macs_derivative(self, widths: Mapping[str, int]) -> dict[str, int]:
        """dMACs/dc_l for every key: the MACs one more channel of layer l adds.

        MACs are bilinear in the widths (a conv's cost is c_in * c_out * const and no layer
        reads and writes the same key), so this forward difference is the exact partial
        derivative; ``c_l * d_l`` is the cost of layer l plus that of every layer reading it.
        Where a family takes a maximum of widths (the "max" residual stream) it is the
        one-sided derivative: the cost of widening, which is what the search does.
        """
        return forward_difference(self.macs, widths)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "arch")
        return f"{type(self).__name__}({self.name!r}, {args})"
