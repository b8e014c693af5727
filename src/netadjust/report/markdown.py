"""The text of report.md: settings, per-round table, widths table and the final comparison.

:func:`markdown` turns a :class:`~netadjust.report.run.RunData` into markdown that refers to
the figures by their file names beside report.md. With two or more final seeds the comparison
shows each seed, the mean ± std of both arms and the paired difference with its 95% CI.
"""

from __future__ import annotations

import math
from typing import Any

from ..records import RoundRecord, Summary
from ..stats import mean_std, paired_difference
from .plots import IMAGES
from .run import RunData, unit

SETTINGS = (  # (label, config key) shown when present
    ("width multiplier", "width_mult"), ("residual", "residual"), ("data directory", "data_dir"),
    ("held-out fraction", "heldout_fraction"), ("train subset", "train_subset"), ("k", "k"),
    ("k decay", "k_decay"), ("arch lr", "arch_lr"), ("arch lr decay", "arch_lr_decay"),
    ("min width", "min_width"), ("base drop rate", "base_drop_rate"), ("FUR repeats", "repeats"),
    ("FUR mode", "fur_mode"), ("budget (x original MACs)", "budget"), ("tolerance", "tolerance"),
    ("multiple of", "multiple_of"), ("epochs per round", "epochs"), ("batch size", "batch_size"),
    ("lr", "lr"), ("weight decay", "weight_decay"), ("final epochs", "final_epochs"), ("seed", "seed"),
)


# -- formatting ------------------------------------------------------------------------------
def _num(value: Any, div: float = 1.0, digits: int = 3, sign: bool = False) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return "-"
    return f"{value / div:{'+' if sign else ''}.{digits}f}"


def _pct(value: Any, sign: bool = False) -> str:
    return _num(value * 100 if isinstance(value, (int, float)) else None, digits=2, sign=sign)


def _count(value: Any, sign: bool = False) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    div, suffix = unit(value)
    return _num(value, div, sign=sign) + suffix


def _moves(rec: RoundRecord) -> tuple[list[str], list[str]]:
    return [k for k, d in rec.moves.items() if d > 0], [k for k, d in rec.moves.items() if d < 0]


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(row) + " |" for row in (header, rule, *rows)]


# -- sections --------------------------------------------------------------------------------
def _status(data: RunData) -> str:
    done, planned = len(data.records), data.rounds_planned
    of = f"{done} of {planned}" if planned is not None else str(done)
    if data.finished:
        return f"finished ({of} rounds)."
    if not data.search_done:
        return (f"**unfinished**: {of} rounds recorded; the 'after' widths are the latest adjustment "
                f"(after round {data.records[-1].round}), not the final widths.")
    return f"**unfinished**: the search is done ({of} rounds) but summary.json is missing (final comparison pending)."


def markdown(data: RunData) -> str:
    """The report text; images are referenced by their names beside report.md."""
    cfg, recs, summary = data.config, data.records, data.summary
    arch = cfg.get("arch", summary.arch.get("arch", "?") if summary is not None else "?")
    dataset = cfg.get("dataset", summary.dataset if summary is not None else "?")
    mdiv, msuf = unit(max(r.macs for r in recs))
    pdiv, psuf = unit(max(r.params for r in recs))
    target = data.macs_target
    out = [f"# Network Adjustment report: {arch} on {dataset}", "",
           f"Run directory: `{data.path}`", "", f"Status: {_status(data)}", "",
           f"![{IMAGES['progress.png']}](progress.png)", "", "## Setup", ""]
    rows = [["architecture", str(arch)], ["data set", str(dataset)],
            ["searchable layers", str(len(data.keys))],
            ["rounds", f"{len(recs)} done of {data.rounds_planned if data.rounds_planned is not None else '?'}"],
            ["MACs target", f"{_num(target, mdiv)}{msuf}" + ("" if summary is not None else " (round 0's MACs)")
             + (" (not held: the budget was latency, see Latency)" if data.config.get("budget_metric") == "latency"
                else "")]]
    rows += [[label, str(cfg[key])] for label, key in SETTINGS if cfg.get(key) is not None]
    if summary is not None and summary.arch:
        rows.append(["arch settings", ", ".join(f"{k}={v}" for k, v in summary.arch.items() if k != "arch")])
    rows.append(["search time", f"{sum(r.seconds for r in recs):.1f} s"])
    out += _table(["setting", "value"], rows, "ll") + ["", "## Rounds", "",
              "Round `t` trains the widths of `t` (round 0: the starting widths), estimates FUR on the "
              "held-out split, and adjusts: widened/narrowed count the layers that adjustment moved (the steps "
              "listed below come before the uniform rescale back to the MACs budget).", ""]
    header = ["round", f"MACs ({msuf})", f"params ({psuf})", "held-out acc (%)", "test acc (%)", "train s", "FUR s",
              "widened", "narrowed", f"next MACs ({msuf})"]
    rows = []
    for r in recs:
        up, down = _moves(r)
        rows.append([str(r.round), _num(r.macs, mdiv), _num(r.params, pdiv), _pct(r.heldout_acc), _pct(r.test_acc),
                     _num(r.train_seconds, digits=1), _num(r.fur_seconds, digits=1), str(len(up)), str(len(down)),
                     _num(r.next_macs, mdiv)])
    out += _table(header, rows) + [""]
    for r in recs:
        if r.moves:
            out.append(f"- round {r.round}: " + ", ".join(f"{k} {d:+d}" for k, d in r.moves.items()))
    out += ["", f"![{IMAGES['fur.png']}](fur.png)", "", f"![{IMAGES['widths_rounds.png']}](widths_rounds.png)", "",
            f"## Widths: round 0 -> {data.after_label}", "", f"![{IMAGES['widths.png']}](widths.png)", ""]
    changes = {k: data.after[k] - data.before[k] for k in data.keys}
    out.append(f"{sum(d > 0 for d in changes.values())} layers widened, {sum(d < 0 for d in changes.values())} "
               f"narrowed, {sum(d == 0 for d in changes.values())} unchanged.")
    out.append("")
    out += _table(["layer", "before", "after", "change"],
                  [[k, str(data.before[k]), str(data.after[k]), f"{changes[k]:+d}" if changes[k] else "0"]
                   for k in data.keys])
    out += ["", *_latency(data), *_comparison(data, mdiv, msuf)]
    return "\n".join(out).rstrip() + "\n"


