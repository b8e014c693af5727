"""Training-time augmentation of whole batches: random crop after zero padding, horizontal flip.

:class:`Augment` says what a data set uses; :func:`crop_flip` applies it to a batch in a single
``gather`` (no Python loop over samples), on whatever device the batch is on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: random crop after zero padding, random horizontal flip."""

    crop_padding: int = 0  # pixels of zero padding on each side before the random crop; 0 = off
    flip: bool = False  # flip each image left-right with probability 1/2

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip


def crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
              padding: int) -> torch.Tensor:
    """Random crop + horizontal flip of a whole batch in one gather.

    x: (B, C, H, W) any dtype; offsets: (B, 2) int64 in ``[0, 2 * padding]`` (row, column of the
    crop window in the padded image); flips: (B,) bool. Returns a new (B, C, H, W) tensor.
    """
    b, c, h, w = x.shape
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))  # zeros = black border
    hp, wp = x.shape[-2:]
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    rows = offsets[:, :1] + ar_h  # (B, H)
    # Flipping the crop window is reading its columns right to left.
    cols = offsets[:, 1:] + torch.where(flips[:, None], (w - 1) - ar_w, ar_w)  # (B, W)
    flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w)
    return x.reshape(b, c, hp * wp).gather(2, flat.expand(b, c, h * w)).view(b, c, h, w)
