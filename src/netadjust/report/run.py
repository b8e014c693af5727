"""Reading a run directory into the :class:`RunData` a report shows, and checking it.

Every file is read through :class:`~netadjust.rundir.RunDir`'s typed readers, so a damaged
``config.json``, ``records.jsonl`` line, ``summary.json`` or ``final/*.json`` raises a
:class:`~netadjust.errors.ConfigError` naming the file (and line) and the field. On top of
that, :func:`load_run` checks what no single file can: every round and the final widths name
the same layers as round 0, and the summary's per-seed lists match its seeds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..records import FinalRun, RoundRecord, Summary
from ..rundir import RunDir
from ..schema import conforms


@dataclass
class RunData:
    """Everything a report shows, read from one run directory."""

    path: Path
    config: dict[str, Any]
    records: list[RoundRecord]
    keys: list[str]  # searchable layers, in forward order
    before: dict[str, int]  # round 0 widths
    after: dict[str, int]  # widths_final.json, or the latest next_widths of an unfinished run
    has_final_widths: bool
    summary: Summary | None
    finals: dict[str, FinalRun] = field(default_factory=dict)  # final/*.json by file stem

    @property
    def rounds_planned(self) -> int | None:
        rounds = self.config.get("rounds")
        return rounds if isinstance(rounds, int) and not isinstance(rounds, bool) else None

    @property
    def search_done(self) -> bool:
        planned = self.rounds_planned
        return self.has_final_widths and (planned is None or len(self.records) >= planned)

    @property
    def finished(self) -> bool:
        return self.search_done and self.summary is not None

    @property
    def macs_target(self) -> float:
        """The budget: the summary's target, else round 0's MACs (within tolerance of it)."""
        if self.summary is not None:
            return float(self.summary.macs_target)
        return float(self.records[0].macs)

    @property
    def after_label(self) -> str:
        return "final" if self.has_final_widths else f"next (after round {self.records[-1].round})"


def unit(value: float) -> tuple[float, str]:
    """(divisor, suffix) to show counts like ``value``: G, M, K or none (plots and tables alike)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return div, suffix
    return 1.0, ""


def _widths(value: Any, where: str, keys: list[str]) -> dict[str, int]:
    """``value`` as widths in the order of ``keys``, if it is a mapping of exactly those keys to ints."""
    if not conforms(value, dict[str, int]) or sorted(value) != sorted(keys):
        raise ConfigError(f"{where} is corrupt: expected a mapping of layer key -> channels "
                          f"with the {len(keys)} layer keys of round 0")
    return {k: value[k] for k in keys}


def _check_seeds(summary: Summary, where: Path) -> None:
    """The per-seed lists of the final comparison must have one value per seed."""
    if summary.test_acc_gain_ci95 is not None and len(summary.test_acc_gain_ci95) != 2:
        raise ConfigError(f"{where} is corrupt: test_acc_gain_ci95 must be [low, high], "
                          f"got {summary.test_acc_gain_ci95!r}")
    if summary.final_seeds is None:
        return
    for name, values in (("original_test_accs", summary.original_test_accs),
                         ("searched_test_accs", summary.searched_test_accs)):
        if values is not None and len(values) != len(summary.final_seeds):
            raise ConfigError(f"{where} is corrupt: final_seeds lists {len(summary.final_seeds)} seeds but "
                              f"{name} holds {len(values)} values")


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read and check a run directory; a missing or corrupt file raises a ConfigError naming it."""
    run = RunDir(run_dir)
    config = run.read_config()
    records = run.read_records()
    if not records:
        raise ConfigError(f"{run.records} holds no completed round yet: nothing to report")
    keys = list(records[0].widths)
    if not keys:
        raise ConfigError(f"{run.records} line 1 is corrupt: its widths name no layer")
    for n, rec in enumerate(records[1:], 2):
        _widths(rec.widths, f"{run.records} line {n} ('widths')", keys)
    has_final_widths = run.widths_final.exists()
    if has_final_widths:
        after = _widths(run.read_json(run.widths_final), str(run.widths_final), keys)
    else:
        after = _widths(records[-1].next_widths, f"{run.records} line {len(records)} ('next_widths')", keys)
    summary = run.read_summary()
    if summary is not None:
        _check_seeds(summary, run.summary)
    return RunData(path=run.path, config=config, records=records, keys=keys,
                   before={k: records[0].widths[k] for k in keys}, after=after,
                   has_final_widths=has_final_widths, summary=summary, finals=run.read_finals())
