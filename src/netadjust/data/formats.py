"""Readers of the on-disk data formats: IDX (MNIST / Fashion-MNIST) and the CIFAR "python version".

Every reader returns plain numpy arrays: images as uint8 ``(N, C, H, W)`` with pixels 0..255 and
labels as int64 ``(N,)``. Every problem with a file (missing, truncated, wrong magic number, wrong
length, unreadable pickle) raises :class:`~netadjust.errors.DataError` naming the file.
"""

from __future__ import annotations

import codecs
import gzip
import io
import logging
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from netadjust.errors import DataError

log = logging.getLogger(__name__)

# Errors that mean "this file is damaged", as raised by gzip, zlib, tarfile and pickle.
_CORRUPT = (OSError, EOFError, zlib.error, tarfile.TarError, pickle.UnpicklingError, ValueError,
            TypeError, AttributeError, IndexError, KeyError)

# ----------------------------------------------------------------------------------------------
# IDX (http://yann.lecun.com/exdb/mnist/): 2 zero bytes, a type code, the number of dimensions,
# then one big-endian uint32 per dimension, then the data in C order.

IDX_UBYTE = 0x08

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _read_bytes(path: Path) -> bytes:
    """The whole content of ``path``, decompressed if its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except _CORRUPT as e:
        raise DataError(f"cannot read {path}: {type(e).__name__}: {e}; the file is damaged or "
                        f"truncated, download or install it again") from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file of unsigned bytes (optionally gzip-compressed) as a uint8 array."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file (first bytes {data[:4].hex() or 'empty'}, "
                        f"expected 0000 then type and rank); replace it with the original file")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != IDX_UBYTE:
        raise DataError(f"{path} holds IDX type 0x{dtype_code:02x}, expected 0x08 (unsigned byte) "
                        f"as in the MNIST-style image and label files")
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{path} has a truncated IDX header ({len(data)} bytes for rank {ndim}); "
                        f"download or install it again")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        raise DataError(f"{path} holds {len(data) - header} data bytes, expected {expected} for "
                        f"shape {shape}; the file is truncated or damaged, download it again")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _idx_candidates(stem: str) -> list[str]:
    """File names under which an IDX file ``stem`` is distributed (gzip or not, '-' or '.')."""
    dotted = stem.replace("-idx", ".idx")
    return [stem + ".gz", stem, dotted + ".gz", dotted]


def find_idx_files(directory: Path, stems: tuple[str, ...]) -> list[Path] | None:
    """The paths of all ``stems`` inside ``directory``, or None if any one is missing."""
    found = []
    for stem in stems:
        match = next((directory / n for n in _idx_candidates(stem) if (directory / n).is_file()),
                     None)
        if match is None:
            return None
        found.append(match)
    return found


def read_fashion_mnist(data_dir: str | os.PathLike | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read Fashion-MNIST (or any MNIST-style set) from the four IDX files in ``data_dir``.

    ``data_dir`` defaults to the Debian package's directory; its subdirectories ``fashion-mnist``
    and ``FashionMNIST/raw`` (torchvision's layout) are also looked at.
    Returns ``(x_train, y_train, x_test, y_test)``, images uint8 ``(N, 1, 28, 28)``.
    """
    root = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    wanted = ", ".join(s + ".gz" for s in FASHION_MNIST_FILES)
    hint = ("install it with `apt-get install dataset-fashion-mnist` (puts them in "
            f"{FASHION_MNIST_DIR}) or pass --data-dir DIR")
    if not root.is_dir():
        raise DataError(f"fashion-mnist: directory {root} does not exist; expected it to hold "
                        f"{wanted} (or uncompressed); {hint}")
    paths = None
    for directory in (root, root / "fashion-mnist", root / "FashionMNIST" / "raw"):
        if directory.is_dir():
            paths = find_idx_files(directory, FASHION_MNIST_FILES)
            if paths is not None:
                break
    if paths is None:
        present = sorted(p.name for p in root.iterdir())[:8]
        raise DataError(f"fashion-mnist: {root} does not hold the four IDX files {wanted} "
                        f"(or uncompressed; found: {', '.join(present) or 'nothing'}); {hint}")
    log.info("reading fashion-mnist from %s", paths[0].parent)
    arrays = [read_idx(p) for p in paths]
    x_train, y_train, x_test, y_test = arrays
    for images, labels, pi, pl in ((x_train, y_train, paths[0], paths[1]),
                                   (x_test, y_test, paths[2], paths[3])):
        if images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise DataError(f"{pi} holds an array of shape {images.shape}, expected "
                            f"(N, H, W) square images; it is not an image file")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{pl} holds labels of shape {labels.shape}, expected ({len(images)},) "
                            f"to match {pi}; the files are from different sets")
        if labels.size and labels.max() >= 10:
            raise DataError(f"{pl} has label {int(labels.max())}, expected 0..9")
    return (x_train[:, None], y_train.astype(np.int64), x_test[:, None], y_test.astype(np.int64))


# ----------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100, "python version": pickled dicts {data: uint8 (N, 3072), labels: [int]}.

