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
from functools import partial

from torch import nn

from ..errors import ConfigError
from ..widths import Widths
from .base import Arch, Layer, conv_out
from .blocks import BasicBlock, SegmentedNet, init_weights, plan_blocks, stream_after
from .channels import describe, space, width
from .registry import IMAGENET_GEOMETRY, register

BASE_WIDTHS = (64, 128, 256, 512)
STEM_WIDTH = 64
STAGE_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def truncate_width(width: int, mult: float) -> int:
    """``int(width * mult)``, at least 1: the paper's 0.8x rule (512 -> 409, 256 -> 204).

    The tiny epsilon keeps products that are integers in exact arithmetic (64 * 0.75) from
    truncating one below because of binary floating point.
    """
    return max(1, int(width * mult + 1e-9))


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
        self.pool_size = conv_out(self.stem_size, 3, 2, 1)
        self._blocks = plan_blocks(STAGE_DEPTHS[depth], self.pool_size, stage_name="layer")
        self._defaults = {key: self.stage_widths[b.stage] for b in self._blocks for key in (b.key1, b.key2)}

    @staticmethod
    def _shortcut(stride: int) -> str:
        # Downsampling blocks project to conv2's width; the others add the identity ("max").
        return "projection" if stride > 1 else "max"

    def layers(self, widths: Mapping[str, int]) -> list[Layer]:
        out = [Layer("stem", self.in_channels, self.stem_width, 7, (self.stem_size, self.stem_size))]
        stream = self.stem_width
        for b in self._blocks:
            c1, c2 = widths[b.key1], widths[b.key2]
            hw = (b.out_size, b.out_size)
            out += [Layer(b.key1, stream, c1, 3, hw), Layer(b.key2, c1, c2, 3, hw)]
            if b.stride > 1:
                out.append(Layer(b.key2.rsplit(".", 1)[0] + ".downsample", stream, c2, 1, hw))
            stream = stream_after(self._shortcut(b.stride), stream, c2)
        out.append(Layer("fc", stream, self.num_classes, bias=True, norm=False))
        return out

    def _build(self, widths: Widths) -> SegmentedNet:
        stream = space("stem", self.stem_width)  # channel spaces: models/channels.py
        stem = describe([nn.Conv2d(self.in_channels, self.stem_width, 7, 2, 3, bias=False),
                         nn.BatchNorm2d(self.stem_width)], stream)
        segments: list[nn.Module] = [nn.Sequential(*stem, nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))]
        for b in self._blocks:
            block = BasicBlock(b.key1, b.key2, width(stream), widths[b.key1], widths[b.key2], b.stride,
                               self._shortcut(b.stride))
            segments.append(block)
            stream = block.describe_channels(stream)
        fc = describe(nn.Linear(width(stream), self.num_classes), None, stream)
        segments.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc))
        net = SegmentedNet(segments)
        init_weights(net)
        return net


for _depth, _convs in ((18, 16), (34, 32)):
    register(f"resnet{_depth}", partial(ImageNetResNet, depth=_depth),
             f"ImageNet ResNet-{_depth}: basic blocks, 7x7 stem, {_convs} searchable 3x3 convs, "
             "projections follow conv2", geometry=IMAGENET_GEOMETRY)
