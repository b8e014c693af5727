"""ImageNet-style folders: ``ROOT/train/<class>/*.jpg|png`` and ``ROOT/val/<class>/...``.

Images are decoded with Pillow (an optional dependency), converted to RGB, resized so the shorter
side is ``input_size`` and centre-cropped to ``input_size`` x ``input_size``. Training-time
augmentation is then the same batch-wise random crop (padding ``input_size // 8``, the CIFAR
ratio) and flip as for the other sets.

Small sets are decoded once into memory (a :class:`~netadjust.data.memory.TensorSource`); sets
whose decoded size exceeds ``max_memory_bytes`` are streamed (:class:`StreamedImageFolder`, a
:class:`~netadjust.data.source.DataSource`): each batch is decoded by a thread pool (Pillow
releases the GIL while decoding) while the previous one is used.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from netadjust.data.augment import Augment
from netadjust.data.memory import TensorSource
from netadjust.data.source import DataSource, channel_stats
from netadjust.data.splits import FULL, SPLITS, carve_splits
from netadjust.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff",
                              ".webp", ".gif"})
DEFAULT_INPUT_SIZE = 224
STATS_SAMPLE = 512  # training images used for mean/std when streaming


def _pil():
    """The ``PIL.Image`` module, or a DataError saying how to install Pillow."""
    try:
        from PIL import Image
    except ImportError as e:
        raise DataError("the imagefolder data set needs Pillow to decode images and it is not "
                        "installed; run pip install 'netadjust[imagefolder]'") from e
    return Image


def decode_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode one image file to uint8 ``(3, size, size)``: RGB, shorter side resized to
    ``size``, centre crop."""
    Image = _pil()
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {path}: {type(e).__name__}: {e}; remove or "
                        f"replace the file") from e


