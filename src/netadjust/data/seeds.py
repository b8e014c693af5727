"""Seeds of the data code's random streams: held-out carving, shuffling, augmentation, synthetic.

Every random choice in :mod:`netadjust.data` draws from a generator seeded by
:func:`derive_seed`, so a run is reproducible from its one user-given seed, and seeds of any size
(negative or beyond 64 bits) are accepted.
"""

from __future__ import annotations

import numpy as np


def derive_seed(*parts: int) -> int:
    """A 63-bit seed for ``torch.Generator`` / numpy mixed from several integers (seed, epoch,
    stream tag). Each part is reduced modulo ``2**63`` first, so any Python int is accepted."""
    ss = np.random.SeedSequence([int(p) % 2**63 for p in parts])
    return int(ss.generate_state(1, dtype=np.uint64)[0]) & (2**63 - 1)
