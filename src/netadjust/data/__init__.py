"""Data sets for training and FUR estimation: one loader, three splits.

``load_dataset(name)`` returns a :class:`DataSource` with splits ``train``, ``heldout`` (carved
from the official training set, used to estimate FUR; never the test set) and ``test``, plus
``full`` = train + held-out. Batches are float32 normalised NCHW tensors and int64 labels on the
requested device. The data sets and where their files come from: :data:`DATASETS`.

Modules: ``catalog`` (the table of data sets, ``load_dataset``), ``source`` (the ``DataSource``
base: batching, shuffling, sharding, normalisation), ``memory`` (in-memory sets), ``imagefolder``
(image folders, in memory or streamed), ``formats`` (file readers), ``splits`` (split names and
held-out carving), ``augment`` (crop and flip), ``synthetic`` (a test set), ``seeds``.
"""

from __future__ import annotations

from netadjust.data.augment import Augment
from netadjust.data.catalog import DATASETS, DatasetSpec, dataset_help, load_dataset
from netadjust.data.memory import TensorSource
from netadjust.data.source import DataSource
from netadjust.data.splits import FULL, SPLITS, carve_heldout
from netadjust.data.synthetic import synthetic

__all__ = ["DATASETS", "FULL", "SPLITS", "Augment", "DataSource", "DatasetSpec", "TensorSource",
           "carve_heldout", "dataset_help", "load_dataset", "synthetic"]