def decode_many(paths: Sequence[Path], size: int, pool: ThreadPoolExecutor) -> np.ndarray:
    """Decode ``paths`` in parallel to one uint8 ``(N, 3, size, size)`` array."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    for i, arr in enumerate(pool.map(lambda p: decode_image(p, size), paths)):
        out[i] = arr
    return out


def _list_images(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def scan_imagefolder(root: str | os.PathLike
                     ) -> tuple[list[str], tuple[list[Path], np.ndarray], tuple[list[Path], np.ndarray]]:
    """Class names (sorted subdirectories of ``train``) and the (paths, labels) of the train and
    val (or test) folders."""
    root = Path(root)
    layout = f"expected {root}/train/<class>/*.jpg|png and {root}/val/<class>/..."
    if not (root / "train").is_dir():
        raise DataError(f"imagefolder: {root / 'train'} is not a directory; {layout}; pass "
                        f"--data-dir with such a tree")
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if test_dir is None:
        raise DataError(f"imagefolder: {root} has no val/ (or test/) directory; {layout}")
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if len(classes) < 2:
        raise DataError(f"imagefolder: {root / 'train'} has {len(classes)} class directories, "
                        f"expected at least 2; {layout}")
    index = {c: i for i, c in enumerate(classes)}

    def collect(top: Path, require_all: bool) -> tuple[list[Path], np.ndarray]:
        paths: list[Path] = []
        labels: list[int] = []
        for d in sorted(p for p in top.iterdir() if p.is_dir()):
            if d.name not in index:
                raise DataError(f"imagefolder: class {d.name!r} in {top} is not among the "
                                f"{len(classes)} classes of {root / 'train'}; rename or remove it")
            files = _list_images(d)
            if not files and require_all:
                raise DataError(f"imagefolder: {d} holds no images (extensions "
                                f"{', '.join(sorted(IMAGE_EXTENSIONS))}); add some or remove it")
            paths += files
            labels += [index[d.name]] * len(files)
        return paths, np.asarray(labels, dtype=np.int64)

    train, test = collect(root / "train", True), collect(test_dir, False)
    if not test[0]:
        raise DataError(f"imagefolder: {test_dir} holds no images; {layout}")
    return classes, train, test


class StreamedImageFolder(DataSource):
    """An image-folder data set decoded batch by batch (for sets too large for memory)."""

    def __init__(self, name: str, items: dict[str, tuple[list[Path], np.ndarray]], *,
                 classes: Sequence[str], input_size: int, augment: Augment,
                 workers: int | None = None) -> None:
        self.name = name
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.in_channels = 3
        self.input_size = int(input_size)
        self.augment = augment
        self.workers = workers or min(8, os.cpu_count() or 1)
        self._paths = {s: items[s][0] for s in SPLITS}
        self._labels = {s: torch.from_numpy(items[s][1]) for s in SPLITS}
        self._paths[FULL] = self._paths["train"] + self._paths["heldout"]
        self._labels[FULL] = torch.cat([self._labels["train"], self._labels["heldout"]])
        train_paths = self._paths["train"]
        pick = np.linspace(0, len(train_paths) - 1, min(STATS_SAMPLE, len(train_paths)))
        with ThreadPoolExecutor(self.workers) as pool:
            sample = decode_many([train_paths[int(i)] for i in pick], self.input_size, pool)
        self.mean, self.std = channel_stats(torch.from_numpy(sample))
        log.info("imagefolder streamed: mean/std from %d training images", len(pick))

    def size(self, split: str) -> int:
        self._check_split(split)
        return len(self._paths[split])

    def labels(self, split: str) -> torch.Tensor:
        self._check_split(split)
        return self._labels[split]

    def _images(self, split, order, index_batches, rank, world_size, device
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        paths, labels, s = self._paths[split], self._labels[split], self.input_size
        pool = ThreadPoolExecutor(self.workers)

        def submit(sl: slice) -> tuple[torch.Tensor, list[Future]]:
            idx = order[sl][rank::world_size]
            return idx, [pool.submit(decode_image, paths[j], s) for j in idx.tolist()]

        try:
            pending = deque(submit(sl) for sl in index_batches[:2])  # decode one batch ahead
            nxt = len(pending)
            while pending:
                idx, futures = pending.popleft()
                if nxt < len(index_batches):
                    pending.append(submit(index_batches[nxt]))
                    nxt += 1
                x = torch.empty((len(futures), 3, s, s), dtype=torch.uint8)
                for i, f in enumerate(futures):
                    x[i] = torch.from_numpy(f.result())
                yield x.to(device), labels[idx].to(device)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def load_imagefolder(root: str | os.PathLike, *, input_size: int = DEFAULT_INPUT_SIZE,
                     heldout_fraction: float = 0.1, seed: int = 0,
                     train_subset: int | None = None, in_memory: bool | None = None,
                     max_memory_bytes: int = 2 * 1024**3,
                     workers: int | None = None) -> DataSource:
    """Load an image-folder tree; held-out split carved from ``train``, test = ``val``.

    ``input_size``: side in pixels of the square images given to the model. ``in_memory``:
    decode everything once (True), stream (False) or decide from ``max_memory_bytes`` (None).
    """
    _pil()
    if int(input_size) < 1:
        raise DataError(f"input_size={input_size}, expected a positive number of pixels (e.g. "
                        f"{DEFAULT_INPUT_SIZE})")
    classes, (train_paths, train_labels), (test_paths, test_labels) = scan_imagefolder(root)
    train_idx, held_idx = carve_splits(train_labels, heldout_fraction=heldout_fraction, seed=seed,
                                       train_subset=train_subset)
    items = {
        "train": ([train_paths[i] for i in train_idx], train_labels[train_idx]),
        "heldout": ([train_paths[i] for i in held_idx], train_labels[held_idx]),
        "test": (test_paths, test_labels),
    }
    augment = Augment(crop_padding=max(1, input_size // 8), flip=True)
    total = sum(len(p) for p, _ in items.values())
    nbytes = total * 3 * input_size * input_size
    if in_memory is None:
        in_memory = nbytes <= max_memory_bytes
    log.info("imagefolder %s: %d classes, %d images at %dpx (%.2f GB decoded), %s", root,
             len(classes), total, input_size, nbytes / 1e9,
             "in memory" if in_memory else "streamed")
    if not in_memory:
        return StreamedImageFolder("imagefolder", items, classes=classes, input_size=input_size,
                                   augment=augment, workers=workers)
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        splits = {s: (torch.from_numpy(decode_many(p, input_size, pool)), torch.from_numpy(y))
                  for s, (p, y) in items.items()}
    return TensorSource("imagefolder", splits, num_classes=len(classes), augment=augment,
                        classes=classes)
