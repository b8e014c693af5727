"""CIFAR ResNet (depth 6n+2) and Plain nets, with parameter-free shortcuts.

Three stages of ``n`` basic blocks (base widths 16, 32, 64 times a width multiplier) after a
3x3 stem conv; stages 2 and 3 halve the resolution in their first block. Both 3x3 convs of
every block are searchable (keys ``stage{s}.block{b}.conv{1,2}``). The shortcut has no
parameters (2x2 average pooling when downsampling, zero channels when widths differ), so every
conv width is free. When a block's output width ``c2`` differs from the stream width ``s``
entering it, the residual policy decides the block's output width:

- ``"max"`` (default): the narrower of the two is zero-padded, the stream carries
  ``max(s, c2)`` channels (so later blocks read the widest stream seen so far);
- ``"local"``: the output has ``c2`` channels; the shortcut is truncated or zero-padded.

Plain nets are the same without shortcuts: the stream is simply ``c2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from torch import nn

from ..errors import ConfigError
from ..widths import Widths
from .base import Arch, Layer, scale_width
from .blocks import BasicBlock, SegmentedNet, conv_bn, init_weights, plan_blocks, stream_after
from .channels import describe, space, width
from .registry import Option, register

BASE_WIDTHS = (16, 32, 64)
RESIDUAL = Option("residual", str, "max", "CIFAR ResNet: stream width when a block narrows it", choices=("max", "local"))


class CifarResNet(Arch):
    """ResNet-(6n+2) for small images; ``plain=True`` removes the shortcuts."""

    def __init__(self, *, depth: int, plain: bool = False, residual: str = RESIDUAL.default, name: str,
                 **common) -> None:
        super().__init__(name=name, **common)
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"{name}: depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...), got {depth}")
        self.depth, self.plain, self.residual = depth, plain, residual
        self.shortcut = None if plain else residual
        n = (depth - 2) // 6
        self.stage_widths = [scale_width(w, self.width_mult) for w in BASE_WIDTHS]
        self.stem_width = self.stage_widths[0]
        self._blocks = plan_blocks((n, n, n), self.input_size)
        self._defaults = {key: self.stage_widths[b.stage] for b in self._blocks for key in (b.key1, b.key2)}

    def layers(self, widths: Mapping[str, int]) -> list[Layer]:
        size = self.input_size
        out = [Layer("stem", self.in_channels, self.stem_width, 3, (size, size))]
        stream = self.stem_width
        for b in self._blocks:
            c1, c2 = widths[b.key1], widths[b.key2]
            hw = (b.out_size, b.out_size)
            out += [Layer(b.key1, stream, c1, 3, hw), Layer(b.key2, c1, c2, 3, hw)]
            stream = stream_after(self.shortcut, stream, c2)
        out.append(Layer("fc", stream, self.num_classes, bias=True, norm=False))
        return out

    def _build(self, widths: Widths) -> SegmentedNet:
        stream = space("stem", self.stem_width)  # channel spaces: models/channels.py
        stem = nn.Sequential(*describe(conv_bn(self.in_channels, self.stem_width), stream), nn.ReLU(inplace=True))
        segments: list[nn.Module] = [stem]
        for b in self._blocks:
            block = BasicBlock(b.key1, b.key2, width(stream), widths[b.key1], widths[b.key2], b.stride, self.shortcut)
            segments.append(block)
            stream = block.describe_channels(stream)
        fc = describe(nn.Linear(width(stream), self.num_classes), None, stream)
        segments.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc))
        net = SegmentedNet(segments)
        init_weights(net)
        return net


for _depth in (20, 32, 44, 56, 110):
    register(f"resnet{_depth}", partial(CifarResNet, depth=_depth),
             f"CIFAR ResNet-{_depth}, parameter-free shortcuts, {_depth - 2} searchable convs", options=(RESIDUAL,))
for _depth in (20, 56):
    register(f"plain{_depth}", partial(CifarResNet, depth=_depth, plain=True),
             f"CIFAR Plain-{_depth}: ResNet-{_depth} without shortcuts")
