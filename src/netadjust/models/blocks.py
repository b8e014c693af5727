"""Building blocks shared by the model families: the probe point and the segmented net."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelDrop(nn.Module):
    """Channel-wise dropout ("SpatialDropout") at one searchable layer's BN output.

    Identity while ``p == 0``. With ``0 < p < 1`` it zeroes each channel of each sample with
    probability ``p`` and scales the survivors by ``1 / (1 - p)``, in train *and* eval mode:
    the trainer uses it as a regulariser, and the FUR estimator uses it on a model in eval
    mode to remove a known share of one layer's computation. ``key`` is the width key whose
    channels it drops.
    """

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.p = 0.0
        # Masks come from this generator when set (the FUR estimator gives each key its own
        # stream, so results do not depend on the order or the process that probes a key).
        self.generator: torch.Generator | None = None
        # When a dict, forward() stores its input ("activation", p == 0) or its scaled mask
        # ("mask", p > 0) there: the FUR estimator's control variate reads them.
        self.trace: dict[str, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            if self.trace is not None:
                self.trace["activation"] = x
            return x
        keep = 1.0 - self.p
        # (N, C, 1, 1): one Bernoulli draw per sample and channel, broadcast over space.
        shape = x.shape[:2] + (1,) * (x.dim() - 2)
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep, generator=self.generator)
        mask.div_(keep)
        if self.trace is not None:
            self.trace["mask"] = mask
        return x * mask

    def extra_repr(self) -> str:
        return f"key={self.key!r}, p={self.p}"


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

    def probes(self) -> dict[str, ChannelDrop]:
        """The probe of every width key, in forward order."""
        return {m.key: m for m in self.modules() if isinstance(m, ChannelDrop)}

    def probe_segments(self) -> dict[str, int]:
        """For every width key, the index of the segment that holds its probe."""
        return {m.key: i for i, seg in enumerate(self.segments) for m in seg.modules() if isinstance(m, ChannelDrop)}


def init_weights(model: nn.Module) -> None:
    """He initialisation for convs (fan-out, as in torchvision's ResNets), unit BN, small linear."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """A bias-free conv with 'same' padding followed by BatchNorm."""
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


def pad_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``x`` (N, C, H, W) zero-padded to ``channels`` channels (unchanged if it has as many)."""
    return F.pad(x, (0, 0, 0, 0, 0, channels - x.shape[1])) if channels > x.shape[1] else x
