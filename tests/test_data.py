"""Tests of netadjust.data: file formats, splits, the batch loader, augmentation, sharding."""

from __future__ import annotations

import gzip
import os
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from netadjust.data import (DATASETS, FULL, SPLITS, Augment, DataSource, TensorSource,
                            carve_heldout, dataset_help, load_dataset, synthetic)
from netadjust.data.augment import crop_flip
from netadjust.data.formats import FASHION_MNIST_DIR, read_idx
from netadjust.data.seeds import derive_seed
from netadjust.data.source import count_batches
from netadjust.data.splits import carve_splits
from netadjust.errors import DataError

from data_files import idx_bytes, write_cifar10, write_cifar100, write_fashion

def make_tar(src: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=src.name)


def all_batches(source, split, **kw):
    xs, ys = zip(*source.batches(split, **kw))
    return torch.cat(xs), torch.cat(ys)


def indexed_source(n: int = 30, size: int = 6, channels: int = 2, augment: Augment = Augment(2, True),
                   seed: int = 0) -> TensorSource:
    """A source whose label is the sample's index in its split, so batches can be traced."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(n)
    empty = (x[:0], y[:0])
    return TensorSource("indexed", {"train": (x, y), "heldout": empty, "test": (x, y)},
                        num_classes=n, augment=augment)


# ---------------------------------------------------------------------------------------------
# IDX / Fashion-MNIST


def test_read_idx_gzip_and_plain(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    with gzip.open(tmp_path / "a.gz", "wb") as f:
        f.write(idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_files(tmp_path, gz):
    x_tr, y_tr, x_te, y_te = write_fashion(tmp_path / "fm", gz=gz)
    src = load_dataset("fashion-mnist", data_dir=tmp_path / "fm", heldout_fraction=0.1, seed=0)
    assert isinstance(src, DataSource)
    assert (src.num_classes, src.in_channels, src.input_size) == (10, 1, 28)
    assert (src.size("train"), src.size("heldout"), src.size("test")) == (36, 4, 10)
    assert src.classes[0] == "T-shirt/top" and src.classes[9] == "Ankle boot"
    assert src.augment == Augment(crop_padding=2, flip=True)
    np.testing.assert_array_equal(src.images("test")[:, 0].numpy(), x_te)
    np.testing.assert_array_equal(src.labels("test").numpy(), y_te)
    # train + heldout are exactly the official training set
    got = np.concatenate([src.labels("train").numpy(), src.labels("heldout").numpy()])
    assert sorted(got.tolist()) == sorted(y_tr.tolist())
    x, y = next(src.batches("test", batch_size=4, train=False))
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_fashion_mnist_parent_dir_is_searched(tmp_path):
    write_fashion(tmp_path / "fashion-mnist")
    assert load_dataset("fashion-mnist", data_dir=tmp_path).size("test") == 10


def test_fashion_mnist_missing_dir_names_package(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "nowhere")
    msg = str(e.value)
    assert "nowhere" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "t10k-labels-idx1-ubyte.gz" in msg and "--data-dir" in msg and "\n" not in msg


def test_fashion_mnist_missing_file(tmp_path):
    write_fashion(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_truncated_gzip_names_file(tmp_path):
    write_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_bad_magic_names_file(tmp_path):
    write_fashion(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[0] = 0x1F
    path.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*not an IDX file"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_idx_wrong_length_and_type(tmp_path):
    arr = np.zeros((3, 4, 4), dtype=np.uint8)
    (tmp_path / "short").write_bytes(idx_bytes(arr)[:-5])
    with pytest.raises(DataError, match="short.*truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "float").write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\0" * 4)
    with pytest.raises(DataError, match="0x0d"):
        read_idx(tmp_path / "float")


def test_fashion_mnist_label_count_mismatch(tmp_path):
    write_fashion(tmp_path)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(DataError, match="t10k-labels"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_sizes():
    src = load_dataset("fashion-mnist")
    assert (src.size("train"), src.size("heldout"), src.size("test")) == (54000, 6000, 10000)
    assert np.bincount(src.labels("heldout").numpy()).tolist() == [600] * 10


# ---------------------------------------------------------------------------------------------
# CIFAR


@pytest.mark.parametrize("where", ["dir", "parent", "tar", "dir_with_tar"])
def test_cifar10_locations(tmp_path, where):
    ref = write_cifar10(tmp_path / "cifar-10-batches-py")
    if where in ("tar", "dir_with_tar"):
        (tmp_path / "archive").mkdir()
        make_tar(tmp_path / "cifar-10-batches-py", tmp_path / "archive" / "cifar-10-python.tar.gz")
    data_dir = {"dir": tmp_path / "cifar-10-batches-py", "parent": tmp_path,
                "tar": tmp_path / "archive" / "cifar-10-python.tar.gz",
                "dir_with_tar": tmp_path / "archive"}[where]
    src = load_dataset("cifar10", data_dir=data_dir, heldout_fraction=0.1)
    assert (src.num_classes, src.in_channels, src.input_size) == (10, 3, 32)
    assert (src.size("train"), src.size("heldout"), src.size("test")) == (18, 2, 6)
    assert src.classes[:2] == ["airplane", "automobile"]
    assert src.augment == Augment(crop_padding=4, flip=True)
    np.testing.assert_array_equal(src.images("test").numpy(), ref["x_test"])
    np.testing.assert_array_equal(src.labels("test").numpy(), ref["y_test"])
    # every training image keeps its label, and train + heldout is the whole training set
    imgs = torch.cat([src.images("train"), src.images("heldout")]).numpy()
    labels = torch.cat([src.labels("train"), src.labels("heldout")]).numpy()
    lookup = {ref["x_train"][i].tobytes(): ref["y_train"][i] for i in range(20)}
    assert len(imgs) == 20 and all(lookup[im.tobytes()] == lab for im, lab in zip(imgs, labels))


def test_cifar100_fine_labels(tmp_path):
    ref = write_cifar100(tmp_path, n_train=30, n_test=7)
    src = load_dataset("cifar100", data_dir=tmp_path, heldout_fraction=0.2)
    assert src.num_classes == 100 and src.classes[99] == "c99"
    assert (src.size("train"), src.size("heldout"), src.size("test")) == (24, 6, 7)
    np.testing.assert_array_equal(src.labels("test").numpy(), ref["y_test"])


def test_cifar_corrupt_pickle_names_file(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"\x80\x02}q\x00(U\x04data")  # cut short
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_refuses_code_in_pickle(tmp_path):
    write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo hacked",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(DataError, match="test_batch.*unexpected object"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_truncated_archive(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    make_tar(tmp_path / "cifar-10-batches-py", archive)
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", data_dir=archive)


def test_cifar_missing(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset("cifar10", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# image folders

COLOURS = {"blue": 2, "green": 1, "red": 0}  # class name -> dominant channel


def write_imagefolder(root: Path, n_train: int = 4, n_val: int = 2) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    for split, n in (("train", n_train), ("val", n_val)):
        for name, ch in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                w, h = int(rng.integers(12, 30)), int(rng.integers(12, 30))  # not square
                arr = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
                arr[..., ch] = 200
                Image.fromarray(arr).save(root / split / name / f"{i}.png")


@pytest.mark.parametrize("in_memory", [True, False])
def test_imagefolder(tmp_path, in_memory):
    pytest.importorskip("PIL")
    from netadjust.data.imagefolder import load_imagefolder

    write_imagefolder(tmp_path)
    src = load_imagefolder(tmp_path, input_size=16, heldout_fraction=0.25, in_memory=in_memory,
                           workers=2)
    assert isinstance(src, DataSource)
    assert src.classes == ["blue", "green", "red"]
    assert (src.num_classes, src.in_channels, src.input_size) == (3, 3, 16)
    assert (src.size("train"), src.size("heldout"), src.size("test")) == (9, 3, 6)
    assert src.labels("heldout").tolist() == [0, 1, 2]  # one per class (stratified)
    for split, train in (("test", False), ("train", True)):
        x, y = all_batches(src, split, batch_size=4, train=train)
        assert x.shape[1:] == (3, 16, 16)
        raw = x * torch.tensor(src.std).view(1, 3, 1, 1) + torch.tensor(src.mean).view(1, 3, 1, 1)
        dominant = raw.mean(dim=(2, 3)).argmax(dim=1)  # augmentation keeps the colour
        expected = torch.tensor([COLOURS[src.classes[i]] for i in y])
        assert torch.equal(dominant, expected)


def test_imagefolder_streamed_matches_memory(tmp_path):
    pytest.importorskip("PIL")
    from netadjust.data.imagefolder import load_imagefolder

    write_imagefolder(tmp_path)
    mem = load_imagefolder(tmp_path, input_size=12, in_memory=True)
    stream = load_imagefolder(tmp_path, input_size=12, in_memory=False, workers=2)
    for split, train in (("test", False), ("train", True)):
        a = all_batches(mem, split, batch_size=3, train=train, seed=5, epoch=1)
        b = all_batches(stream, split, batch_size=3, train=train, seed=5, epoch=1)
        assert torch.equal(a[1], b[1])
        assert torch.allclose(a[0] * torch.tensor(mem.std).view(1, 3, 1, 1),
                              b[0] * torch.tensor(stream.std).view(1, 3, 1, 1)
                              + (torch.tensor(stream.mean) - torch.tensor(mem.mean)).view(1, 3, 1, 1),
                              atol=1e-5)


def test_imagefolder_via_load_dataset(tmp_path):
    pytest.importorskip("PIL")
    write_imagefolder(tmp_path)
    src = load_dataset("imagefolder", data_dir=tmp_path, input_size=8, heldout_fraction=0.0)
    assert src.input_size == 8 and src.size("heldout") == 0 and src.size("train") == 12


def test_imagefolder_errors(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    from netadjust.data.imagefolder import load_imagefolder

    with pytest.raises(DataError, match="train"):
        load_imagefolder(tmp_path)
    write_imagefolder(tmp_path)
    (tmp_path / "val" / "purple").mkdir()
    with pytest.raises(DataError, match="purple"):
        load_imagefolder(tmp_path, input_size=8)
    (tmp_path / "val" / "purple").rmdir()
    (tmp_path / "train" / "red" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="9.png"):
        load_imagefolder(tmp_path, input_size=8, in_memory=True)
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed
    with pytest.raises(DataError, match=r"pip install 'netadjust\[imagefolder\]'"):
        load_dataset("imagefolder", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# digits, names, arguments


def test_digits_sizes_and_augmentation():
    src = load_dataset("digits")
    total = sum(src.size(s) for s in ("train", "heldout", "test"))
    assert total == 1797
    assert (src.size("test"), src.size("heldout"), src.size("train")) == (360, 144, 1293)
    assert (src.num_classes, src.in_channels, src.input_size) == (10, 1, 8)
    assert src.augment.flip is False and src.augment.crop_padding == 1
    assert src.images("train").max() == 255  # 0..16 scaled to 0..255
    # test split does not depend on the seed; the held-out split does
    other = load_dataset("digits", seed=1)
    assert torch.equal(other.images("test"), src.images("test"))
    assert not torch.equal(other.labels("heldout"), src.labels("heldout"))


def test_unknown_name_suggests():
    with pytest.raises(DataError, match="did you mean cifar10"):
        load_dataset("cifar-10")
    assert tuple(DATASETS) == ("digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder")


def test_dataset_table_and_help():
    assert dataset_help() == "digits, fashion-mnist, cifar10, cifar100 or imagefolder"
    details = dataset_help(details=True).splitlines()
    assert len(details) == len(DATASETS)
    for (name, spec), line in zip(DATASETS.items(), details):
        assert name in dataset_help()
        assert spec.help and "\n" not in spec.help and line == f"{name}: {spec.help}"
        assert callable(spec.load)
        if spec.needs_data_dir:  # said in the help text, and the error without it
            assert "--data-dir" in spec.help
            with pytest.raises(DataError, match="--data-dir") as e:
                load_dataset(name)
            assert str(e.value) == spec.no_data_dir
    assert [n for n, s in DATASETS.items() if s.needs_data_dir] == ["cifar10", "cifar100",
                                                                    "imagefolder"]
    assert "scikit-learn" in DATASETS["digits"].help
    assert "apt-get install dataset-fashion-mnist" in DATASETS["fashion-mnist"].help


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, "0.1"])
def test_bad_heldout_fraction(fraction):
    with pytest.raises(DataError, match="heldout_fraction"):
        load_dataset("digits", heldout_fraction=fraction)


def test_heldout_leaving_empty_train(tmp_path):
    write_cifar10(tmp_path, per_batch=1, n_test=2)
    with pytest.raises(DataError, match="no training images"):
        load_dataset("cifar10", data_dir=tmp_path, heldout_fraction=0.95)


def test_train_subset(tmp_path):
    write_fashion(tmp_path)
    full = load_dataset("fashion-mnist", data_dir=tmp_path)
    sub = load_dataset("fashion-mnist", data_dir=tmp_path, train_subset=5)
    assert sub.size("train") == 5 and sub.size("heldout") == full.size("heldout")
    assert torch.equal(sub.images("train"), full.images("train")[:5])
    with pytest.raises(DataError, match="train_subset"):
        load_dataset("fashion-mnist", data_dir=tmp_path, train_subset=0)


def test_input_size_only_for_imagefolder():
    with pytest.raises(DataError, match="imagefolder only"):
        load_dataset("digits", input_size=32)


# ---------------------------------------------------------------------------------------------
# held-out split


def test_carve_heldout():
    labels = np.repeat(np.arange(5), [40, 30, 20, 6, 4])  # 100, unbalanced
    tr, ho = carve_heldout(labels, 0.2, seed=7)
    tr2, ho2 = carve_heldout(labels, 0.2, seed=7)
    tr3, ho3 = carve_heldout(labels, 0.2, seed=8)
    assert np.array_equal(ho, ho2) and np.array_equal(tr, tr2)
    assert not np.array_equal(ho, ho3)
    assert len(ho) == 20 and len(tr) == 80
    assert not set(tr) & set(ho) and set(tr) | set(ho) == set(range(100))
    counts = np.bincount(labels[ho], minlength=5)
    assert np.all(np.abs(counts - 0.2 * np.bincount(labels)) <= 1), counts
    tr0, ho0 = carve_heldout(labels, 0.0, seed=7)
    assert len(ho0) == 0 and np.array_equal(tr0, np.arange(100))


def test_carve_splits_train_subset():
    labels = np.repeat(np.arange(4), 25)
    tr, ho = carve_heldout(labels, 0.2, seed=3)
    tr_all, ho_all = carve_splits(labels, heldout_fraction=0.2, seed=3)
    assert np.array_equal(tr_all, tr) and np.array_equal(ho_all, ho)
    for n in (1, 7, 80, 500):
        tr_n, ho_n = carve_splits(labels, heldout_fraction=0.2, seed=3, train_subset=n)
        assert np.array_equal(tr_n, tr[:n])  # the first n training images, nothing else
        assert np.array_equal(ho_n, ho)  # the held-out split never changes
    for bad in (0, -4):
        with pytest.raises(DataError, match=rf"train_subset={bad}, .*all 80\)"):
            carve_splits(labels, heldout_fraction=0.2, seed=3, train_subset=bad)


def test_huge_and_negative_seeds():
    big = 99999999999999999999
    assert 0 <= derive_seed(big, 2**200, -1) < 2**63
    assert derive_seed(big) == derive_seed(big % 2**63)
    labels = np.repeat(np.arange(3), 10)
    for seed in (big, -big):
        tr, ho = carve_heldout(labels, 0.3, seed=seed)
        assert len(ho) == 9 and not set(tr) & set(ho)
    src = load_dataset("digits", seed=big)
    assert src.size("heldout") == 144
    x, y = next(src.batches("train", batch_size=8, train=True, seed=big, epoch=big))
    assert x.shape == (8, 1, 8, 8)
    assert synthetic(seed=big).size("train") == 256


# ---------------------------------------------------------------------------------------------
# batches


def test_batch_shapes_order_and_partial_batch():
    src = synthetic(num_classes=3, in_channels=2, input_size=6, n_train=50, n_heldout=0, n_test=23)
    assert src.num_batches("test", batch_size=10, train=False) == 3
    batches = list(src.batches("test", batch_size=10, train=False))
    assert [len(y) for _, y in batches] == [10, 10, 3]  # last partial batch kept
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert x.shape == (23, 2, 6, 6) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, src.labels("test"))  # fixed order
    expected = (src.images("test").float() / 255 - torch.tensor(src.mean).view(1, 2, 1, 1)) \
        / torch.tensor(src.std).view(1, 2, 1, 1)
    assert torch.allclose(x, expected, atol=1e-5)
    train = list(src.batches("train", batch_size=16, train=True))
    assert len(train) == src.num_batches("train", batch_size=16, train=True) == 3  # drop_last
    assert all(len(yb) == 16 for _, yb in train)
    assert list(src.batches("heldout", batch_size=8, train=False)) == []


def test_normalisation_from_train_split():
    src = synthetic(in_channels=3, n_train=200)
    x = src.images("train").double() / 255
    np.testing.assert_allclose(src.mean, x.mean(dim=(0, 2, 3)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(src.std, x.std(dim=(0, 2, 3), unbiased=False).numpy(), rtol=1e-5)
    xn, _ = all_batches(src, "train", batch_size=50, train=False)
    assert torch.allclose(xn.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(xn.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)


def test_train_batches_deterministic_per_seed_and_epoch():
    src = indexed_source()
    run = lambda **kw: all_batches(src, "train", batch_size=8, train=True, **kw)  # noqa: E731
    a, b = run(seed=1, epoch=0), run(seed=1, epoch=0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c, d = run(seed=1, epoch=1), run(seed=2, epoch=0)
    assert not torch.equal(a[1], c[1]) and not torch.equal(a[1], d[1])
    assert len(set(a[1].tolist())) == 24  # a permutation, no repeats


def _matches_augmented(orig: torch.Tensor, aug: torch.Tensor, padding: int, flip: bool) -> bool:
    """Whether ``aug`` is a crop (offset within padding) of the zero-padded ``orig``, maybe
    mirrored."""
    c, h, w = orig.shape
    padded = torch.nn.functional.pad(orig, (padding,) * 4)
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            if torch.equal(crop, aug) or (flip and torch.equal(crop.flip(-1), aug)):
                return True
    return False


def test_augmentation_changes_images_keeps_labels_and_range():
    src = indexed_source(n=40, augment=Augment(crop_padding=2, flip=True))
    scale = torch.tensor(src.std).view(1, -1, 1, 1) * 255
    shift = torch.tensor(src.mean).view(1, -1, 1, 1) * 255
    x, y = all_batches(src, "train", batch_size=8, train=True, seed=3)
    raw = (x * scale + shift).round()
    assert raw.min() >= 0 and raw.max() <= 255  # values stay pixel values, zero padding = 0
    orig = src.images("train").float()
    changed = 0
    for img, idx in zip(raw, y.tolist()):
        assert _matches_augmented(orig[idx], img, 2, flip=True)  # label still names the source
        changed += not torch.equal(orig[idx], img)
    assert changed >= len(y) // 2
    # without augmentation the same source is returned untouched
    plain = indexed_source(n=40, augment=Augment())
    xp, yp = all_batches(plain, "train", batch_size=8, train=True, seed=3)
    raw_p = (xp * scale + shift).round()
    assert all(torch.equal(orig[i], img) for img, i in zip(raw_p, yp.tolist()))


def test_crop_flip_exact():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.uint8).view(2, 1, 3, 3) + 1
    offsets = torch.tensor([[1, 1], [0, 2]])  # sample 0: no shift; sample 1: up-left padded
    out = crop_flip(x, offsets, torch.tensor([False, True]), padding=1)
    assert torch.equal(out[0], x[0])
    padded = torch.nn.functional.pad(x[1], (1, 1, 1, 1))
    assert torch.equal(out[1], padded[:, 0:3, 2:5].flip(-1))
    # flip off: never mirrored, only shifted (as for digits)
    src = indexed_source(n=40, augment=Augment(crop_padding=1, flip=False))
    xs, ys = all_batches(src, "train", batch_size=8, train=True, seed=4)
    raw = (xs * torch.tensor(src.std).view(1, -1, 1, 1) * 255
           + torch.tensor(src.mean).view(1, -1, 1, 1) * 255).round()
    orig = src.images("train").float()
    assert all(_matches_augmented(orig[i], img, 1, flip=False) for img, i in zip(raw, ys.tolist()))


@pytest.mark.parametrize("n,batch_size,world_size", [(30, 4, 3), (10, 3, 3), (31, 5, 2), (2, 4, 3)])
def test_sharding_eval_disjoint_cover_equal_counts(n, batch_size, world_size):
    src = indexed_source(n=n)
    per_rank = []
    for rank in range(world_size):
        batches = list(src.batches("test", batch_size=batch_size, train=False, rank=rank,
                                   world_size=world_size))
        assert len(batches) == src.num_batches("test", batch_size=batch_size, train=False,
                                               world_size=world_size)
        assert all(len(y) <= batch_size + 1 for _, y in batches)
        per_rank.append(torch.cat([y for _, y in batches]).tolist())
    assert len({len(p) for p in per_rank}) <= 2
    flat = [i for p in per_rank for i in p]
    assert sorted(flat) == list(range(n))  # disjoint and complete


def test_sharding_train_disjoint_full_batches():
    src = indexed_source(n=50)
    seen = []
    for rank in range(3):
        batches = list(src.batches("train", batch_size=4, train=True, rank=rank, world_size=3,
                                   seed=9, epoch=2))
        assert len(batches) == src.num_batches("train", batch_size=4, train=True,
                                               world_size=3) == 4
        assert all(len(y) == 4 for _, y in batches)
        seen.append(torch.cat([y for _, y in batches]))
    everything = torch.cat(seen).tolist()
    assert len(set(everything)) == 48  # disjoint; 50 - 48 dropped by drop_last
    # different ranks augment independently but share the permutation
    single = all_batches(src, "train", batch_size=12, train=True, seed=9, epoch=2)[1]
    assert sorted(single.tolist()) == sorted(everything)


def test_count_batches():
    assert count_batches(100, 10, True, 1) == 10
    assert count_batches(105, 10, True, 1) == 10
    assert count_batches(105, 10, False, 1) == 11
    assert count_batches(31, 5, False, 2) == 3  # tail of 1 < world_size merged into batch 3
    assert count_batches(32, 5, False, 2) == 4
    assert count_batches(0, 5, False, 2) == 0


def test_batch_errors():
    src = synthetic(n_train=10)
    with pytest.raises(DataError, match="did you mean heldout"):
        src.size("held-out")
    with pytest.raises(DataError, match="batch-size"):
        next(src.batches("train", batch_size=32, train=True))
    with pytest.raises(DataError, match="rank"):
        next(src.batches("test", batch_size=4, train=False, rank=2, world_size=2))


def test_datasource_subclass_contract():
    """A subclass providing size, labels and _images gets batching, sharding and normalisation."""
    import netadjust.data

    assert not hasattr(netadjust.data, "BatchSource")
    ref = indexed_source(n=12, augment=Augment())

    class Listed(DataSource):
        name, num_classes, in_channels, input_size = "listed", 12, 2, 6
        classes, mean, std, augment = ref.classes, ref.mean, ref.std, Augment()

        def size(self, split):
            self._check_split(split)
            return ref.size(split)

        def labels(self, split):
            return ref.labels(split)

        def _images(self, split, order, index_batches, rank, world_size, device):
            for s in index_batches:
                idx = order[s][rank::world_size]
                yield ref.images(split)[idx].to(device), ref.labels(split)[idx].to(device)

    src = Listed()
    assert isinstance(src, DataSource) and isinstance(ref, DataSource)
    for kw in ({"train": False}, {"train": True, "seed": 4, "rank": 1, "world_size": 2}):
        a = all_batches(src, "test", batch_size=4, **kw)
        b = all_batches(ref, "test", batch_size=4, **kw)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(DataError, match="did you mean heldout"):
        src.size("held-out")


def test_device_cache_cpu():
    src = synthetic()
    assert src.on("cpu") is src.on(torch.device("cpu"))
    x, y = next(src.batches("train", batch_size=8, train=True, device="cpu"))
    assert x.device.type == "cpu" and y.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_same_batches_on_gpu():
    src = synthetic(in_channels=3)
    a = all_batches(src, "train", batch_size=16, train=True, seed=1)
    b = all_batches(src, "train", batch_size=16, train=True, seed=1, device="cuda")
    assert b[0].is_cuda and torch.equal(a[1], b[1].cpu())
    assert torch.allclose(a[0], b[0].cpu(), atol=1e-6)


def test_synthetic_is_learnable():
    torch.manual_seed(0)
    src = synthetic(num_classes=4, in_channels=1, input_size=8, seed=0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(5):
        for x, y in src.batches("train", batch_size=32, train=True, epoch=epoch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    x, y = all_batches(src, "test", batch_size=64, train=False)
    assert (model(x).argmax(1) == y).float().mean() > 0.9


def test_full_split_is_train_plus_heldout():
    assert SPLITS == ("train", "heldout", "test") and FULL == "full"
    data = load_dataset("digits", seed=3)
    assert data.size("full") == data.size("train") + data.size("heldout") == 1797 - data.size("test")
    full = torch.cat([y for _, y in data.batches("full", batch_size=500, train=False)])
    parts = torch.cat([y for s in ("train", "heldout") for _, y in data.batches(s, batch_size=500, train=False)])
    assert torch.equal(full, parts)
