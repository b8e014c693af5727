"""MobileNetV2 and MnasNet-A1: inverted residual blocks with searchable widths.

Both are a fixed 3x3 stride-2 stem conv (32 channels), seven stages of inverted residual
blocks, a fixed 1x1 conv to 1280 channels, global average pooling, dropout 0.2 and a linear
classifier. A block is

    [1x1 expand conv-BN-act] -> kxk depthwise conv-BN-act -> [squeeze-excite] -> 1x1 project conv-BN

with the identity added when the block keeps the resolution and is not the first of its stage
(so input and output both have the stage's width). The first block of each network has
expansion 1: no expand conv, the depthwise conv runs on the stem's 32 channels.

Searchable keys, in forward order:

- ``blocks.{i}.expand`` -- the expansion width of block ``i`` (numbered from 0 over the whole
  network); the depthwise conv (and the squeeze-excite gate) have this width too. Its probe is
  at the depthwise conv's BN output, where dropping a channel removes the whole channel path
  (expand, depthwise, and the project conv's input) from the block;
- ``stage{s}.out`` -- the output width of stage ``s`` (1..7), shared by the project convs of
  all its blocks so the residuals line up. Because one key covers several convs, its probe
  sits on the stage's output stream (after the last block's residual add): dropping a channel
  there removes it from everything downstream, which is what narrowing the stage does.

Width multiplier: stem and stage widths are ``make_divisible(base * width_mult, 8)``, the
MobileNet rule (nearest multiple of 8, at least 8, never more than 10% below the exact value),
and the last conv is ``make_divisible(1280 * max(1, width_mult), 8)``; the initial expansion
width of a block is its input width times the stage's expansion ratio.

MnasNet-A1 (Tan et al. 2019, the TF/timm definition) has squeeze-excite in stages 3, 5 and 6:
global average pool, 1x1 conv (bias) to the squeeze width, ReLU, 1x1 conv (bias) back, sigmoid
gate. Squeeze width rule: ``max(1, expand // (4 * t))`` with ``t`` the stage's expansion
ratio -- at the initial widths this is the reference ``int(0.25 * block input width)``, and it
scales with the searched expansion width. The two FCs cost ``2 * expand * squeeze`` MACs
(counted, as 1x1 convs on a 1x1 map), so MnasNet's MACs are not bilinear in the widths (they
are quadratic, with floors, in the expansion widths); MobileNetV2's are bilinear.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..widths import Widths
from .base import Arch, Layer, conv_out
from .blocks import SegmentedNet, conv_bn, init_weights
from .channels import Space, describe, space, width
from .probes import ChannelDrop
from .registry import IMAGENET_GEOMETRY, register

STEM_WIDTH = 32
LAST_WIDTH = 1280
SE_RATIO = 4  # squeeze = expand // (SE_RATIO * t): a quarter of the block's input width
DROPOUT = 0.2


class Stage(NamedTuple):
    """One row of a network table."""

    t: int  # expansion ratio
    c: int  # base output width
    n: int  # blocks
    s: int  # stride of the first block
    k: int  # depthwise kernel
    se: bool  # squeeze-excite


MOBILENET_V2 = (
    Stage(1, 16, 1, 1, 3, False), Stage(6, 24, 2, 2, 3, False), Stage(6, 32, 3, 2, 3, False),
    Stage(6, 64, 4, 2, 3, False), Stage(6, 96, 3, 1, 3, False), Stage(6, 160, 3, 2, 3, False),
    Stage(6, 320, 1, 1, 3, False),
)
MNASNET_A1 = (
    Stage(1, 16, 1, 1, 3, False), Stage(6, 24, 2, 2, 3, False), Stage(3, 40, 3, 2, 5, True),
    Stage(6, 80, 4, 2, 3, False), Stage(6, 112, 2, 1, 3, True), Stage(6, 160, 3, 2, 5, True),
    Stage(6, 320, 1, 1, 3, False),
)
TABLES = {"mobilenet_v2": (MOBILENET_V2, nn.ReLU6), "mnasnet_a1": (MNASNET_A1, nn.ReLU)}


def make_divisible(value: float, divisor: int = 8) -> int:
    """The nearest multiple of ``divisor`` (at least ``divisor``), bumped up one step if that
    is more than 10% below ``value`` -- the rounding of MobileNet's width multiplier."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def squeeze_width(expand: int, t: int) -> int:
    """Squeeze-excite bottleneck width for expansion width ``expand`` at expansion ratio ``t``."""
    return max(1, expand // (SE_RATIO * t))


class BlockSpec(NamedTuple):
    """The fixed structure of one block; widths come from the keys."""

    index: int
    stage: int  # 1-based
    t: int
    k: int
    stride: int
    se: bool
    residual: bool
    last_in_stage: bool
    in_size: int
    out_size: int

    @property
    def expand_key(self) -> str | None:
        return f"blocks.{self.index}.expand" if self.t != 1 else None

    @property
    def out_key(self) -> str:
        return f"stage{self.stage}.out"


class SqueezeExcite(nn.Module):
    """x * sigmoid(W2 relu(W1 avgpool(x) + b1) + b2), with W1, W2 as 1x1 convs."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)  # (N, C, 1, 1)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(s))))


class InvertedResidual(nn.Module):
    """(N, cin, H, W) -> (N, cout, H', W'), H' = ceil(H / stride)."""

    def __init__(self, spec: BlockSpec, cin: int, hidden: int, cout: int, act: type[nn.Module]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if spec.t != 1:
            layers += [*conv_bn(cin, hidden, 1), act(inplace=True)]
        layers += conv_bn(hidden, hidden, spec.k, spec.stride, groups=hidden)
        if spec.expand_key is not None:
            layers.append(ChannelDrop(spec.expand_key))
        layers.append(act(inplace=True))
        if spec.se:
            layers.append(SqueezeExcite(hidden, squeeze_width(hidden, spec.t)))
        layers += conv_bn(hidden, cout, 1)  # linear bottleneck: no activation
        self.body = nn.Sequential(*layers)
        self.spec = spec
        self.residual = spec.residual
        # The stage's width key is probed once, on the stage's output stream.
        self.out_probe = ChannelDrop(spec.out_key) if spec.last_in_stage else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.residual:
            out = out + x
        return self.out_probe(out) if self.out_probe is not None else out

    def describe_channels(self, stream: Space) -> Space:
        """Tag the modules with their channel spaces (models/channels.py) given the stream
        entering; returns the stage's stream. Both keys are free: the expansion width covers the
        expand, depthwise and SE convs and the project conv's input; the stage width covers the
        whole stage stream, whose residual adds stay inside that one key's channels."""
        spec = self.spec
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        norms = [m for m in self.body if isinstance(m, nn.BatchNorm2d)]
        *expand, depthwise, project = zip(convs, norms)
        hidden = stream if spec.expand_key is None else space(spec.expand_key, depthwise[0].out_channels, free=True)
        out = space(spec.out_key, project[0].out_channels, free=True)
        if expand:
            describe(expand[0], hidden, stream)
        describe(depthwise, hidden)
        for se in (m for m in self.body if isinstance(m, SqueezeExcite)):
            squeeze = space(f"blocks.{spec.index}.squeeze", se.reduce.out_channels)  # derived: keeps a prefix
            describe(se.reduce, squeeze, hidden)
            describe(se.expand, hidden, squeeze)
        describe(project, out, hidden)
        assert not self.residual or stream == out, "a residual block reads and writes its stage's space"
        return out


class MobileNet(Arch):
    """MobileNetV2 / MnasNet-A1 from a stage table (``variant``: a key of ``TABLES``)."""

    def __init__(self, *, variant: str, name: str, **common) -> None:
        super().__init__(name=name, **common)
        table, self.act = TABLES[variant]
        self.variant = variant
        self.stem_width = make_divisible(STEM_WIDTH * self.width_mult)
        self.last_width = make_divisible(LAST_WIDTH * max(1.0, self.width_mult))
        self.stem_size = size = conv_out(self.input_size, 3, 2, 1)
        self._blocks: list[BlockSpec] = []
        self._defaults: Widths = {}
        width, index = self.stem_width, 0
        for s, row in enumerate(table, start=1):
            out_width = make_divisible(row.c * self.width_mult)
            for b in range(row.n):
                stride = row.s if b == 0 else 1
                out_size = conv_out(size, row.k, stride, row.k // 2)
                spec = BlockSpec(index, s, row.t, row.k, stride, row.se, residual=b > 0 and stride == 1,
                                 last_in_stage=b == row.n - 1, in_size=size, out_size=out_size)
                if spec.expand_key is not None:
                    self._defaults[spec.expand_key] = width * row.t
                self._blocks.append(spec)
                width, size, index = out_width, out_size, index + 1
            self._defaults[f"stage{s}.out"] = out_width

    def layers(self, widths: Mapping[str, int]) -> list[Layer]:
        out = [Layer("stem", self.in_channels, self.stem_width, 3, (self.stem_size, self.stem_size))]
        cin = self.stem_width
        for spec in self._blocks:
            name = f"blocks.{spec.index}"
            hw = (spec.out_size, spec.out_size)
            hidden = cin if spec.expand_key is None else widths[spec.expand_key]
            cout = widths[spec.out_key]
            if spec.expand_key is not None:
                out.append(Layer(spec.expand_key, cin, hidden, 1, (spec.in_size, spec.in_size)))
            out.append(Layer(f"{name}.dw", hidden, hidden, spec.k, hw, groups=hidden))
            if spec.se:
                sq = squeeze_width(hidden, spec.t)
                out.append(Layer(f"{name}.se.reduce", hidden, sq, bias=True, norm=False))
                out.append(Layer(f"{name}.se.expand", sq, hidden, bias=True, norm=False))
            out.append(Layer(f"{name}.project", hidden, cout, 1, hw))
            cin = cout
        size = self._blocks[-1].out_size
        out.append(Layer("head", cin, self.last_width, 1, (size, size)))
        out.append(Layer("fc", self.last_width, self.num_classes, bias=True, norm=False))
        return out

    def _build(self, widths: Widths) -> SegmentedNet:
        stream = space("stem", self.stem_width)  # channel spaces: models/channels.py
        stem = nn.Sequential(*describe(conv_bn(self.in_channels, self.stem_width, 3, 2), stream),
                             self.act(inplace=True))
        segments: list[nn.Module] = [stem]
        for spec in self._blocks:
            cin = width(stream)
            hidden = cin if spec.expand_key is None else widths[spec.expand_key]
            segments.append(InvertedResidual(spec, cin, hidden, widths[spec.out_key], self.act))
            stream = segments[-1].describe_channels(stream)
        head = space("head", self.last_width)
        last = describe(conv_bn(width(stream), self.last_width, 1), head, stream)
        fc = describe(nn.Linear(self.last_width, self.num_classes), None, head)
        segments.append(nn.Sequential(*last, self.act(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Dropout(DROPOUT), fc))
        net = SegmentedNet(segments)
        init_weights(net)
        return net


register("mobilenet_v2", partial(MobileNet, variant="mobilenet_v2"),
         "MobileNetV2: searchable expansion width per block and output width per stage", geometry=IMAGENET_GEOMETRY)
register("mnasnet_a1", partial(MobileNet, variant="mnasnet_a1"),
         "MnasNet-A1: as mobilenet_v2, with squeeze-excite (squeeze = expansion // (4t))",
         geometry=IMAGENET_GEOMETRY)
