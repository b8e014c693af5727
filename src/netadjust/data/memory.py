"""Data sets held in memory: :class:`TensorSource` and :func:`build_source`.

A split lives as one uint8 ``(N, C, H, W)`` tensor (pixels 0..255) and an int64 label vector. It
is copied to a device once and cached there; a batch is an ``index_select`` of the epoch's order,
so together with the batch-wise augmentation and normalisation of :class:`DataSource` nothing
loops over samples in Python, and on a GPU the loader costs a few kernel launches per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from netadjust.data.augment import Augment
from netadjust.data.source import DataSource, canonical_device, channel_stats
from netadjust.data.splits import FULL, SPLITS, carve_splits

log = logging.getLogger(__name__)


class TensorSource(DataSource):
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
        self.classes = (list(classes) if classes is not None
                        else [str(i) for i in range(num_classes)])
        self.augment = augment
        self._cpu = {s: (splits[s][0].contiguous(), splits[s][1].contiguous()) for s in SPLITS}
        self._cpu[FULL] = tuple(torch.cat([self._cpu["train"][i], self._cpu["heldout"][i]])
                                for i in (0, 1))
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

    def to_device(self, device: torch.device | str) -> None:
        self.on(device)

    def on(self, device: torch.device | str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The splits on ``device``, copied there on first use and cached."""
        device = canonical_device(device)
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
    the training set (given ``seed``) and keeps the first ``train_subset`` training images
    (:func:`~netadjust.data.splits.carve_splits`)."""
    train_idx, held_idx = carve_splits(y_train, heldout_fraction=heldout_fraction, seed=seed,
                                       train_subset=train_subset)
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