CIFAR_LAYOUT: Mapping[str, dict] = {
    "cifar10": dict(folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
                    train=tuple(f"data_batch_{i}" for i in range(1, 6)), test=("test_batch",),
                    label_key="labels", meta="batches.meta", names_key="label_names",
                    num_classes=10),
    "cifar100": dict(folder="cifar-100-python", archive="cifar-100-python.tar.gz",
                     train=("train",), test=("test",), label_key="fine_labels", meta="meta",
                     names_key="fine_label_names", num_classes=100),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and builtins: CIFAR files need nothing else,
    and refusing other globals keeps a crafted pickle from running code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2
    }

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle API
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a data file")
        if name == "_reconstruct":
            return np.zeros(1).__reduce__()[0]
        if name == "scalar":
            return np.int64(0).__reduce__()[0]
        if name == "encode":
            return codecs.encode
        return getattr(np, name)


def _unpickle(data: bytes, where: str) -> dict:
    """Decode one CIFAR pickle (written by Python 2 or 3) into a dict with str keys."""
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _CORRUPT as e:
        raise DataError(f"cannot unpickle {where}: {type(e).__name__}: {e}; the file is damaged "
                        f"or not a CIFAR 'python version' batch, download it again") from e
    if not isinstance(obj, dict):
        raise DataError(f"{where} holds a {type(obj).__name__}, expected the dict of a CIFAR "
                        f"'python version' batch")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_member_reader(path: Path, names: list[str]) -> Callable[[str], bytes]:
    """A function name -> bytes reading the CIFAR files from a directory or a tar archive."""
    if path.is_dir():
        def read_file(name: str) -> bytes:
            try:
                return (path / name).read_bytes()
            except OSError as e:
                raise DataError(f"cannot read {path / name}: {e}") from e
        return read_file
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {}
            for m in tar.getmembers():
                base = m.name.rsplit("/", 1)[-1]
                if m.isfile() and base in names:
                    members[base] = tar.extractfile(m).read()  # type: ignore[union-attr]
    except _CORRUPT as e:
        raise DataError(f"cannot read archive {path}: {type(e).__name__}: {e}; it is damaged or "
                        f"truncated, download it again") from e
    missing = [n for n in names if n not in members and n not in ("batches.meta", "meta")]
    if missing:
        raise DataError(f"archive {path} lacks {', '.join(missing)}; expected the CIFAR "
                        f"'python version' archive")

    def read_member(name: str) -> bytes:
        return members[name]
    return read_member


def _locate_cifar(root: Path, variant: str) -> Path:
    """The directory or archive holding the CIFAR files, starting from the user's path."""
    layout = CIFAR_LAYOUT[variant]
    first = layout["train"][0]
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"{variant}: {root} does not exist; pass --data-dir with the extracted "
                        f"{layout['folder']}/ directory, its parent, or {layout['archive']}")
    for candidate in (root, root / layout["folder"]):
        if (candidate / first).is_file():
            return candidate
    if (root / layout["archive"]).is_file():
        return root / layout["archive"]
    raise DataError(f"{variant}: found neither {first} nor {layout['folder']}/ nor "
                    f"{layout['archive']} in {root}; pass --data-dir with the CIFAR "
                    f"'python version' (https://www.cs.toronto.edu/~kriz/cifar.html)")


def read_cifar(variant: str, data_dir: str | os.PathLike
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read CIFAR-10 or CIFAR-100 (``variant`` "cifar10" / "cifar100") in the "python version".

    ``data_dir`` is the extracted directory, its parent, the ``.tar.gz`` archive, or a directory
    holding the archive (read in memory, nothing is extracted to disk).
    Returns ``(x_train, y_train, x_test, y_test, class_names)``, images uint8 ``(N, 3, 32, 32)``.
    """
    layout = CIFAR_LAYOUT[variant]
    where = _locate_cifar(Path(data_dir), variant)
    names = [*layout["train"], *layout["test"], layout["meta"]]
    read = _cifar_member_reader(where, names)
    log.info("reading %s from %s", variant, where)

    def load(batch_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in batch_names:
            label = f"{where}/{name}" if where.is_file() else str(where / name)
            d = _unpickle(read(name), label)
            if "data" not in d or layout["label_key"] not in d:
                raise DataError(f"{label} has keys {sorted(d)}, expected 'data' and "
                                f"'{layout['label_key']}' ({variant} 'python version')")
            try:
                x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(d[layout["label_key"]], dtype=np.int64).reshape(-1)
            except (ValueError, TypeError) as e:
                raise DataError(f"{label}: 'data' is not N x 3072 bytes ({e}); the file is "
                                f"damaged or from another data set") from e
            if len(x) != len(y):
                raise DataError(f"{label} has {len(x)} images but {len(y)} labels")
            if y.size and (y.min() < 0 or y.max() >= layout["num_classes"]):
                raise DataError(f"{label} has labels {int(y.min())}..{int(y.max())}, expected "
                                f"0..{layout['num_classes'] - 1} for {variant}")
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = load(layout["train"])
    x_test, y_test = load(layout["test"])
    classes = [str(i) for i in range(layout["num_classes"])]
    try:
        meta = _unpickle(read(layout["meta"]), layout["meta"])
        names_ = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[layout["names_key"]]]
        if len(names_) == layout["num_classes"]:
            classes = names_
    except (DataError, KeyError) as e:  # class names are a nicety; the numbers are enough
        log.debug("no class names for %s: %s", variant, e)
    return x_train, y_train, x_test, y_test, classes
