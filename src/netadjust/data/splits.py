"""The splits of a data set and how the training set is cut into them.

Every data set has three splits: ``train``, ``heldout`` (carved from the official training set,
used to estimate FUR; never the test set) and ``test`` (the official test set), plus the
pseudo-split ``full`` = train + held-out for a final retraining. :func:`carve_heldout` picks the
held-out images, stratified by class and deterministic in the seed; :func:`carve_splits` is what
every loader calls: it carves the held-out split and then applies ``train_subset``.
"""

from __future__ import annotations

import numpy as np

from netadjust.data.seeds import derive_seed
from netadjust.errors import DataError

SPLITS = ("train", "heldout", "test")
# "full" = train + held-out: the whole official training set, for a final retraining (the
# official code retrains the searched network on all 50k CIFAR training images).
FULL = "full"


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


def carve_splits(labels: np.ndarray, *, heldout_fraction: float, seed: int,
                 train_subset: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, heldout) indices into the official training set, as every loader builds them.

    The held-out split is carved first (:func:`carve_heldout`), so it does not depend on
    ``train_subset``; then only the first ``train_subset`` training indices are kept (quick
    runs; ``None`` keeps all).
    """
    train_idx, held_idx = carve_heldout(labels, heldout_fraction, seed)
    if train_subset is not None:
        if int(train_subset) < 1:
            raise DataError(f"train_subset={train_subset}, expected a positive number of "
                            f"training images (or none for all {len(train_idx)})")
        train_idx = train_idx[:int(train_subset)]
    return train_idx, held_idx
