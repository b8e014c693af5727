"""Building blocks shared by the model families: the segmented net, the basic residual block,
the block plan of stage-structured nets, initialisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .base import conv_out
from .channels import Space, describe, space, width
from .probes import ChannelDrop

SHORTCUTS = (None, "local", "max", "projection")


class SegmentedNet(nn.Module):
    """A network as a chain of segments (stem, blocks..., head) applied in order.

    The chain lets the FUR estimator compute the activations entering the segment that holds
    a probe once and reuse them, instead of running the whole network for every probe.
    """

    def __init__(self, segments: list[nn.Module]) -> None:
        super().__init__()
        self.segments = nn.ModuleList(segments)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for segment in self.segments:
            x = segment(x)
        return x

    def probe_segments(self) -> dict[str, int]:
        """For every width key, the index of the segment that holds its probe."""
        return {m.key: i for i, seg in enumerate(self.segments) for m in seg.modules() if isinstance(m, ChannelDrop)}


class BlockPlan(NamedTuple):
    """The fixed structure of one two-conv block of a stage-structured net."""

    index: int  # over the whole net, from 0
    stage: int  # from 0
    key1: str
    key2: str
    stride: int
    out_size: int  # output height = width


def plan_blocks(depths: Sequence[int], input_size: int, stage_name: str = "stage") -> list[BlockPlan]:
    """Blocks of stages with ``depths[s]`` blocks each; every stage after the first halves the
    resolution in its first block (3x3 conv, stride 2, padding 1). Keys are
    ``{stage_name}{s + 1}.block{b}.conv{1,2}``."""
    plan, size = [], input_size
    for s, n in enumerate(depths):
        for b in range(n):
            stride = 2 if s > 0 and b == 0 else 1
            size = conv_out(size, 3, stride, 1)
            prefix = f"{stage_name}{s + 1}.block{b}"
            plan.append(BlockPlan(len(plan), s, f"{prefix}.conv1", f"{prefix}.conv2", stride, size))
    return plan


def stream_after(shortcut: str | None, stream: int, c2: int) -> int:
    """Width of the stream leaving a :class:`BasicBlock` whose second conv has ``c2`` channels."""
    return max(stream, c2) if shortcut == "max" else c2


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU, conv3x3-BN, shortcut, ReLU; both BN outputs probed.

    ``shortcut``: ``None`` (a plain net), or, where stream and conv2 widths differ,
    ``"local"`` (the identity truncated or zero-padded to conv2's width), ``"max"`` (the
    narrower side zero-padded: the stream carries ``max(cin, c2)``) or ``"projection"`` (a 1x1
    conv with BN to conv2's width, with the block's stride). Parameter-free shortcuts downsample
    by 2x2 average pooling. Shapes: (N, cin, H, W) -> (N, stream_after(shortcut, cin, c2),
    ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, key1: str, key2: str, cin: int, c1: int, c2: int, stride: int, shortcut: str | None) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        self.conv1, self.bn1 = conv_bn(cin, c1, 3, stride)
        self.probe1 = ChannelDrop(key1)
        self.conv2, self.bn2 = conv_bn(c1, c2, 3, 1)
        self.probe2 = ChannelDrop(key2)  # before the residual add: drops only this conv's work
        # The projection's output width follows conv2's key; it is not probed on its own.
        self.downsample = (nn.Sequential(nn.Conv2d(cin, c2, 1, stride, bias=False), nn.BatchNorm2d(c2))
                           if shortcut == "projection" else None)
        self.stride = stride
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.probe1(self.bn1(self.conv1(x))))
        out = self.probe2(self.bn2(self.conv2(out)))
        if self.shortcut is None:
            return F.relu(out)
        if self.downsample is not None:
            sc = self.downsample(x)
        else:
            # ceil_mode matches the conv's ceil(H / 2) output size for odd inputs.
            sc = F.avg_pool2d(x, 2, ceil_mode=True) if self.stride > 1 else x
            if self.shortcut == "local":
                sc = pad_channels(sc[:, : out.shape[1]], out.shape[1])
            else:
                width = max(out.shape[1], sc.shape[1])
                out, sc = pad_channels(out, width), pad_channels(sc, width)
        return F.relu(out + sc)

    def describe_channels(self, stream: Space) -> Space:
        """Tag the modules with their channel spaces (models/channels.py) given the stream
        entering; returns the stream leaving. Under a shortcut conv2's channels add into the
        stream by position: not free, and new ones must output zero (inert)."""
        residual = self.shortcut is not None
        c1 = space(self.probe1.key, self.conv1.out_channels, free=True)
        c2 = space(self.probe2.key, self.conv2.out_channels, free=not residual, inert=residual)
        describe([self.conv1, self.bn1], c1, stream)
        describe([self.conv2, self.bn2], c2, c1)
        if self.downsample is not None:
            describe(list(self.downsample), c2, stream)
        if self.shortcut == "max":
            return space(self.probe2.key.rsplit(".", 1)[0] + ".stream", max(width(stream), width(c2)))
        return c2


def init_weights(model: nn.Module) -> None:
    """He initialisation for convs (fan-out, as in torchvision's ResNets), unit BN, small linear."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """A bias-free conv with 'same' padding followed by BatchNorm."""
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


def pad_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``x`` (N, C, H, W) zero-padded to ``channels`` channels (unchanged if it has as many)."""
    return F.pad(x, (0, 0, 0, 0, 0, channels - x.shape[1])) if channels > x.shape[1] else x
