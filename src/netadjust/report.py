"""Reports: plots and a markdown summary of one run directory.

``write_report(RUN_DIR)`` reads only the run directory (see rundir.py) and writes, by default
into ``RUN_DIR/report``::

    widths.png          widths per layer before (round 0) and after the search (paper's Fig. 4)
    widths_rounds.png   widths per layer (x) across rounds (y), final widths as the last row
    fur.png             FUR per layer per round: heat map with the moves, and +-1 stderr lines
    progress.png        held-out / test accuracy and MACs per round, with the MACs target
    report.md           settings, per-round table, widths table, final comparison, the images

An unfinished run (fewer records than ``rounds``, no summary yet) is reported as far as it
got; its "after" widths are the latest adjustment (the last record's ``next_widths``).
matplotlib is imported only here (``pip install 'netadjust[report]'``) and is used without
pyplot, so rendering is headless and leaves the caller's backend alone.
"""

from __future__ import annotations

import io
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io import write_bytes_atomic
from .rundir import RunDir

log = logging.getLogger(__name__)

IMAGES = {
    "progress.png": "accuracy and MACs per round",
    "widths.png": "widths before and after the search",
    "widths_rounds.png": "widths per layer across rounds",
    "fur.png": "FUR per layer per round",
}
DPI = 110
WIDENED, NARROWED, KEPT = "#d62728", "#1f77b4", "#b0b0b0"


# -- reading ---------------------------------------------------------------------------------
@dataclass
class RunData:
    """Everything a report shows, read from one run directory."""

    path: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]
    keys: list[str]  # searchable layers, in forward order
    before: dict[str, int]  # round 0 widths
    after: dict[str, int]  # widths_final.json, or the latest next_widths of an unfinished run
    has_final_widths: bool
    summary: dict[str, Any] | None
    finals: list[dict[str, Any]] = field(default_factory=list)  # final/*.json, each with "name"

    @property
    def rounds_planned(self) -> int | None:
        rounds = self.config.get("rounds")
        return rounds if isinstance(rounds, int) else None

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
        if self.summary and isinstance(self.summary.get("macs_target"), (int, float)):
            return float(self.summary["macs_target"])
        return float(self.records[0]["macs"])

    @property
    def after_label(self) -> str:
        return "final" if self.has_final_widths else f"next (after round {self.records[-1]['round']})"


def _read_object(run: RunDir, path: Path) -> dict[str, Any]:
    data = run.read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is corrupt: expected a JSON object, got {type(data).__name__}")
    return data


def _widths(value: Any, where: str, keys: list[str] | None) -> dict[str, int]:
    ok = isinstance(value, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values())
    if not ok or (keys is not None and sorted(value) != sorted(keys)):
        expected = "" if keys is None else f" with the {len(keys)} layer keys of round 0"
        raise ConfigError(f"{where} is corrupt: expected a mapping of layer key -> channels{expected}")
    return {k: value[k] for k in (keys or value)}


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read and check a run directory; a missing or corrupt file raises a ConfigError naming it."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise ConfigError(f"run directory {run.path} does not exist (expected the --out of a search)")
    config = _read_object(run, run.config)
    records = run.read_records()
    if not records:
        raise ConfigError(f"{run.records} holds no completed round yet: nothing to report")
    keys: list[str] | None = None
    for n, rec in enumerate(records, 1):
        if not isinstance(rec, dict) or not isinstance(rec.get("macs"), (int, float)):
            raise ConfigError(f"{run.records} line {n} is corrupt: a round record needs 'widths' and 'macs'")
        rec["widths"] = _widths(rec.get("widths"), f"{run.records} line {n} ('widths')", keys)
        keys = list(rec["widths"])
    assert keys is not None
    if run.widths_final.exists():
        after = _widths(run.read_json(run.widths_final), str(run.widths_final), keys)
    else:
        after = _widths(records[-1].get("next_widths", records[-1]["widths"]),
                        f"{run.records} line {len(records)} ('next_widths')", keys)
    summary = _read_object(run, run.summary) if run.summary.exists() else None
    finals = []
    for path in sorted(run.final.glob("*.json")) if run.final.is_dir() else []:
        finals.append({"name": path.stem, **_read_object(run, path)})
    return RunData(run.path, config, records, keys, dict(records[0]["widths"]), after,
                   run.widths_final.exists(), summary, finals)


