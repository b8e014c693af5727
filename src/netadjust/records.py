"""What a search writes about itself: one record per round, the final runs, the summary.

These dataclasses are the run directory's format (see rundir.py): the search creates them,
:meth:`to_dict` gives the JSON written to disk, and :meth:`from_dict` reads it back with every
field checked, so a damaged file gives a message naming the field instead of a ``KeyError`` in
the report. Accuracies are fractions in [0, 1], losses mean cross-entropy in nats, times
seconds, MACs and parameters exact counts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .schema import read_fields


class _Record:
    """``to_dict`` / ``from_dict`` for the record dataclasses below."""

    def to_dict(self) -> dict[str, Any]:
        # Optional results that were not produced (None) are left out of the file.
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Any, *, where: str):
        return read_fields(cls, data, where=where, extra="ignore")


@dataclass
class RoundRecord(_Record):
    """One finished round: what was trained, what FUR said, and the widths it led to."""

    round: int
    widths: dict[str, int]  # the widths this round trained
    macs: int
    params: int
    heldout_acc: float
    heldout_loss: float
    test_acc: float
    test_loss: float
    fur: dict[str, float]  # per key: mean held-out loss increase when its channels are dropped
    fur_stderr: dict[str, float]
    drop_rate: dict[str, float]  # p_l used per key
    drop_rate_clipped: list[str]
    fur_base_loss: float
    moves: dict[str, int]  # key -> channels added (negative: removed) by the adjustment
    next_widths: dict[str, int]  # after the adjustment and the budget restore
    next_macs: int
    train_seconds: float
    fur_seconds: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch
    guide: str = "fur"  # what ranked the layers: "fur", or "random" (the control)
    warm: bool = False  # trained from the previous round's network resized (--warm-start), not from scratch
    latency: float | None = None  # predicted seconds of `widths` (latency runs only: the lookup table's)
    next_latency: float | None = None  # predicted seconds of `next_widths`


@dataclass
class FinalRun(_Record):
    """One final retraining (``final/{name}_seed{seed}.json``)."""

    widths: dict[str, int]
    test_acc: float
    test_loss: float
    epochs: int
    seed: int
    seconds: float
    train: dict[str, Any] | None = None  # the training settings it used (the TrainConfig)
    distill: dict[str, Any] | None = None  # distilled: {"teacher": what taught it, "alpha", "temperature"}


@dataclass
class Summary(_Record):
    """``summary.json``: the search's outcome; the final-comparison fields when it ran."""

    arch: dict[str, Any]  # the architecture's settings (get_arch arguments)
    dataset: str
    rounds: int
    macs_original: int
    macs_final: int
    macs_target: float  # --budget x the starting MACs (the budget itself unless --budget-metric latency)
    params_original: int
    params_final: int
    within_tolerance: bool
    search_seconds: float
    final_epochs: int | None = None
    final_seeds: list[int] | None = None  # the seeds of the final comparison, in order
    original_test_accs: list[float] | None = None  # per seed
    searched_test_accs: list[float] | None = None  # per seed
    original_test_acc: float | None = None  # mean over the seeds
    searched_test_acc: float | None = None
    original_test_acc_std: float | None = None  # sample standard deviation over the seeds (0 for one)
    searched_test_acc_std: float | None = None
    test_acc_gain: float | None = None  # mean over seeds of (searched - original), paired by seed
    test_acc_gain_ci95: list[float] | None = None  # [low, high]; only with two seeds or more
    budget_metric: str = "macs"  # what the budget held: "macs" or "latency"
    latency: dict[str, Any] | None = None  # latency runs: device, batch, seconds measured and predicted