def _latency(data: RunData) -> list[str]:
    """Latency beside MACs, for a run that measured it (--budget-metric / --fur-cost latency)."""
    lat = data.summary.latency if data.summary is not None else None
    if not lat:
        return []
    target = f"; target {1e3 * lat['target']:.3f} ms" if lat.get("target") is not None else ""
    return ["## Latency", "",
            f"On {lat['device']} at batch {lat['batch']}{target}. *Timed*: measured at the end of the search; "
            f"*predicted*: the lookup table's estimate the budget restore used.", "",
            *_table(["network", "timed (ms)", "predicted (ms)", "prediction error"], [
                [name, f"{1e3 * lat[f'{key}_measured']:.3f}", f"{1e3 * lat[f'{key}_predicted']:.3f}",
                 f"{lat[f'{key}_predicted'] / lat[f'{key}_measured'] - 1:+.1%}"]
                for name, key in (("original", "original"), ("searched", "final"))]), ""]


def _comparison(data: RunData, mdiv: float, msuf: str) -> list[str]:
    s = data.summary
    out = ["## Final comparison", ""]
    if s is None or s.original_test_acc is None or s.searched_test_acc is None:
        out.append("No final comparison: summary.json has no original_test_acc / searched_test_acc "
                   "(run with --final-epochs > 0, or the run is unfinished).")
    else:
        epochs = s.final_epochs if s.final_epochs is not None else data.config.get("final_epochs")
        params_diff = s.params_final - s.params_original
        other = [_num(s.macs_final - s.macs_original, mdiv, sign=True), _count(params_diff, sign=True)]
        original = [_num(s.macs_original, mdiv), _count(s.params_original)]
        searched = [_num(s.macs_final, mdiv), _count(s.params_final)]
        if s.final_seeds is not None and len(s.final_seeds) >= 2:
            out += _seeds_comparison(s, epochs, original, searched, other, msuf)
        else:
            out += [f"Both retrained from scratch with the same schedule ({epochs} epochs) and seed; test split.", ""]
            out += _table(["network", "test acc (%)", f"MACs ({msuf})", "params"], [
                ["original", _pct(s.original_test_acc), *original],
                ["searched", _pct(s.searched_test_acc), *searched],
                ["difference", _pct(s.searched_test_acc - s.original_test_acc, sign=True), *other],
            ])
    if data.finals:
        out += ["", "Final retraining runs (final/*.json):", ""]
        out += _table(["run", "epochs", "test acc (%)", "seconds"],
                      [[name, str(f.epochs), _pct(f.test_acc), _num(f.seconds, digits=1)]
                       for name, f in data.finals.items()])
    return out


def _seeds_comparison(s: Summary, epochs: Any, original: list[str], searched: list[str], other: list[str],
                      msuf: str) -> list[str]:
    """The final comparison over several seeds: per seed, mean ± std, paired difference with its CI."""
    seeds, orig, srch = s.final_seeds or [], s.original_test_accs, s.searched_test_accs
    per_seed = orig is not None and srch is not None
    n = len(seeds)
    out = [f"Both retrained from scratch with the same schedule ({epochs} epochs) on each of {n} seeds "
           f"({', '.join(map(str, seeds))}); test split.", ""]
    gain, ci = s.test_acc_gain, s.test_acc_gain_ci95
    orig_std, srch_std = s.original_test_acc_std, s.searched_test_acc_std
    if per_seed:
        out += _table(["seed", "original test acc (%)", "searched test acc (%)", "difference (points)"],
                      [[str(seed), _pct(o), _pct(v), _pct(v - o, sign=True)] for seed, o, v in zip(seeds, orig, srch)])
        out.append("")
        mean_gain, mean_ci = paired_difference(srch, orig)
        gain = mean_gain if gain is None else gain
        ci = list(mean_ci) if ci is None and mean_ci is not None else ci
        orig_std = mean_std(orig)[1] if orig_std is None else orig_std
        srch_std = mean_std(srch)[1] if srch_std is None else srch_std
    if gain is None:
        gain = s.searched_test_acc - s.original_test_acc

    def spread(mean: float, std: float | None) -> str:
        return _pct(mean) + ("" if std is None else f" ± {_pct(std)}")

    out += _table(["network", "test acc (%, mean ± std)", f"MACs ({msuf})", "params"], [
        ["original", spread(s.original_test_acc, orig_std), *original],
        ["searched", spread(s.searched_test_acc, srch_std), *searched],
        ["difference", _pct(gain, sign=True), *other],
    ])
    interval = "" if ci is None else f", 95% CI [{_pct(ci[0], sign=True)}, {_pct(ci[1], sign=True)}]"
    out += ["", f"searched - original: {_pct(gain, sign=True)} points{interval} over {n} seeds (paired by seed)."]
    return out