# -- formatting ------------------------------------------------------------------------------
def unit(value: float) -> tuple[float, str]:
    """(divisor, suffix) to show counts like ``value``: G, M, K or none."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return div, suffix
    return 1.0, ""


def _num(value: Any, div: float = 1.0, digits: int = 3, sign: bool = False) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return "-"
    return f"{value / div:{'+' if sign else ''}.{digits}f}"


def _pct(value: Any, sign: bool = False) -> str:
    return _num(value * 100 if isinstance(value, (int, float)) else None, digits=2, sign=sign)


def _moves(rec: dict[str, Any]) -> tuple[list[str], list[str]]:
    moves = rec.get("moves") or {}
    return [k for k, d in moves.items() if d > 0], [k for k, d in moves.items() if d < 0]


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(row) + " |" for row in (header, rule, *rows)]


# -- plots -----------------------------------------------------------------------------------
def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("reports need matplotlib: pip install 'netadjust[report]'") from None
    return matplotlib


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _layer_width(n: int) -> float:
    """Figure width in inches for ``n`` layers on the x axis (rotated labels)."""
    return min(max(2.0 + 0.38 * n, 7.0), 40.0)


def _layer_axis(ax, keys: list[str]) -> None:
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=90, fontsize=7)
    ax.set_xlim(-0.5, len(keys) - 0.5)


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def plot_widths(data: RunData):
    """Paper's Figure 4: original widths as bars, the change on top (red widened, blue narrowed)."""
    keys, x = data.keys, range(len(data.keys))
    before = [data.before[k] for k in keys]
    after = [data.after[k] for k in keys]
    fig = _figure(_layer_width(len(keys)), 4.5)
    ax = fig.add_subplot()
    ax.bar(x, [min(b, a) for b, a in zip(before, after)], color=KEPT, label="original (kept)")
    ax.bar(x, [max(a - b, 0) for b, a in zip(before, after)], bottom=before, color=WIDENED, label="widened")
    ax.bar(x, [max(b - a, 0) for b, a in zip(before, after)], bottom=after, color=NARROWED, alpha=0.85,
           hatch="//", edgecolor="white", linewidth=0, label="narrowed (removed)")
    _layer_axis(ax, keys)
    ax.set_ylabel("channels")
    ax.set_title(f"widths: round 0 → {data.after_label}")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def _heat(fig, ax, values, keys: list[str], rows: list[str], *, cmap: str, norm=None, label: str,
          fmt: str | None = None, cax=None):
    import numpy as np

    arr = np.ma.masked_invalid(np.asarray(values, dtype=float))
    im = ax.imshow(arr, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    _layer_axis(ax, keys)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    if cax is None:
        fig.colorbar(im, ax=ax, label=label, pad=0.01)
    else:
        fig.colorbar(im, cax=cax, label=label)
    if fmt and len(keys) <= 60 and len(keys) * len(rows) <= 1200:
        for (i, j), v in np.ndenumerate(arr.filled(np.nan)):
            if not math.isnan(v):
                r, g, b, _ = im.cmap(im.norm(v))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")
    return im


def plot_widths_rounds(data: RunData):
    """Heat map of widths: layers on x, rounds on y (round 0 on top), the final widths last."""
    rows = [[rec["widths"][k] for k in data.keys] for rec in data.records] + [[data.after[k] for k in data.keys]]
    labels = [f"round {rec['round']}" for rec in data.records] + [data.after_label.split(" (")[0]]
    fig = _figure(_layer_width(len(data.keys)), 1.6 + 0.32 * len(rows))
    ax = fig.add_subplot()
    _heat(fig, ax, rows, data.keys, labels, cmap="viridis", label="channels", fmt=".0f")
    ax.axhline(len(rows) - 1.5, color="white", linewidth=2)
    ax.set_title("widths per layer across rounds")
    return fig


def plot_fur(data: RunData):
    """FUR per layer and round: heat map marking the moves it caused, and lines with +-1 stderr."""
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm

    keys, recs = data.keys, data.records
    fur = [[(rec.get("fur") or {}).get(k, math.nan) for k in keys] for rec in recs]
    finite = [abs(v) for row in fur for v in row if isinstance(v, (int, float)) and math.isfinite(v)]
    span = max(finite, default=0.0) or 1.0
    heat_h = 0.8 + 0.3 * len(recs)
    fig = _figure(_layer_width(len(keys)), heat_h + 5.0)
    grid = fig.add_gridspec(2, 2, width_ratios=[50, 1], height_ratios=[heat_h, 3.2], hspace=0.25, wspace=0.02)
    top, cax, bottom = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 0])
    _heat(fig, top, fur, keys, [f"round {rec['round']}" for rec in recs], cmap="RdBu_r",
          norm=TwoSlopeNorm(0.0, -span, span), label="FUR", cax=cax)
    for sign, marker, name in ((1, "^", "widened by this round's adjustment"),
                               (-1, "v", "narrowed by this round's adjustment")):
        pts = [(keys.index(k), i) for i, rec in enumerate(recs) for k, d in (rec.get("moves") or {}).items()
               if k in keys and d * sign > 0]
        if pts:
            top.scatter(*zip(*pts), marker=marker, s=28, facecolor="none", edgecolor="black", linewidth=1, label=name)
    if any(rec.get("moves") for rec in recs):
        top.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, fontsize=7, frameon=False, borderaxespad=0.2)
    fig.suptitle("FUR per layer per round (loss rise when the layer's channels are dropped)")
    top.tick_params(labelbottom=False)
    cmap = colormaps["viridis"]
    n = len(recs)
    for i, (rec, row) in enumerate(zip(recs, fur)):
        err = [(rec.get("fur_stderr") or {}).get(k, 0.0) for k in keys]
        offset = (i - (n - 1) / 2) * min(0.6 / max(n, 1), 0.12)
        bottom.errorbar([j + offset for j in range(len(keys))], row, yerr=err, color=cmap(i / max(n - 1, 1)),
                        marker="o", markersize=3, linewidth=1, capsize=2, label=f"round {rec['round']}")
    bottom.axhline(0, color="black", linewidth=0.6)
    _layer_axis(bottom, keys)
    bottom.set_ylabel("FUR, ±1 stderr")
    bottom.grid(alpha=0.3)
    if n <= 12:
        bottom.legend(fontsize=7, ncol=min(n, 6), loc="best")
    return fig


