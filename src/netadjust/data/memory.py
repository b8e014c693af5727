"""In-memory data sets, the batch loader and batch-wise augmentation.

A split lives as one uint8 ``(N, C, H, W)`` tensor (pixels 0..255) and an int64 label vector. It
is copied to a device once and cached there; a batch is an ``index_select`` of a permutation, and
augmentation (random crop with zero padding + horizontal flip) is a single ``gather`` over the
whole batch, followed by normalisation with the training split's per-channel mean/std. Nothing
loops over samples in Python, so on a GPU the loader costs a few kernel launches per batch.

Sharding for DDP: the (shuffled) order is cut into *global* batches of ``batch_size *
world_size``; rank ``r`` takes every ``world_size``-th sample of each, starting at ``r``. All
ranks thus see the same number of batches and together cover each global batch exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from netadjust.errors import DataError, closest

log = logging.getLogger(__name__)

SPLITS = ("train", "heldout", "test")
# "full" = train + held-out: the whole official training set, for a final retraining (the
# official code retrains the searched network on all 50k CIFAR training images).
FULL = "full"


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: random crop after zero padding, random horizontal flip."""

    crop_padding: int = 0  # pixels of zero padding on each side before the random crop; 0 = off
    flip: bool = False  # flip each image left-right with probability 1/2

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip


def derive_seed(*parts: int) -> int:
    """A 63-bit seed for ``torch.Generator`` mixed from several integers (seed, epoch, stream)."""
    ss = np.random.SeedSequence([int(p) % 2**63 for p in parts])
    return int(ss.generate_state(1, dtype=np.uint64)[0]) & (2**63 - 1)


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


