"""Small files in the data sets' real formats (IDX, the CIFAR pickles), for the tests that read them."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np




def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0, 0, type 0x08, rank, big-endian dims, data."""
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_fashion(directory: Path, n_train: int = 40, n_test: int = 10, gz: bool = True,
                  seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3 % 10).astype(np.uint8),
    }
    for name, arr in arrays.items():
        if gz:
            with gzip.open(directory / (name + ".gz"), "wb") as f:
                f.write(idx_bytes(arr))
        else:
            (directory / name).write_bytes(idx_bytes(arr))
    return tuple(arrays.values())


def cifar_pickle(images: np.ndarray, labels: np.ndarray, label_key: str) -> bytes:
    """A batch like the originals: dict with bytes keys, data (N, 3072) uint8, list labels."""
    d = {b"batch_label": b"test", label_key.encode(): [int(v) for v in labels],
         b"data": images.reshape(len(images), -1), b"filenames": [b"x.png"] * len(images)}
    return pickle.dumps(d, protocol=2)


def write_cifar10(directory: Path, per_batch: int = 4, n_test: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    directory.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch)
        (directory / f"data_batch_{i}").write_bytes(cifar_pickle(x, y, "labels"))
        xs.append(x)
        ys.append(y)
    xt = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    yt = rng.integers(0, 10, n_test)
    (directory / "test_batch").write_bytes(cifar_pickle(xt, yt, "labels"))
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                  "horse", "ship", "truck")]
    (directory / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return {"x_train": np.concatenate(xs), "y_train": np.concatenate(ys), "x_test": xt, "y_test": yt}


def write_cifar100(directory: Path, n_train: int = 30, n_test: int = 7, seed: int = 2) -> dict[str, np.ndarray]:
    """``directory/cifar-100-python`` as the original archive unpacks: train, test and meta, fine labels only."""
    rng = np.random.default_rng(seed)
    d = directory / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    x, y = rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8), np.arange(n_train) * 3 % 100
    xt, yt = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8), (np.arange(n_test) * 7 + 1) % 100
    (d / "train").write_bytes(cifar_pickle(x, y, "fine_labels"))
    (d / "test").write_bytes(cifar_pickle(xt, yt, "fine_labels"))
    names = [f"c{i}".encode() for i in range(100)]
    (d / "meta").write_bytes(pickle.dumps({b"fine_label_names": names}, protocol=2))
    return {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt}