def plot_progress(data: RunData):
    """Held-out and test accuracy (left) and MACs (right) per round; the MACs target dashed."""
    recs = data.records
    rounds = [rec["round"] for rec in recs]
    target = data.macs_target
    div, suffix = unit(target)
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    for key, name, style in (("heldout_acc", "held-out accuracy", "o-"), ("test_acc", "test accuracy", "s-")):
        pts = [(r, 100 * rec[key]) for r, rec in zip(rounds, recs) if isinstance(rec.get(key), (int, float))]
        if pts:
            ax.plot(*zip(*pts), style, label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    right = ax.twinx()
    # MACs of the widths each round trained, then of the widths the last adjustment produced.
    xs, macs = list(rounds), [rec["macs"] / div for rec in recs]
    if isinstance(recs[-1].get("next_macs"), (int, float)):
        xs.append(rounds[-1] + 1)
        macs.append(recs[-1]["next_macs"] / div)
    right.plot(xs, macs, "d-", color="tab:green", alpha=0.8, label=f"MACs ({suffix})" if suffix else "MACs")
    right.axhline(target / div, color="tab:green", linestyle="--", linewidth=1, label="MACs target")
    tol = data.config.get("tolerance")
    if isinstance(tol, (int, float)) and tol > 0:
        right.axhspan(target / div * (1 - tol), target / div * (1 + tol), color="tab:green", alpha=0.08,
                      label=f"target ±{100 * tol:g}%")
    right.set_ylabel(f"MACs ({suffix})" if suffix else "MACs")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in rounds] + ([data.after_label.split(" (")[0]] if len(xs) > len(rounds) else []))
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="best")
    ax.set_title("search progress" + ("" if data.finished else " (unfinished)"))
    return fig


