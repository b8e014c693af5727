"""A small synthetic data set for tests and demos that need no files: :func:`synthetic`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from netadjust.data.augment import Augment
from netadjust.data.memory import TensorSource
from netadjust.data.seeds import derive_seed


def synthetic(num_classes: int = 4, in_channels: int = 1, input_size: int = 8,
              n_train: int = 256, n_heldout: int = 64, n_test: int = 64,
              seed: int = 0) -> TensorSource:
    """A small random but learnable data set for tests: each class is a smooth random pattern
    (constant on 2x2 blocks, so a 1-pixel shift barely changes it) plus per-pixel noise.
    Augmentation: crop padding 1, no flip."""
    g = torch.Generator().manual_seed(derive_seed(seed, 0x5EED))
    coarse = max(input_size // 2, 1)
    protos = torch.rand(num_classes, in_channels, coarse, coarse, generator=g) * 200 + 28
    protos = F.interpolate(protos, size=(input_size, input_size), mode="nearest")

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes  # balanced classes
        y = y[torch.randperm(n, generator=g)]
        noise = torch.randn(n, in_channels, input_size, input_size, generator=g) * 25
        x = (protos[y] + noise).round().clamp(0, 255).to(torch.uint8)
        return x, y.to(torch.int64)

    splits = {"train": make(n_train), "heldout": make(n_heldout), "test": make(n_test)}
    return TensorSource("synthetic", splits, num_classes=num_classes,
                        augment=Augment(crop_padding=1, flip=False))
