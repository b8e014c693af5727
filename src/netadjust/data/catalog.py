"""The data sets by name: the :data:`DATASETS` table, :func:`load_dataset` and :func:`dataset_help`.

Each entry of the table says how to load a data set, what it is and where its files come from,
and whether it needs ``--data-dir``; :func:`load_dataset` checks the arguments against the entry
and calls its loader. To add a data set, write a loader and add one entry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np

from netadjust.data.augment import Augment
from netadjust.data.formats import FASHION_MNIST_CLASSES, read_cifar, read_fashion_mnist
from netadjust.data.imagefolder import DEFAULT_INPUT_SIZE, load_imagefolder
from netadjust.data.memory import TensorSource, build_source
from netadjust.data.source import DataSource
from netadjust.errors import DataError, closest

DIGITS_TEST_FRACTION = 0.2  # digits has no official test split; this one is fixed (seed 0)


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of :data:`DATASETS`.

    ``load(data_dir, *, heldout_fraction, seed, train_subset[, input_size])`` returns the
    :class:`DataSource` (``input_size`` is passed only where ``takes_input_size``). ``help``: one
    line, what the set is and where its files come from. ``needs_data_dir``: no default
    location, so ``--data-dir`` is required; ``no_data_dir`` is then the error shown without it.
    """

    load: Callable[..., DataSource]
    help: str
    needs_data_dir: bool = False
    no_data_dir: str = ""
    takes_input_size: bool = False

    def __post_init__(self) -> None:
        if self.needs_data_dir and not self.no_data_dir:
            raise ValueError("a data set that needs --data-dir needs the message saying so")


# -- loaders ----------------------------------------------------------------------------------
def _load_digits(data_dir: str | os.PathLike | None, *, heldout_fraction: float, seed: int,
                 train_subset: int | None) -> TensorSource:
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


def _load_fashion_mnist(data_dir: str | os.PathLike | None, *, heldout_fraction: float,
                        seed: int, train_subset: int | None) -> TensorSource:
    x_tr, y_tr, x_te, y_te = read_fashion_mnist(data_dir)
    # Clothes are left-right symmetric, so flips are label-preserving; padding 2 on 28 px is the
    # same ~7% shift as CIFAR's 4 on 32 while keeping most of the small garments in view.
    return build_source("fashion-mnist", x_tr, y_tr, x_te, y_te, num_classes=10,
                        augment=Augment(crop_padding=2, flip=True),
                        classes=list(FASHION_MNIST_CLASSES), heldout_fraction=heldout_fraction,
                        seed=seed, train_subset=train_subset)


def _load_cifar(variant: str, data_dir: str | os.PathLike, *, heldout_fraction: float,
                seed: int, train_subset: int | None) -> TensorSource:
    x_tr, y_tr, x_te, y_te, classes = read_cifar(variant, data_dir)
    # The standard CIFAR augmentation (He et al. 2016, and the official code): pad 4, crop 32,
    # flip.
    return build_source(variant, x_tr, y_tr, x_te, y_te, num_classes=len(classes),
                        augment=Augment(crop_padding=4, flip=True), classes=classes,
                        heldout_fraction=heldout_fraction, seed=seed, train_subset=train_subset)


def _load_imagefolder(data_dir: str | os.PathLike, *, heldout_fraction: float, seed: int,
                      train_subset: int | None, input_size: int | None) -> DataSource:
    return load_imagefolder(data_dir, input_size=input_size or DEFAULT_INPUT_SIZE,
                            heldout_fraction=heldout_fraction, seed=seed,
                            train_subset=train_subset)


def _no_cifar_dir(variant: str, folder: str) -> str:
    return (f"{variant} needs its files: pass --data-dir DIR with {folder}/ or its .tar.gz (the "
            f"CIFAR 'python version'); nothing is downloaded")


# -- the table --------------------------------------------------------------------------------
DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        _load_digits, "UCI handwritten digits 8x8, shipped with scikit-learn"),
    "fashion-mnist": DatasetSpec(
        _load_fashion_mnist,
        "Fashion-MNIST 28x28: apt-get install dataset-fashion-mnist or --data-dir"),
    "cifar10": DatasetSpec(
        partial(_load_cifar, "cifar10"),
        "CIFAR-10 32x32: --data-dir with cifar-10-batches-py/ or cifar-10-python.tar.gz",
        needs_data_dir=True, no_data_dir=_no_cifar_dir("cifar10", "cifar-10-batches-py")),
    "cifar100": DatasetSpec(
        partial(_load_cifar, "cifar100"),
        "CIFAR-100 32x32: --data-dir with cifar-100-python/ or cifar-100-python.tar.gz",
        needs_data_dir=True, no_data_dir=_no_cifar_dir("cifar100", "cifar-100-python")),
    "imagefolder": DatasetSpec(
        _load_imagefolder,
        f"your own images, {DEFAULT_INPUT_SIZE}x{DEFAULT_INPUT_SIZE} by default: --data-dir DIR "
        f"with DIR/train/<class>/ and DIR/val/<class>/ (needs Pillow)",
        needs_data_dir=True,
        no_data_dir="imagefolder needs --data-dir DIR holding DIR/train/<class>/*.jpg and "
                    "DIR/val/<class>/*.jpg",
        takes_input_size=True),
}


def dataset_help(details: bool = False) -> str:
    """The data set names for a help text: ``"digits, fashion-mnist, ... or imagefolder"``;
    with ``details``, one ``name: help`` line per data set instead (``netadjust datasets``)."""
    if details:
        return "\n".join(f"{name}: {spec.help}" for name, spec in DATASETS.items())
    names = list(DATASETS)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None,
                 heldout_fraction: float = 0.1, seed: int = 0,
                 train_subset: int | None = None, input_size: int | None = None) -> DataSource:
    """Load data set ``name`` (a key of :data:`DATASETS`) with a held-out split.

    ``data_dir``: where the files are (fashion-mnist defaults to the Debian package's directory;
    cifar and imagefolder need it). ``heldout_fraction``: share of the official training set
    kept for FUR estimation, carved deterministically from ``seed``. ``train_subset``: keep only
    the first N training images (quick runs). ``input_size``: image side in pixels, imagefolder
    only (default 224).
    """
    spec = DATASETS.get(name)
    if spec is None:
        raise DataError(f"unknown data set {name!r}{closest(name, DATASETS)}; choose one of "
                        f"{', '.join(DATASETS)}")
    if input_size is not None and not spec.takes_input_size:
        sized = ", ".join(n for n, s in DATASETS.items() if s.takes_input_size)
        raise DataError(f"input_size={input_size} given for {name}, whose image size is fixed; "
                        f"input_size applies to {sized} only, drop it")
    if spec.needs_data_dir and data_dir is None:
        raise DataError(spec.no_data_dir)
    return _load(name, None if data_dir is None else str(data_dir), heldout_fraction, seed, train_subset, input_size)


@lru_cache(maxsize=8)
def _load(name: str, data_dir: str | None, heldout_fraction: float, seed: int, train_subset: int | None,
          input_size: int | None) -> DataSource:
    """The loading itself, remembered per arguments: several searches or trainings in one process
    (``search_many``, the benchmarks) share one copy of a data set, in memory and on a device."""
    spec = DATASETS[name]
    kwargs = {"heldout_fraction": heldout_fraction, "seed": seed, "train_subset": train_subset}
    if spec.takes_input_size:
        kwargs["input_size"] = input_size
    return spec.load(data_dir, **kwargs)