PLOTS = {"progress.png": plot_progress, "widths.png": plot_widths, "widths_rounds.png": plot_widths_rounds,
         "fur.png": plot_fur}


# -- markdown --------------------------------------------------------------------------------
SETTINGS = (  # (label, config key) shown when present
    ("width multiplier", "width_mult"), ("residual", "residual"), ("data directory", "data_dir"),
    ("held-out fraction", "heldout_fraction"), ("train subset", "train_subset"), ("k", "k"),
    ("k decay", "k_decay"), ("arch lr", "arch_lr"), ("arch lr decay", "arch_lr_decay"),
    ("min width", "min_width"), ("base drop rate", "base_drop_rate"), ("FUR repeats", "repeats"),
    ("FUR mode", "fur_mode"), ("budget (x original MACs)", "budget"), ("tolerance", "tolerance"),
    ("multiple of", "multiple_of"), ("epochs per round", "epochs"), ("batch size", "batch_size"),
    ("lr", "lr"), ("weight decay", "weight_decay"), ("final epochs", "final_epochs"), ("seed", "seed"),
)


def _status(data: RunData) -> str:
    done, planned = len(data.records), data.rounds_planned
    of = f"{done} of {planned}" if planned is not None else str(done)
    if data.finished:
        return f"finished ({of} rounds)."
    if not data.search_done:
        return (f"**unfinished**: {of} rounds recorded; the 'after' widths are the latest adjustment "
                f"(after round {data.records[-1]['round']}), not the final widths.")
    return f"**unfinished**: the search is done ({of} rounds) but summary.json is missing (final comparison pending)."


def markdown(data: RunData) -> str:
    """The report text; images are referenced by their names beside report.md."""
    cfg, recs, summary = data.config, data.records, data.summary or {}
    arch = cfg.get("arch", (summary.get("arch") or {}).get("arch", "?"))
    dataset = cfg.get("dataset", summary.get("dataset", "?"))
    mdiv, msuf = unit(max(r["macs"] for r in recs))
    params = [r.get("params") for r in recs if isinstance(r.get("params"), (int, float))]
    pdiv, psuf = unit(max(params, default=0))
    target = data.macs_target
    out = [f"# Network Adjustment report: {arch} on {dataset}", "",
           f"Run directory: `{data.path}`", "", f"Status: {_status(data)}", "",
           f"![{IMAGES['progress.png']}](progress.png)", "", "## Setup", ""]
    rows = [["architecture", str(arch)], ["data set", str(dataset)],
            ["searchable layers", str(len(data.keys))],
            ["rounds", f"{len(recs)} done of {data.rounds_planned if data.rounds_planned is not None else '?'}"],
            ["MACs target", f"{_num(target, mdiv)}{msuf}"
             + ("" if summary.get("macs_target") else " (round 0's MACs)")]]
    rows += [[label, str(cfg[key])] for label, key in SETTINGS if cfg.get(key) is not None]
    if summary.get("arch"):
        rows.append(["arch settings", ", ".join(f"{k}={v}" for k, v in summary["arch"].items() if k != "arch")])
    seconds = sum(r.get("seconds", 0.0) for r in recs)
    rows.append(["search time", f"{seconds:.1f} s"])
    out += _table(["setting", "value"], rows, "ll") + ["", "## Rounds", "",
              "Round `t` trains the widths of `t` (round 0: the starting widths), estimates FUR on the "
              "held-out split, and adjusts: widened/narrowed count the layers that adjustment moved (the steps "
              "listed below come before the uniform rescale back to the MACs budget).", ""]
    header = ["round", f"MACs ({msuf})", f"params ({psuf})", "held-out acc (%)", "test acc (%)", "train s", "FUR s",
              "widened", "narrowed", f"next MACs ({msuf})"]
    rows = []
    for r in recs:
        up, down = _moves(r)
        rows.append([str(r["round"]), _num(r["macs"], mdiv), _num(r.get("params"), pdiv), _pct(r.get("heldout_acc")),
                     _pct(r.get("test_acc")), _num(r.get("train_seconds"), digits=1),
                     _num(r.get("fur_seconds"), digits=1), str(len(up)), str(len(down)),
                     _num(r.get("next_macs"), mdiv)])
    out += _table(header, rows) + [""]
    for r in recs:
        moves = r.get("moves") or {}
        if moves:
            text = ", ".join(f"{k} {d:+d}" for k, d in moves.items())
            out.append(f"- round {r['round']}: {text}")
    out += ["", f"![{IMAGES['fur.png']}](fur.png)", "", f"![{IMAGES['widths_rounds.png']}](widths_rounds.png)", "",
            f"## Widths: round 0 -> {data.after_label}", "", f"![{IMAGES['widths.png']}](widths.png)", ""]
    changes = {k: data.after[k] - data.before[k] for k in data.keys}
    out.append(f"{sum(d > 0 for d in changes.values())} layers widened, {sum(d < 0 for d in changes.values())} "
               f"narrowed, {sum(d == 0 for d in changes.values())} unchanged.")
    out.append("")
    out += _table(["layer", "before", "after", "change"],
                  [[k, str(data.before[k]), str(data.after[k]), f"{changes[k]:+d}" if changes[k] else "0"]
                   for k in data.keys])
    out += ["", *_comparison(data, mdiv, msuf)]
    return "\n".join(out).rstrip() + "\n"


