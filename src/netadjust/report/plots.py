"""The report's four figures, drawn from a :class:`~netadjust.report.run.RunData`.

Each ``plot_*`` function returns a matplotlib :class:`~matplotlib.figure.Figure` (so tests can
read the drawn data back) and :func:`png` renders one. matplotlib is imported only here, only
when a figure is drawn (``pip install 'netadjust[report]'``), and is used without pyplot: the
Agg canvas renders headless and leaves the caller's backend alone.
"""

from __future__ import annotations

import io
import math

from ..errors import ConfigError
from .run import RunData, unit

IMAGES = {  # file name -> what it shows (the alt text in report.md)
    "progress.png": "accuracy and MACs per round",
    "widths.png": "widths before and after the search",
    "widths_rounds.png": "widths per layer across rounds",
    "fur.png": "FUR per layer per round",
}
DPI = 110
WIDENED, NARROWED, KEPT = "#d62728", "#1f77b4", "#b0b0b0"


def require_matplotlib() -> None:
    """Raise a ConfigError naming the extra to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("reports need matplotlib: pip install 'netadjust[report]'") from None


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


def png(fig) -> bytes:
    """``fig`` rendered as PNG bytes (Agg canvas, no pyplot)."""
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
    rows = [[rec.widths[k] for k in data.keys] for rec in data.records] + [[data.after[k] for k in data.keys]]
    labels = [f"round {rec.round}" for rec in data.records] + [data.after_label.split(" (")[0]]
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
    fur = [[rec.fur.get(k, math.nan) for k in keys] for rec in recs]
    finite = [abs(v) for row in fur for v in row if math.isfinite(v)]
    span = max(finite, default=0.0) or 1.0
    heat_h = 0.8 + 0.3 * len(recs)
    fig = _figure(_layer_width(len(keys)), heat_h + 5.0)
    grid = fig.add_gridspec(2, 2, width_ratios=[50, 1], height_ratios=[heat_h, 3.2], hspace=0.25, wspace=0.02)
    top, cax, bottom = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 0])
    _heat(fig, top, fur, keys, [f"round {rec.round}" for rec in recs], cmap="RdBu_r",
          norm=TwoSlopeNorm(0.0, -span, span), label="FUR", cax=cax)
    for sign, marker, name in ((1, "^", "widened by this round's adjustment"),
                               (-1, "v", "narrowed by this round's adjustment")):
        pts = [(keys.index(k), i) for i, rec in enumerate(recs) for k, d in rec.moves.items()
               if k in keys and d * sign > 0]
        if pts:
            top.scatter(*zip(*pts), marker=marker, s=28, facecolor="none", edgecolor="black", linewidth=1, label=name)
    if any(rec.moves for rec in recs):
        top.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, fontsize=7, frameon=False, borderaxespad=0.2)
    fig.suptitle("FUR per layer per round (loss rise when the layer's channels are dropped)")
    top.tick_params(labelbottom=False)
    cmap = colormaps["viridis"]
    n = len(recs)
    for i, (rec, row) in enumerate(zip(recs, fur)):
        err = [rec.fur_stderr.get(k, 0.0) for k in keys]
        offset = (i - (n - 1) / 2) * min(0.6 / max(n, 1), 0.12)
        bottom.errorbar([j + offset for j in range(len(keys))], row, yerr=err, color=cmap(i / max(n - 1, 1)),
                        marker="o", markersize=3, linewidth=1, capsize=2, label=f"round {rec.round}")
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
    rounds = [rec.round for rec in recs]
    target = data.macs_target
    div, suffix = unit(target)
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    for accs, name, style in (([rec.heldout_acc for rec in recs], "held-out accuracy", "o-"),
                              ([rec.test_acc for rec in recs], "test accuracy", "s-")):
        ax.plot(rounds, [100 * a for a in accs], style, label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    right = ax.twinx()
    # MACs of the widths each round trained, then of the widths the last adjustment produced.
    xs = [*rounds, rounds[-1] + 1]
    macs = [rec.macs / div for rec in recs] + [recs[-1].next_macs / div]
    right.plot(xs, macs, "d-", color="tab:green", alpha=0.8, label=f"MACs ({suffix})" if suffix else "MACs")
    right.axhline(target / div, color="tab:green", linestyle="--", linewidth=1, label="MACs target")
    tol = data.config.get("tolerance")
    if isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol > 0:
        right.axhspan(target / div * (1 - tol), target / div * (1 + tol), color="tab:green", alpha=0.08,
                      label=f"target ±{100 * tol:g}%")
    right.set_ylabel(f"MACs ({suffix})" if suffix else "MACs")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in rounds] + [data.after_label.split(" (")[0]])
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="best")
    ax.set_title("search progress" + ("" if data.finished else " (unfinished)"))
    return fig


PLOTS = {"progress.png": plot_progress, "widths.png": plot_widths, "widths_rounds.png": plot_widths_rounds,
         "fur.png": plot_fur}
