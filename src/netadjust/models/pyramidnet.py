"""PyramidNet for CIFAR (Han et al. 2017), basic blocks, every conv searchable.

A 3x3 stem conv (16 channels) with BN, three stages of ``n`` blocks (depth 6n+2; stages 2 and
3 halve the resolution in their first block), then BN-ReLU, global average pooling and a linear
classifier. Instead of doubling at each stage, the width grows by ``alpha / N`` per block
(``N = 3n`` blocks): block ``k`` (1-based) has ``round(16 + alpha * k / N)`` channels in both of
its convs (times ``width_mult``), as in the authors' code.

Block (the PyramidNet basic block): ``BN - conv3x3 - BN - ReLU - conv3x3 - BN``, plus the
shortcut, no ReLU after the add. The shortcut has no parameters: 2x2 average pooling (ceil
mode) when downsampling and zero channels where the block output is wider -- the stream
carries ``max(stream, conv2)`` channels, the "max" rule of :mod:`.cifar_resnet`.

Keys ``stage{s}.block{b}.conv{1,2}``; probes at the BN output of each conv (for conv2, before
the residual add).

Widening factor: ``alpha = 24`` (the default) gives 40,340,704 MACs for PyramidNet-20 on
CIFAR-100 **with** the stem (39,898,336 without), the paper's 40.4M; no integer alpha matches
40.4M without the stem as closely (24.5 would be needed).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..widths import Widths
from .base import Arch, Layer, PreNormLayer
from .blocks import SegmentedNet, conv_bn, init_weights, pad_channels, plan_blocks
from .channels import Space, describe, space, width
from .probes import ChannelDrop
from .registry import Option, register

BASE_WIDTH = 16
ALPHA = Option("alpha", float, 24.0, "PyramidNet: total width increase over the net", minimum=0)


class PyramidBlock(nn.Module):
    """(N, cin, H, W) -> (N, max(cin, c2), ceil(H/stride), ceil(W/stride))."""

    def __init__(self, key1: str, key2: str, cin: int, c1: int, c2: int, stride: int) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(cin)
        self.conv1, self.bn1 = conv_bn(cin, c1, 3, stride)
        self.probe1 = ChannelDrop(key1)
        self.conv2, self.bn2 = conv_bn(c1, c2, 3, 1)
        self.probe2 = ChannelDrop(key2)  # before the residual add: drops only this conv's work
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.probe1(self.bn1(self.conv1(self.bn0(x)))))
        out = self.probe2(self.bn2(self.conv2(out)))
        sc = F.avg_pool2d(x, 2, ceil_mode=True) if self.stride > 1 else x
        wide = max(out.shape[1], sc.shape[1])
        return pad_channels(out, wide) + pad_channels(sc, wide)

    def describe_channels(self, stream: Space) -> Space:
        """Tag the modules with their channel spaces (models/channels.py); returns the "max"
        stream leaving, into which conv2's channels add by position (not free, inert)."""
        c1 = space(self.probe1.key, self.conv1.out_channels, free=True)
        c2 = space(self.probe2.key, self.conv2.out_channels, inert=True)
        describe(self.bn0, stream)
        describe([self.conv1, self.bn1], c1, stream)
        describe([self.conv2, self.bn2], c2, c1)
        return space(self.probe2.key.rsplit(".", 1)[0] + ".stream", max(width(stream), width(c2)))


class PyramidNet(Arch):
    """PyramidNet-(6n+2) with basic blocks and additive widening ``alpha``."""

    def __init__(self, *, depth: int, alpha: float = ALPHA.default, name: str, **common) -> None:
        super().__init__(name=name, **common)
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"{name}: depth must be 6n+2 with n >= 1 (20, 32, 56, 110, ...), got {depth}")
        self.depth, self.alpha = depth, alpha
        n = (depth - 2) // 6
        self.stem_width = max(1, round(BASE_WIDTH * self.width_mult))
        self._blocks = plan_blocks((n, n, n), self.input_size)
        self._defaults = {}
        for b in self._blocks:
            w = max(1, round((BASE_WIDTH + alpha * (b.index + 1) / len(self._blocks)) * self.width_mult))
            self._defaults[b.key1] = self._defaults[b.key2] = w

    def layers(self, widths: Mapping[str, int]) -> list[Layer]:
        size = self.input_size
        out = [Layer("stem", self.in_channels, self.stem_width, 3, (size, size))]
        stream = self.stem_width
        for b in self._blocks:
            c1, c2 = widths[b.key1], widths[b.key2]
            hw = (b.out_size, b.out_size)
            out += [PreNormLayer(b.key1, stream, c1, 3, hw), Layer(b.key2, c1, c2, 3, hw)]
            stream = max(stream, c2)
        out.append(PreNormLayer("fc", stream, self.num_classes, bias=True, norm=False))
        return out

    def _build(self, widths: Widths) -> SegmentedNet:
        stream = space("stem", self.stem_width)  # channel spaces: models/channels.py
        segments: list[nn.Module] = [nn.Sequential(*describe(conv_bn(self.in_channels, self.stem_width), stream))]
        for b in self._blocks:
            block = PyramidBlock(b.key1, b.key2, width(stream), widths[b.key1], widths[b.key2], b.stride)
            segments.append(block)
            stream = block.describe_channels(stream)
        c = width(stream)
        segments.append(nn.Sequential(describe(nn.BatchNorm2d(c), stream), nn.ReLU(inplace=True),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      describe(nn.Linear(c, self.num_classes), None, stream)))
        net = SegmentedNet(segments)
        init_weights(net)
        return net


register("pyramidnet20", partial(PyramidNet, depth=20),
         "CIFAR PyramidNet-20 (alpha=24): basic blocks, searchable width per conv", options=(ALPHA,))