def _comparison(data: RunData, mdiv: float, msuf: str) -> list[str]:
    summary = data.summary or {}
    out = ["## Final comparison", ""]
    orig, searched = summary.get("original_test_acc"), summary.get("searched_test_acc")
    if isinstance(orig, (int, float)) and isinstance(searched, (int, float)):
        m_orig = summary.get("macs_original", data.records[0]["macs"])
        m_final = summary.get("macs_final", data.records[-1].get("next_macs"))
        epochs = summary.get("final_epochs", data.config.get("final_epochs"))
        out += [f"Both retrained from scratch with the same schedule ({epochs} epochs) and seed; test split.", ""]
        diff_m = m_final - m_orig if isinstance(m_final, (int, float)) else None
        out += _table(["network", "test acc (%)", f"MACs ({msuf})", "params"], [
            ["original", _pct(orig), _num(m_orig, mdiv), _count(summary.get("params_original"))],
            ["searched", _pct(searched), _num(m_final, mdiv), _count(summary.get("params_final"))],
            ["difference", _pct(searched - orig, sign=True), _num(diff_m, mdiv, sign=True),
             _count(_diff(summary.get("params_final"), summary.get("params_original")), sign=True)],
        ])
    else:
        out.append("No final comparison: summary.json has no original_test_acc / searched_test_acc "
                   "(run with --final-epochs > 0, or the run is unfinished).")
    if data.finals:
        out += ["", "Final retraining runs (final/*.json):", ""]
        out += _table(["run", "epochs", "test acc (%)", "seconds"],
                      [[f["name"], str(f.get("epochs", "-")), _pct(f.get("test_acc")), _num(f.get("seconds"), digits=1)]
                       for f in data.finals])
    return out


def _diff(a: Any, b: Any) -> float | None:
    return a - b if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None


def _count(value: Any, sign: bool = False) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    div, suffix = unit(value)
    return _num(value, div, sign=sign) + suffix


# -- entry point -----------------------------------------------------------------------------
def write_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Write the plots and report.md for ``run_dir`` into ``out_dir`` (default RUN_DIR/report).

    Returns the path of report.md. Each file is written atomically.
    """
    data = load_run(run_dir)
    _matplotlib()
    out = Path(out_dir) if out_dir is not None else data.path / "report"
    for name, plot in PLOTS.items():
        write_bytes_atomic(out / name, _png(plot(data)))
        log.debug("report: wrote %s", out / name)
    path = out / "report.md"
    write_bytes_atomic(path, markdown(data).encode())
    log.info("report: %s (%d rounds, %s)", path, len(data.records), "finished" if data.finished else "unfinished")
    return path
