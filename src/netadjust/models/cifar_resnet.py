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

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..widths import Widths
from .base import Arch, Layer, conv_out, scale_width
from .blocks import ChannelDrop, SegmentedNet, conv_bn, init_weights, pad_channels

RESIDUAL_POLICIES = ("max", "local")
BASE_WIDTHS = (16, 32, 64)


class BasicBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, optional parameter-free shortcut, ReLU.

    Shapes: (N, cin, H, W) -> (N, cout, H', W') with H' = ceil(H / stride) and
    cout = max(cin, c2) for "max", c2 for "local" and plain blocks.
    """

    def __init__(self, key1: str, key2: str, cin: int, c1: int, c2: int, stride: int, shortcut: str | None) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, c1, 3, stride)
        self.probe1 = ChannelDrop(key1)
        self.conv2, self.bn2 = conv_bn(c1, c2, 3, 1)
        self.probe2 = ChannelDrop(key2)  # before the residual add: drops only this conv's work
        self.stride = stride
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.probe1(self.bn1(self.conv1(x))))
        out = self.probe2(self.bn2(self.conv2(out)))
        if self.shortcut is not None:
            # ceil_mode matches the conv's ceil(H / 2) output size for odd inputs.
            sc = F.avg_pool2d(x, 2, ceil_mode=True) if self.stride > 1 else x
            if self.shortcut == "local":
                sc = pad_channels(sc[:, : out.shape[1]], out.shape[1])
            else:
                width = max(out.shape[1], sc.shape[1])
                out, sc = pad_channels(out, width), pad_channels(sc, width)
            out = out + sc
        return F.relu(out)


class CifarResNet(Arch):
    """ResNet-(6n+2) for small images; ``plain=True`` removes the shortcuts."""

    def __init__(self, *, depth: int, plain: bool = False, residual: str = "max", name: str, **common) -> None:
        super().__init__(name=name, **common)
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"{name}: depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...), got {depth}")
        if residual not in RESIDUAL_POLICIES:
            raise ConfigError(f"{name}: residual policy {residual!r} is not one of {', '.join(RESIDUAL_POLICIES)} (--residual)")
        self.depth, self.plain, self.residual = depth, plain, residual
        n = (depth - 2) // 6
        self.stage_widths = [scale_width(w, self.width_mult) for w in BASE_WIDTHS]
        self.stem_width = self.stage_widths[0]
        # Per block: (key1, key2, stride, output size), fixed for this arch.
        self._blocks: list[tuple[str, str, int, int]] = []
        size = self.input_size
        for s in range(3):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                size = conv_out(size, 3, stride, 1)
                prefix = f"stage{s + 1}.block{b}"
                self._blocks.append((f"{prefix}.conv1", f"{prefix}.conv2", stride, size))
        self._defaults = {}
        for key1, key2, _, _ in self._blocks:
            width = self.stage_widths[int(key1[5]) - 1]
            self._defaults[key1] = self._defaults[key2] = width

    def options(self) -> dict:
        return {} if self.plain else {"residual": self.residual}

    def default_widths(self) -> Widths:
        return dict(self._defaults)

    def _stream(self, stream: int, c2: int) -> int:
        if self.plain or self.residual == "local":
            return c2
        return max(stream, c2)

    def layers(self, widths: Mapping[str, int]) -> list[Layer]:
        size = self.input_size
        out = [Layer("stem", self.in_channels, self.stem_width, 3, (size, size))]
        stream = self.stem_width
        for key1, key2, _, size in self._blocks:
            c1, c2 = widths[key1], widths[key2]
            out.append(Layer(key1, stream, c1, 3, (size, size)))
            out.append(Layer(key2, c1, c2, 3, (size, size)))
            stream = self._stream(stream, c2)
        out.append(Layer("fc", stream, self.num_classes, bias=True, norm=False))
        return out

    def _build(self, widths: Widths) -> SegmentedNet:
        stem = nn.Sequential(*conv_bn(self.in_channels, self.stem_width), nn.ReLU(inplace=True))
        segments: list[nn.Module] = [stem]
        stream = self.stem_width
        shortcut = None if self.plain else self.residual
        for key1, key2, stride, _ in self._blocks:
            segments.append(BasicBlock(key1, key2, stream, widths[key1], widths[key2], stride, shortcut))
            stream = self._stream(stream, widths[key2])
        segments.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(stream, self.num_classes)))
        net = SegmentedNet(segments)
        init_weights(net)
        return net
