"""DenseNet-40 for CIFAR (Huang et al. 2017): growth rate 12, no bottleneck, no compression.

A 3x3 stem conv (``2 * growth`` = 24 channels, as in the common PyTorch CIFAR implementation;
the original Torch code used 16), three dense blocks of 12 layers, two transitions, then
BN-ReLU, global average pooling and a linear classifier. Everything is pre-activation
(BN-ReLU-conv):

- dense layer: ``x -> cat([x, conv3x3(relu(bn(x)))])`` adds ``growth`` channels;
- transition: ``BN-ReLU-conv1x1-avgpool2``, output width = input width (compression 1; not
  searchable: it follows the growths before it). The pooling uses ``ceil_mode`` so that any
  input size >= 1 works; at even sizes it is the usual 2x2 average pool.

Searchable keys: ``dense{b}.layer{j}.growth``, the channels layer ``j`` of block ``b`` adds.
Its probe is on that conv's output before the concatenation (where the original DenseNet puts
its dropout): with pre-activation no BN follows the conv itself, so a dropped channel reaches
each reader's BN as zeros.

At the initial widths: 282,958,368 MACs at 32x32 with 100 classes (the paper's 282M), of which
663,552 are the stem; 1.10M parameters. MACs are not bilinear in the growths: a transition conv
maps its input width to itself, so its cost is quadratic in the growths of the block before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..widths import Widths
from .base import Arch, Layer, PreNormLayer, scale_width
from .blocks import SegmentedNet, init_weights
from .channels import Space, describe, space, width
from .probes import ChannelDrop
from .registry import Option, register

GROWTH = Option("growth", int, 12, "DenseNet: growth rate of every layer", minimum=1)


def _half(size: int) -> int:
    """Output size of a 2x2 stride-2 average pool in ceil mode."""
    return (size + 1) // 2


class DenseLayer(nn.Module):
    """(N, cin, H, W) -> (N, cin + growth, H, W)."""

    def __init__(self, key: str, cin: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, 1, 1, bias=False)
        self.probe = ChannelDrop(key)  # before the concatenation: drops only the new channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.probe(self.conv(F.relu(self.bn(x))))], 1)

    def describe_channels(self, stream: Space) -> Space:
        """Tag the modules with their channel spaces (models/channels.py); returns the
        concatenation leaving: the stream entering, then this layer's growth segment (free)."""
        growth = space(self.probe.key, self.conv.out_channels, free=True)
        describe(self.bn, stream)
        describe(self.conv, growth, stream)
        return stream + growth


class Transition(nn.Module):
    """(N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2, ceil_mode=True)

    def describe_channels(self, stream: Space) -> Space:
        """Input and output both the concatenation of the segments before it."""
        describe(self.bn, stream)
        describe(self.conv, stream, stream)
        return stream


class DenseNet(Arch):
    """DenseNet (depth 3L+4, no bottleneck) for small images; every layer's growth is searchable."""

    def __init__(self, *, depth: int = 40, growth: int = GROWTH.default, name: str, **common) -> None:
        super().__init__(name=name, **common)
        if depth < 7 or (depth - 4) % 3:
            raise ConfigError(f"{name}: depth must be 3L+4 with L >= 1 (40, 100, ...), got {depth}")
        self.depth, self.growth = depth, growth
        self.per_block = (depth - 4) // 3
        self.stem_width = scale_width(2 * growth, self.width_mult)
        self._defaults: Widths = {f"dense{b}.layer{j}.growth": scale_width(growth, self.width_mult)
                                  for b in range(1, 4) for j in range(self.per_block)}
        self._keys = [[f"dense{b}.layer{j}.growth" for j in range(self.per_block)] for b in range(1, 4)]

    def layers(self, widths: Mapping[str, int]) -> list[Layer]:
        size = self.input_size
        hw = (size, size)
        out: list[Layer] = [Layer("stem", self.in_channels, self.stem_width, 3, hw, norm=False)]
        c = self.stem_width
        for b, keys in enumerate(self._keys, start=1):
            for key in keys:
                out.append(PreNormLayer(key, c, widths[key], 3, hw, norm=False))
                c += widths[key]
            if b < 3:
                out.append(PreNormLayer(f"transition{b}", c, c, 1, hw, norm=False))
                size = _half(size)
                hw = (size, size)
        out.append(PreNormLayer("fc", c, self.num_classes, bias=True, norm=False))
        return out

    def _build(self, widths: Widths) -> SegmentedNet:
        stream = space("stem", self.stem_width)  # channel spaces: models/channels.py
        segments: list[nn.Module] = [describe(nn.Conv2d(self.in_channels, self.stem_width, 3, 1, 1, bias=False),
                                              stream)]
        for b, keys in enumerate(self._keys, start=1):
            for key in keys:
                segments.append(DenseLayer(key, width(stream), widths[key]))
                stream = segments[-1].describe_channels(stream)
            if b < 3:
                segments.append(Transition(width(stream)))
                stream = segments[-1].describe_channels(stream)
        c = width(stream)
        segments.append(nn.Sequential(describe(nn.BatchNorm2d(c), stream), nn.ReLU(inplace=True),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      describe(nn.Linear(c, self.num_classes), None, stream)))
        net = SegmentedNet(segments)
        init_weights(net)
        return net


register("densenet40", partial(DenseNet, depth=40),
         "CIFAR DenseNet-40 (k=12, no bottleneck): searchable growth per layer", options=(GROWTH,))
