"""ImageNet ResNet-18 and ResNet-34 (basic blocks), every 3x3 conv in a block searchable.

The torchvision layout: a fixed 7x7 stride-2 stem conv (BN, ReLU) and 3x3 stride-2 max-pool,
four stages (``layer1`` .. ``layer4``, base widths 64/128/256/512) of basic blocks, global
average pooling and a linear classifier. Stages 2-4 halve the resolution in their first
block (stride on its first conv). Keys: ``layer{s}.block{b}.conv{1,2}``.

Shortcuts, with searched widths (the paper's searched ResNet-18 has a different second-conv
width in every block of a stage, so the residual stream cannot keep one width per stage):

- a block that downsamples (first block of stages 2-4) has the 1x1 stride-2 projection with
  BN; it outputs the block's conv2 width (the projection "shares the width of the block's
  second conv"), so the stream width after such a block is exactly ``conv2``;
- every other block adds the identity with the "max" rule of :mod:`.cifar_resnet`: the
  narrower of stream and conv2 output is zero-padded and the stream carries ``max(s, c2)``.

At the initial widths this is exactly torchvision's ResNet (1,814,073,344 MACs and 11,689,512
parameters for ResNet-18 at 224x224, 1000 classes).

Width multiplier: stage and stem widths are ``int(base * width_mult)`` (truncated, not
rounded): the paper's 0.8x ResNet-18 has 51/102/204/409 channels, which is truncation of
51.2/102.4/204.8/409.6 (rounding would give 205 and 410). The stem scales with the stages
(51 at 0.8x), which reproduces the paper's 1.17 GMACs for the uniform 0.8x network.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..widths import Widths
from .base import Arch, Layer, conv_out
from .blocks import ChannelDrop, SegmentedNet, conv_bn, init_weights, pad_channels

BASE_WIDTHS = (64, 128, 256, 512)
STEM_WIDTH = 64
STAGE_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def truncate_width(width: int, mult: float) -> int:
    """``int(width * mult)``, at least 1: the paper's 0.8x rule (512 -> 409, 256 -> 204).

    The tiny epsilon keeps products that are integers in exact arithmetic (64 * 0.75) from
    truncating one below because of binary floating point.
    """
    return max(1, int(width * mult + 1e-9))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU, conv3x3-BN, shortcut (projection or identity), ReLU.

    Shapes: (N, cin, H, W) -> (N, cout, H', W'), H' = ceil(H / stride); cout = c2 with a
    projection, max(cin, c2) with the identity (the narrower side zero-padded).
    """

    def __init__(self, key1: str, key2: str, cin: int, c1: int, c2: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, c1, 3, stride)
        self.probe1 = ChannelDrop(key1)
        self.conv2, self.bn2 = conv_bn(c1, c2, 3, 1)
        self.probe2 = ChannelDrop(key2)  # before the residual add: drops only this conv's work
        # The projection's output width follows conv2's key; it is not probed on its own.
        self.downsample = (nn.Sequential(nn.Conv2d(cin, c2, 1, stride, bias=False), nn.BatchNorm2d(c2))
                           if stride > 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.probe1(self.bn1(self.conv1(x))))
        out = self.probe2(self.bn2(self.conv2(out)))
        if self.downsample is not None:
            sc = self.downsample(x)
        else:
            width = max(out.shape[1], x.shape[1])
            out, sc = pad_channels(out, width), pad_channels(x, width)
        return F.relu(out + sc)


class ImageNetResNet(Arch):
    """ResNet-18/34 for ImageNet-sized inputs (any input size >= 1 works)."""

    def __init__(self, *, depth: int, name: str, **common) -> None:
        super().__init__(name=name, **common)
        if depth not in STAGE_DEPTHS:
            raise ConfigError(f"{name}: depth must be one of {', '.join(map(str, STAGE_DEPTHS))}, got {depth}")
        self.depth = depth
        self.stem_width = truncate_width(STEM_WIDTH, self.width_mult)
        self.stage_widths = [truncate_width(w, self.width_mult) for w in BASE_WIDTHS]
        self.stem_size = conv_out(self.input_size, 7, 2, 3)
        size = self.pool_size = conv_out(self.stem_size, 3, 2, 1)
        # Per block: (key1, key2, stride, output size), fixed for this arch.
        self._blocks: list[tuple[str, str, int, int]] = []
        self._defaults: Widths = {}
        for s, n in enumerate(STAGE_DEPTHS[depth]):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                size = conv_out(size, 3, stride, 1)
                prefix = f"layer{s + 1}.block{b}"
                self._blocks.append((f"{prefix}.conv1", f"{prefix}.conv2", stride, size))
                self._defaults[f"{prefix}.conv1"] = self._defaults[f"{prefix}.conv2"] = self.stage_widths[s]

    def default_widths(self) -> Widths:
        return dict(self._defaults)

    def layers(self, widths: Mapping[str, int]) -> list[Layer]:
        hw = (self.stem_size, self.stem_size)
        out = [Layer("stem", self.in_channels, self.stem_width, 7, hw)]
        stream = self.stem_width
        for key1, key2, stride, size in self._blocks:
            c1, c2 = widths[key1], widths[key2]
            hw = (size, size)
            out.append(Layer(key1, stream, c1, 3, hw))
            out.append(Layer(key2, c1, c2, 3, hw))
            if stride > 1:
                out.append(Layer(key2.rsplit(".", 1)[0] + ".downsample", stream, c2, 1, hw))
                stream = c2
            else:
                stream = max(stream, c2)
        out.append(Layer("fc", stream, self.num_classes, bias=True, norm=False))
        return out

    def _build(self, widths: Widths) -> SegmentedNet:
        stem = nn.Sequential(nn.Conv2d(self.in_channels, self.stem_width, 7, 2, 3, bias=False),
                             nn.BatchNorm2d(self.stem_width), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        segments: list[nn.Module] = [stem]
        stream = self.stem_width
        for key1, key2, stride, _ in self._blocks:
            segments.append(BasicBlock(key1, key2, stream, widths[key1], widths[key2], stride))
            stream = widths[key2] if stride > 1 else max(stream, widths[key2])
        segments.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(stream, self.num_classes)))
        net = SegmentedNet(segments)
        init_weights(net)
        return net
