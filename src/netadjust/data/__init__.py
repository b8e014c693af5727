"""Data sets for training and FUR estimation: one loader, three splits.

``load_dataset(name)`` returns a :class:`DataSource` with splits ``train``, ``heldout`` (carved
from the official training set, used to estimate FUR; never the test set) and ``test``. Batches
are float32 normalised NCHW tensors and int64 labels on the requested device.

Data sets: ``digits`` (scikit-learn's 8x8 digits, always available), ``fashion-mnist`` (gzip IDX
files, Debian package ``dataset-fashion-mnist``), ``cifar10`` / ``cifar100`` ("python version"
pickles, extracted or as ``.tar.gz``) and ``imagefolder`` (``DIR/train/<class>/`` +
``DIR/val/<class>/``, needs Pillow).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from netadjust.errors import DataError, closest
from netadjust.data.formats import FASHION_MNIST_CLASSES, read_cifar, read_fashion_mnist
from netadjust.data.memory import (SPLITS, Augment, BatchSource, TensorSource, build_source,
                                   carve_heldout, synthetic)

__all__ = ["DATASETS", "SPLITS", "DataSource", "Augment", "BatchSource", "TensorSource",
           "load_dataset", "synthetic", "carve_heldout"]

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder")

DIGITS_TEST_FRACTION = 0.2  # digits has no official test split; this one is fixed (seed 0)


@runtime_checkable
class DataSource(Protocol):
    """What the trainer and the FUR estimator need from a data set."""

    name: str
    num_classes: int
    in_channels: int
    input_size: int  # H == W, pixels

    def size(self, split: str) -> int:
        """Number of images in ``split`` ("train", "heldout" or "test")."""
        ...

    def batches(self, split: str, *, batch_size: int, train: bool,
                device: torch.device | str = "cpu", epoch: int = 0, seed: int = 0,
                rank: int = 0, world_size: int = 1
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(float32 normalised NCHW images, int64 labels) on ``device``, per-rank batches."""
        ...

    def num_batches(self, split: str, *, batch_size: int, train: bool,
                    world_size: int = 1) -> int:
        """Number of batches :meth:`batches` yields on every rank."""
        ...


def _load_digits(heldout_fraction: float, seed: int, train_subset: int | None) -> TensorSource:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # Pixels are 0..16; scale to 0..255 so every set shares the uint8 pipeline (lossless: the
    # 17 levels stay distinct).
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    # A fixed stratified test split, independent of `seed`, so test accuracies of runs with
    # different seeds are comparable.
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=DIGITS_TEST_FRACTION,
                                           stratify=y, random_state=0)
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    # Digits are not mirror-symmetric, so no flip; at 8x8 a 1-pixel shift is already large.
    return build_source("digits", x[idx_train], y[idx_train], x[idx_test], y[idx_test],
                        num_classes=10, augment=Augment(crop_padding=1, flip=False),
                        classes=[str(i) for i in range(10)], heldout_fraction=heldout_fraction,
                        seed=seed, train_subset=train_subset)


def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None,
                 heldout_fraction: float = 0.1, seed: int = 0,
                 train_subset: int | None = None, input_size: int | None = None) -> DataSource:
    """Load data set ``name`` (one of :data:`DATASETS`) with a held-out split.

    ``data_dir``: where the files are (fashion-mnist defaults to the Debian package's directory;
    cifar and imagefolder need it). ``heldout_fraction``: share of the official training set
    kept for FUR estimation, carved deterministically from ``seed``. ``train_subset``: keep only
    the first N training images (quick runs). ``input_size``: image side in pixels, imagefolder
    only (default 224).
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}{closest(name, DATASETS)}; choose one of "
                        f"{', '.join(DATASETS)}")
    if input_size is not None and name != "imagefolder":
        raise DataError(f"input_size={input_size} given for {name}, whose image size is fixed; "
                        f"input_size applies to imagefolder only, drop it")
    if name == "digits":
        return _load_digits(heldout_fraction, seed, train_subset)
    if name == "fashion-mnist":
        x_tr, y_tr, x_te, y_te = read_fashion_mnist(data_dir)
        # Clothes are left-right symmetric, so flips are label-preserving; padding 2 on 28 px is
        # the same ~7% shift as CIFAR's 4 on 32 while keeping most of the small garments in view.
        return build_source("fashion-mnist", x_tr, y_tr, x_te, y_te, num_classes=10,
                            augment=Augment(crop_padding=2, flip=True),
                            classes=list(FASHION_MNIST_CLASSES), heldout_fraction=heldout_fraction,
                            seed=seed, train_subset=train_subset)
    if name in ("cifar10", "cifar100"):
        if data_dir is None:
            folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
            raise DataError(f"{name} needs its files: pass --data-dir DIR with {folder}/ or its "
                            f".tar.gz (the CIFAR 'python version'); nothing is downloaded")
        x_tr, y_tr, x_te, y_te, classes = read_cifar(name, data_dir)
        # The standard CIFAR augmentation (He et al. 2016, and the official code): pad 4, crop
        # 32, flip.
        return build_source(name, x_tr, y_tr, x_te, y_te, num_classes=len(classes),
                            augment=Augment(crop_padding=4, flip=True), classes=classes,
                            heldout_fraction=heldout_fraction, seed=seed,
                            train_subset=train_subset)
    from netadjust.data.imagefolder import DEFAULT_INPUT_SIZE, load_imagefolder

    if data_dir is None:
        raise DataError("imagefolder needs --data-dir DIR holding DIR/train/<class>/*.jpg and "
                        "DIR/val/<class>/*.jpg")
    return load_imagefolder(data_dir, input_size=input_size or DEFAULT_INPUT_SIZE,
                            heldout_fraction=heldout_fraction, seed=seed,
                            train_subset=train_subset)
