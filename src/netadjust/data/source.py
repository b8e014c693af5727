"""The loader every data set shares: :class:`DataSource` turns a data set's images into batches.

A subclass says where the uint8 images of a split come from (memory, files); the base class does
the rest the same way for all: split names, shuffling, sharding, augmentation and normalisation.

Shuffling: the order of an epoch is a permutation drawn from (seed, epoch), identical on every
rank. Sharding for DDP: the order is cut into *global* batches of ``batch_size * world_size``;
rank ``r`` takes every ``world_size``-th sample of each, starting at ``r``. All ranks thus see the
same number of batches (:func:`count_batches`) and together cover each global batch exactly once.
Normalisation: with the training split's per-channel mean/std (:func:`channel_stats`), fused into
one multiply-add on the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from netadjust.data.augment import Augment, crop_flip
from netadjust.data.seeds import derive_seed
from netadjust.data.splits import FULL, SPLITS
from netadjust.errors import DataError, closest

_ALL_SPLITS = SPLITS + (FULL,)


def count_batches(n: int, batch_size: int, train: bool, world_size: int) -> int:
    """Number of batches per rank for a split of ``n`` samples (same on every rank)."""
    g = batch_size * world_size
    if train:
        return n // g  # drop_last
    full, rem = divmod(n, g)
    if rem == 0:
        return full
    # A tail smaller than world_size is folded into the previous global batch, so that no rank
    # gets an empty batch (those ranks' last batch then has batch_size + 1 samples).
    return full if (rem < world_size and full > 0) else full + 1


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images ``(N, C, H, W)``, in [0, 1] pixel units."""
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for chunk in x.split(2048):  # float64 copy of a chunk only, not of the whole split
        f = chunk.to(torch.float64).div_(255.0)
        total += f.sum(dim=(0, 2, 3))
        total_sq += f.square().sum(dim=(0, 2, 3))
    count = max(x.shape[0] * x.shape[2] * x.shape[3], 1)
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    # A constant channel would divide by ~0; one grey level is the smallest meaningful spread.
    std = std.clamp_min(1 / 255)
    return tuple(mean.tolist()), tuple(std.tolist())


def canonical_device(device: torch.device | str) -> torch.device:
    """``device`` as a torch.device, with the current CUDA index filled in (a cache key)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class DataSource:
    """A data set as the trainer and the FUR estimator see it: splits of batches on a device.

    A subclass sets the attributes and provides three methods; batching, shuffling, sharding,
    augmentation and normalisation come from here.

    Attributes to set: ``name``, ``num_classes``, ``in_channels``, ``input_size`` (H == W,
    pixels), ``classes`` (class names), ``mean`` / ``std`` (per channel, [0, 1] units, from the
    training split, e.g. by :func:`channel_stats`), ``augment`` (used when ``train=True``).

    Methods to provide: :meth:`size` and :meth:`labels` of a split, and :meth:`_images`, which
    yields the uint8 images and labels of given index batches on a device. Splits are
    :data:`SPLITS` plus :data:`FULL` (train + held-out); call :meth:`_check_split` first.
    """

    name: str
    num_classes: int
    in_channels: int
    input_size: int
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment

    # -- to implement -------------------------------------------------------------------------
    def size(self, split: str) -> int:
        """Number of images in ``split`` ("train", "heldout", "test" or "full")."""
        raise NotImplementedError

    def labels(self, split: str) -> torch.Tensor:
        """All labels of ``split`` in their fixed order, int64 on the CPU."""
        raise NotImplementedError

    def _images(self, split: str, order: torch.Tensor, index_batches: Sequence[slice],
                rank: int, world_size: int, device: torch.device
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 images and int64 labels on ``device`` for ``order[s][rank::world_size]``, one
        pair per slice ``s`` of ``index_batches``."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def to_device(self, device: torch.device | str) -> None:
        """Put whatever the batches of every split need on ``device`` now (a set held in
        memory copies itself there once): before trainings on several CUDA streams read it."""

    def _check_split(self, split: str) -> None:
        if split not in _ALL_SPLITS:
            raise DataError(f"unknown split {split!r}{closest(split, _ALL_SPLITS)}; expected one "
                            f"of {', '.join(_ALL_SPLITS)}")

    def num_batches(self, split: str, *, batch_size: int, train: bool,
                    world_size: int = 1) -> int:
        """Batches per rank that :meth:`batches` yields with the same arguments."""
        self._check_split(split)
        if batch_size < 1 or world_size < 1:
            raise DataError(f"batch_size={batch_size}, world_size={world_size}; both must be >= 1")
        return count_batches(self.size(split), batch_size, train, world_size)

    def batches(self, split: str, *, batch_size: int, train: bool,
                device: torch.device | str = "cpu", epoch: int = 0, seed: int = 0,
                rank: int = 0, world_size: int = 1
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels)``: float32 normalised NCHW and int64, both on ``device``.

        ``train=True``: order shuffled by a permutation drawn from (seed, epoch) (identical on
        all ranks), augmentation on, incomplete last batch dropped. ``train=False``: fixed order,
        no augmentation, last partial batch kept. ``batch_size`` is per rank; each rank gets a
        disjoint shard and all ranks get :meth:`num_batches` batches.
        """
        nb = self.num_batches(split, batch_size=batch_size, train=train, world_size=world_size)
        if not 0 <= rank < world_size:
            raise DataError(f"rank={rank} with world_size={world_size}; expected 0 <= rank < "
                            f"world_size")
        n = self.size(split)
        if train and nb == 0 and n > 0:
            raise DataError(f"split {split!r} of {self.name} has {n} images, fewer than one "
                            f"batch of {batch_size} x {world_size} ranks; lower --batch-size")
        return self._iterate(split, n, nb, batch_size, train, canonical_device(device), epoch,
                             seed, rank, world_size)

    def _iterate(self, split: str, n: int, nb: int, batch_size: int, train: bool,
                 device: torch.device, epoch: int, seed: int, rank: int, world_size: int
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = batch_size * world_size
        if train:
            gen = torch.Generator().manual_seed(derive_seed(seed, epoch, 0))
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        slices = [slice(i * g, (i + 1) * g) for i in range(nb)]
        if slices and not train:
            slices[-1] = slice(slices[-1].start, n)
        aug = self.augment if train else Augment()
        if aug.active:
            # Drawn on the CPU for the whole epoch at once: same numbers on every device, and
            # one host-to-device copy per epoch instead of one per batch.
            gen = torch.Generator().manual_seed(derive_seed(seed, epoch, rank, 1))
            offsets = torch.randint(0, 2 * aug.crop_padding + 1, (nb, batch_size, 2),
                                    generator=gen).to(device)
            flips = torch.rand(nb, batch_size, generator=gen) < 0.5
            if not aug.flip:
                flips.zero_()
            flips = flips.to(device)
        scale, shift = self._norm(device)
        for i, (x, y) in enumerate(self._images(split, order, slices, rank, world_size, device)):
            if aug.active:
                x = crop_flip(x, offsets[i, :len(x)], flips[i, :len(x)], aug.crop_padding)
            yield torch.addcmul(shift, x.to(torch.float32), scale), y

    def _norm(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) with normalised = uint8 * scale + shift, shapes (1, C, 1, 1)."""
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (1.0 / (255.0 * std)).to(device), (-mean / std).to(device)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={self.size(s)}" for s in SPLITS)
        return (f"{type(self).__name__}({self.name!r}, {self.in_channels}x{self.input_size}x"
                f"{self.input_size}, {self.num_classes} classes, {sizes})")
