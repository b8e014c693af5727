"""Reports: plots and a markdown summary of one run directory.

``write_report(RUN_DIR)`` reads only the run directory (see rundir.py) and writes, by default
into ``RUN_DIR/report``::

    widths.png          widths per layer before (round 0) and after the search (paper's Fig. 4)
    widths_rounds.png   widths per layer (x) across rounds (y), final widths as the last row
    fur.png             FUR per layer per round: heat map with the moves, and +-1 stderr lines
    progress.png        held-out / test accuracy and MACs per round, with the MACs target
    report.md           settings, per-round table, widths table, final comparison, the images

An unfinished run (fewer records than ``rounds``, no summary yet) is reported as far as it
got; its "after" widths are the latest adjustment (the last record's ``next_widths``). A final
comparison over several seeds is shown per seed, as mean ± std, and as the paired difference
with its 95% confidence interval.

The package: ``run`` reads and checks the run directory into a ``RunData``, ``plots`` draws
the figures (matplotlib, imported only there, without pyplot, so rendering is headless and
leaves the caller's backend alone; ``pip install 'netadjust[report]'``), ``markdown`` writes
the text.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import ConfigError
from ..io import write_bytes_atomic
from .markdown import markdown
from .plots import IMAGES, PLOTS, png, require_matplotlib
from .run import RunData, load_run

__all__ = ["IMAGES", "RunData", "load_run", "write_report"]

log = logging.getLogger(__name__)


def _check_out(out: Path) -> None:
    """Refuse an output directory that is a file (or lies under one) before anything is drawn."""
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            where = f"{out} is a file" if parent == out else f"{out}: {parent} is a file"
            raise ConfigError(f"report directory {where}; choose another --out")


def write_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Write the plots and report.md for ``run_dir`` into ``out_dir`` (default RUN_DIR/report).

    Returns the path of report.md. Each file is written atomically.
    """
    data = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else data.path / "report"
    _check_out(out)
    require_matplotlib()
    for name, plot in PLOTS.items():
        write_bytes_atomic(out / name, png(plot(data)))
        log.debug("report: wrote %s", out / name)
    path = out / "report.md"
    write_bytes_atomic(path, markdown(data).encode())
    log.info("report: %s (%d rounds, %s)", path, len(data.records), "finished" if data.finished else "unfinished")
    return path