def carve_heldout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices into (train, heldout), both sorted, deterministic in ``seed``.

    The held-out part has ``round(fraction * N)`` samples spread evenly over the classes (it is
    used to rank layers by a loss difference, so it should not be dominated by a few classes).
    """
    n = len(labels)
    if not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise DataError(f"heldout_fraction={fraction!r}, expected a number in [0, 1) (the share "
                        f"of the training set kept for FUR estimation, e.g. 0.1)")
    k = int(round(fraction * n))
    if n - k < 1:
        raise DataError(f"heldout_fraction={fraction} leaves no training images out of {n}; "
                        f"lower --heldout-fraction or use a larger data set")
    if k == 0:
        return np.arange(n), np.arange(0)
    rng = np.random.default_rng(derive_seed(seed, 0x4E1D))
    perm = rng.permutation(n)
    # Group the random order by class, then take k evenly spaced positions: every class gets
    # its proportional share (within one sample) and the total is exactly k.
    grouped = perm[np.argsort(labels[perm], kind="stable")]
    held = np.sort(grouped[((np.arange(k) + 0.5) * n / k).astype(np.int64)])
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask), held


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


def _canonical(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class BatchSource:
    """Common base of the data sets: splits, sharding, shuffling, augmentation, normalisation.

    Subclasses provide ``size``, ``labels`` and ``_images`` (uint8 images for index batches).
    Attributes: ``name``, ``num_classes``, ``in_channels``, ``input_size`` (H == W, pixels),
    ``classes`` (class names), ``mean`` / ``std`` (per channel, [0, 1] units, from the training
    split), ``augment`` (used when ``train=True``).
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
        """Number of images in ``split`` ("train", "heldout" or "test")."""
        raise NotImplementedError

    def labels(self, split: str) -> torch.Tensor:
        """All labels of ``split`` in their fixed order, int64 on the CPU."""
        raise NotImplementedError

    def _images(self, split: str, order: torch.Tensor, index_batches: Sequence[slice],
                rank: int, world_size: int, device: torch.device
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 images and int64 labels on ``device`` for ``order[s][rank::world_size]``."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def _check_split(self, split: str) -> None:
        if split not in SPLITS + (FULL,):
            raise DataError(f"unknown split {split!r}{closest(split, SPLITS + (FULL,))}; expected one of "
                            f"{', '.join(SPLITS + (FULL,))}")

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
        return self._iterate(split, n, nb, batch_size, train, _canonical(device), epoch, seed,
                             rank, world_size)

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


class TensorSource(BatchSource):
    """A data set held entirely in memory as uint8 tensors, cached once per device."""

    def __init__(self, name: str, splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]], *,
                 num_classes: int, augment: Augment = Augment(),
                 classes: Sequence[str] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        missing = [s for s in SPLITS if s not in splits]
        if missing:
            raise ValueError(f"TensorSource needs splits {SPLITS}, missing {missing}")
        shape = None
        for split, (x, y) in splits.items():
            if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[2] != x.shape[3]:
                raise ValueError(f"{split} images: {x.dtype} {tuple(x.shape)}, expected uint8 "
                                 f"(N, C, S, S)")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{split} labels: {y.dtype} {tuple(y.shape)}, expected int64 "
                                 f"({x.shape[0]},)")
            if shape is not None and x.shape[1:] != shape and x.shape[0] > 0:
                raise ValueError(f"{split} images are {tuple(x.shape[1:])}, others {shape}")
            shape = shape or x.shape[1:]
        self.name = name
        self.num_classes = int(num_classes)
        self.in_channels, self.input_size = int(shape[0]), int(shape[1])
        self.classes = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
        self.augment = augment
        self._cpu = {s: (splits[s][0].contiguous(), splits[s][1].contiguous()) for s in SPLITS}
        self._cpu[FULL] = tuple(torch.cat([self._cpu["train"][i], self._cpu["heldout"][i]]) for i in (0, 1))
        self._cache: dict[torch.device, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
        if mean is None or std is None:
            mean, std = channel_stats(self._cpu["train"][0])
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def size(self, split: str) -> int:
        self._check_split(split)
        return int(self._cpu[split][1].shape[0])

    def labels(self, split: str) -> torch.Tensor:
        self._check_split(split)
        return self._cpu[split][1]

    def images(self, split: str) -> torch.Tensor:
        """All raw uint8 images of ``split`` in their fixed order, on the CPU."""
        self._check_split(split)
        return self._cpu[split][0]

    def on(self, device: torch.device | str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The splits on ``device``, copied there on first use and cached."""
        device = _canonical(device)
        if device not in self._cache:
            if device.type == "cpu":
                self._cache[device] = self._cpu
            else:
                nbytes = sum(x.numel() for x, _ in self._cpu.values())
                log.info("copying %s to %s (%.1f MB)", self.name, device, nbytes / 1e6)
                self._cache[device] = {s: (x.to(device), y.to(device))
                                       for s, (x, y) in self._cpu.items()}
        return self._cache[device]

    def _images(self, split, order, index_batches, rank, world_size, device):
        x_all, y_all = self.on(device)[split]
        order = order.to(device)
        for s in index_batches:
            idx = order[s][rank::world_size]
            yield x_all.index_select(0, idx), y_all.index_select(0, idx)


def build_source(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray, *, num_classes: int, augment: Augment,
                 classes: Sequence[str] | None = None, heldout_fraction: float = 0.1,
                 seed: int = 0, train_subset: int | None = None) -> TensorSource:
    """A :class:`TensorSource` from official train/test arrays: carves the held-out split from
    the training set (given ``seed``) and keeps the first ``train_subset`` training images."""
    train_idx, held_idx = carve_heldout(y_train, heldout_fraction, seed)
    if train_subset is not None:
        if int(train_subset) < 1:
            raise DataError(f"train_subset={train_subset}, expected a positive number of "
                            f"training images (or none for all {len(train_idx)})")
        train_idx = train_idx[:int(train_subset)]
    xt, yt = torch.from_numpy(np.ascontiguousarray(x_train)), torch.from_numpy(y_train)
    splits = {
        "train": (xt[torch.from_numpy(train_idx)], yt[torch.from_numpy(train_idx)]),
        "heldout": (xt[torch.from_numpy(held_idx)], yt[torch.from_numpy(held_idx)]),
        "test": (torch.from_numpy(np.ascontiguousarray(x_test)),
                 torch.from_numpy(np.asarray(y_test, dtype=np.int64))),
    }
    source = TensorSource(name, splits, num_classes=num_classes, augment=augment, classes=classes)
    log.info("%r", source)
    return source


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
