"""Markdown and plots of a bench_evidence.py results file (``bench_evidence.py --render``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from bench_evidence import (ARMS, COMPARISONS, DEFAULT_ARMS, FINAL_SETTINGS, PAPER_AFTER, PAPER_BEFORE, RANDOM,
                            SEARCH_SETTINGS, Comparison, compare, format_p, paired, setting)
from netadjust.config import SearchConfig
from netadjust.stats import mean_std
from seeds import parse_seeds, seed_range, seed_text

LABELS = {"uniform": "uniform", "adjusted": "FUR-adjusted", "random": "random-adjusted",
          "uniform_0.64": "uniform 0.64x", "adjusted_0.64": "FUR-adjusted 0.64x",
          "random_0.64": "random-adjusted 0.64x"}


# Each budget's uniform arm, and the FUR-searched and random arms whose widths are compared with it.
SHAPES = (("uniform", "adjusted", "random", "Searched / uniform width per stage"),
          ("uniform_0.64", "adjusted_0.64", "random_0.64",
           "At 0.64x the MACs, searched / uniform 0.64x width per stage"))


def run_arms(settings: dict) -> tuple[str, ...]:
    """The arms a results file holds (files that predate the setting hold the default ones)."""
    return tuple(settings.get("arms", DEFAULT_ARMS))


def _pct(x: float, sign: bool = False) -> str:
    return f"{100 * x:{'+' if sign else ''}.2f}"


def _interval(c: Comparison) -> str:
    """A comparison's 95% interval in points ("-" for one seed)."""
    return f"[{_pct(c.ci[0], True)}, {_pct(c.ci[1], True)}]" if c.ci else "-"


def _wins(c: Comparison) -> str:
    return f"{sum(d > 0 for d in c.diffs)} of {len(c.diffs)}"


def stage_ratios(widths: dict[str, int], uniform: dict[str, int]) -> list[float]:
    """Mean searched / uniform width per stage (keys ``stage{s}.``)."""
    stages = sorted({k.split(".")[0] for k in widths})
    return [sum(widths[k] / uniform[k] for k in widths if k.startswith(st + ".")) /
            sum(1 for k in widths if k.startswith(st + ".")) for st in stages]


def mean_stage_ratios(widths: list[dict[str, int]], uniform: dict[str, int]) -> list[float]:
    """:func:`stage_ratios` of several widths (an arm's seeds) against the uniform ones, averaged."""
    ratios = [stage_ratios(w, uniform) for w in widths]
    return [sum(r[j] for r in ratios) / len(ratios) for j in range(len(ratios[0]))]


def paper_ratios() -> list[float]:
    return [sum(w / before for w in after) / len(after) for before, after in zip(PAPER_BEFORE, PAPER_AFTER)]


def finished(rec: dict, arms, seeds: Sequence[int]) -> bool:
    return all(f"{arm}/{i}" in rec["finals"] for arm in arms for i in seeds)


def arm_results(finals: dict, arm: str, seeds: Sequence[int]) -> tuple[list[float], float]:
    """An arm's test accuracies seed by seed, and its mean MACs."""
    runs = [finals[f"{arm}/{i}"] for i in seeds]
    return [r["test_acc"] for r in runs], sum(r["macs"] for r in runs) / len(seeds)


def family_section(name: str, rec: dict, arms, seeds: Sequence[int]) -> list[str]:
    finals = rec["finals"]
    if not finished(rec, arms, seeds):
        return [f"### {name}", "", "(unfinished: not every arm and seed has its final training)", ""]
    uniform = finals[f"uniform/{seeds[0]}"]  # the same widths for every seed
    lines = [f"### {name}", "", "| arm | MACs (mean) | MACs / uniform | test acc % (mean ± std) | per seed |",
             "|---|---:|---:|---:|---|"]
    for arm in arms:
        accs, macs = arm_results(finals, arm, seeds)
        m, sd = mean_std(accs)
        lines.append(f"| {LABELS[arm]} | {macs:,.0f} | {macs / uniform['macs']:.3f} | {_pct(m)} ± {_pct(sd)} | "
                     f"{', '.join(_pct(a) for a in accs)} |")
    lines += ["", "| paired difference (seed by seed) | mean (points) | 95% CI | per seed | wins | p (paired t) |",
              "|---|---:|---|---|---:|---:|"]
    for c in compare(finals, arms, seeds):
        lines.append(f"| {LABELS[c.a]} - {LABELS[c.b]} | {_pct(c.gain, True)} | {_interval(c)} | "
                     f"{', '.join(_pct(d, True) for d in c.diffs)} | {_wins(c)} | {format_p(c.p)} |")
    if rec.get("plateau"):
        final_epochs = len(finals["uniform/0"]["train_loss"])
        points = sorted([(int(e), v["test_acc"]) for e, v in rec["plateau"].items()] +
                        [(final_epochs, finals["uniform/0"]["test_acc"])])
        lines += ["", "Uniform widths, seed 0, test accuracy against the length of the final training: "
                  + ", ".join(f"{e} epochs {_pct(acc)}%" for e, acc in points) + "."]
    lines.append("")
    for base, searched, control, text in SHAPES:
        shapes = []
        for arm in (a for a in (searched, control) if a in arms):
            ratios = mean_stage_ratios([finals[f"{arm}/{i}"]["widths"] for i in seeds],
                                       finals[f"{base}/{seeds[0]}"]["widths"])  # the same for every seed
            shapes.append(f"{LABELS[arm]}: " + ", ".join(f"stage {j + 1} {r:.2f}" for j, r in enumerate(ratios)))
        if shapes:
            lines.append(f"{text} (mean over seeds): {'; '.join(shapes)}.")
    secs = [v["seconds"] for v in rec["searches"].values()]
    final_secs = [v["seconds"] for v in finals.values()]
    reused = sum("reused_from" in v for v in finals.values())
    start = f"Search time: {sum(secs) / len(secs):.0f} s per search on average; final" if secs else "Final"
    lines += [f"{start} trainings {min(final_secs):.0f}-{max(final_secs):.0f} s each; "
              f"this run took {rec.get('seconds', 0) / 60:.1f} min"
              + (f" ({reused} of its {len(finals)} final trainings taken from earlier runs, with their times)."
                 if reused else "."), ""]
    return lines


def plots(data: dict, folder: Path, stem: str) -> list[str]:
    """Two figures named after the results file (``results_evidence_gpu.json`` gives ``evidence_gpu_*.png``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    seeds, arms = seed_range(data["settings"]["seeds"]), run_arms(data["settings"])
    fams = [(n, r) for n, r in data["families"].items() if finished(r, arms, seeds)]
    if not fams:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(4.5 * len(fams), 4), layout="constrained")
    for j, (name, rec) in enumerate(fams):
        ax = fig.add_subplot(1, len(fams), j + 1)
        spots = []
        for arm in arms:
            marker = "osD^vP"[ARMS.index(arm)]
            accs, macs = arm_results(rec["finals"], arm, seeds)
            m, sd = mean_std([100 * a for a in accs])
            spots.append(macs / 1e6)
            ax.errorbar(spots[-1:], [m], yerr=[sd], marker=marker, capsize=4, linestyle="none", label=LABELS[arm])
        # Arms at equal MACs sit within 1% of each other: pad the axis to at least 4% of the largest so
        # its ticks stay few and readable.
        pad = max(0.04 * max(spots), 0.1 * (max(spots) - min(spots)))
        ax.set_xlim(min(spots) - pad, max(spots) + pad)
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
        ax.set_title(name)
        ax.set_xlabel("MACs (M)")
        ax.set_ylabel("test accuracy (%), mean ± std over seeds")
        ax.grid(alpha=0.3)
        if j == 0:
            ax.legend(fontsize=7)
    names = [f"{stem}_accuracy_vs_macs.png"]
    FigureCanvasAgg(fig)
    fig.savefig(folder / names[0], dpi=110, bbox_inches="tight")

    fig = Figure(figsize=(4.5 * (len(fams) + 1), 3.6), layout="constrained")
    for j, (name, rec) in enumerate(fams):
        ax = fig.add_subplot(1, len(fams) + 1, j + 1)
        # The 1.0x searches against the uniform widths; in a run without them (--skip-adjusted), the 0.64x ones.
        base, searched, control, _ = next((shape for shape in SHAPES if shape[1] in arms), SHAPES[0])
        uniform = rec["finals"][f"{base}/{seeds[0]}"]["widths"]
        keys = list(uniform)
        if searched in arms:
            for i in seeds:
                w = rec["finals"][f"{searched}/{i}"]["widths"]
                ax.plot(range(len(keys)), [w[k] / uniform[k] for k in keys], marker=".", alpha=0.6, label=f"seed {i}")
        if control in arms:
            mean = [sum(rec["finals"][f"{control}/{i}"]["widths"][k] for i in seeds) / len(seeds) / uniform[k]
                    for k in keys]
            ax.plot(range(len(keys)), mean, color="black", linestyle="--", label=f"{LABELS[control]}, mean")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([k.replace("stage", "s").replace(".block", ".b").replace(".conv", ".c") for k in keys],
                           rotation=90, fontsize=6)
        ax.set_ylabel(f"searched / {LABELS[base]} width")
        ax.set_title(f"{name}: widths FUR found")
        if j == 0:
            ax.legend(fontsize=6)
    ax = fig.add_subplot(1, len(fams) + 1, len(fams) + 1)
    flat = [(s, w / PAPER_BEFORE[s]) for s, after in enumerate(PAPER_AFTER) for w in after]
    ax.plot(range(len(flat)), [r for _, r in flat], marker="o", color="tab:red")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(flat)))
    ax.set_xticklabels([f"l{s + 1}.b{k // 2}.c{k % 2 + 1}" for s, after in enumerate(PAPER_AFTER)
                        for k in range(len(after))], rotation=90, fontsize=6)
    ax.set_title("paper, ResNet-18 0.8x, ImageNet (Fig. 4)")
    names.append(f"{stem}_widths.png")
    FigureCanvasAgg(fig)
    fig.savefig(folder / names[1], dpi=110, bbox_inches="tight")
    return names


# How the random control drew its scores (bench_evidence.py's "random_draws" setting; absent before 2026-12-02).
RANDOM_DRAWS = {
    "per seed": "the widths of a `--guide random` search, every (seed, round) pair drawing with a seed of its "
                "own (`search.round_seed`; computed without training)",
    "seed + round": "`--guide random` searches whose round t drew with seed s + t, so that consecutive seeds "
                    "shared most of their draws (before 2026-12-02; see the reading)",
}


def warm_epochs(round_epochs: int) -> int:
    """Training epochs of a warm-started round after the first, as the searches ran them (the library's default)."""
    return SearchConfig.from_dict({"epochs": round_epochs}).warm_epochs_or_default()


def render(path: Path, plot_folder: Path | None = None) -> str:
    data = json.loads(path.read_text())
    s = data["settings"]
    rounds = (f"rounds after the first warm-started, {warm_epochs(s['epochs'])} epochs each" if s.get("warm_start")
              else "every round from scratch")
    searches_from = (f"; those `{s['searches_from']}` had recorded were taken from there, with their search times"
                     if s.get("searches_from") else "")
    finals_from = (f"; those whose widths `{s['finals_from']}` had already trained were taken from there "
                   "(per seed: same widths, same settings)" if s.get("finals_from") else "")
    seeds, arms = seed_range(s["seeds"]), run_arms(s)
    lines = ["# Evidence: FUR-adjusted widths against uniform and random ones at equal MACs", "",
             f"- mode `{s['mode']}`; device: {data['device']}; torch {data['torch']}; "
             f"{data['started']} to {data.get('updated', '?')}",
             f"- command: `{data['command']}`",
             f"- data: {s['dataset']}, training subset {s['train_subset'] or 'all'}, held-out fraction "
             f"{s['heldout_fraction']} (for FUR; final trainings use train + held-out), test = the official test set",
             f"- families {', '.join(s['families'])} at width multiplier {s['width_mult']}; seeds {seed_text(seeds)}; "
             f"arms {', '.join(LABELS[a] for a in arms)}",
             f"- searches: {s['rounds']} rounds x {s['epochs']} epochs ({rounds}), FUR repeats {s['repeats']}, "
             + (f"min width {s['min_width']} (`--min-width`; it also floors the random control and the uniform 0.64x "
                "widths), " if "min_width" in s else "")
             + f"the method's other defaults (k 6, k decay 0.5, arch lr 0.15, base drop rate 0.05, 1% "
             f"tolerance){searches_from}",
             f"- final trainings: {s['final_epochs']} epochs, the library's recipe (SGD 0.9, lr 0.15 cosine, wd 3e-4, "
             f"batch 128, channel-dropout regulariser 0.05){finals_from}"]
    if set(RANDOM) & set(arms):
        lines.append(f"- random-adjusted: {RANDOM_DRAWS[s.get('random_draws', 'seed + round')]}")
    lines.append("")
    for name, rec in data["families"].items():
        lines += family_section(name, rec, arms, seeds)
    paper = paper_ratios()
    lines += ["The paper's ResNet-18 0.8x on ImageNet (Figure 4), searched / original width per stage: "
              + ", ".join(f"stage {j + 1}: {r:.2f}" for j, r in enumerate(paper)) + ".", ""]
    if plot_folder is not None:
        for name in plots(data, plot_folder, path.stem.removeprefix("results_")):
            lines += [f"![{name}](plots/{name})", ""]
    return "\n".join(lines)


def _plan_row(folder: Path, test: dict, loaded: dict[Path, dict]) -> str:
    """One row of :func:`planned_tests`, its figures computed from the results file the test names (read once
    into ``loaded`` for all the rows that name it). A test ``against`` a second file subtracts its second arm's
    finals in that file, the settings in which the two differ named in the comparison."""
    where = f"{test.get('plan', '?')} ({test.get('file')}, {test.get('family')}, seeds {test.get('seeds')})"
    a, b = test["comparison"]
    if "against" in test:
        if a not in ARMS or b not in ARMS:
            raise SystemExit(f"planned test {where}: comparison {a} - {b}: the arms are {', '.join(ARMS)}")
    elif (a, b) not in COMPARISONS:
        raise SystemExit(f"planned test {where}: comparison {a} - {b} is none of "
                         f"{', '.join(f'{x} - {y}' for x, y in COMPARISONS)}")
    try:
        seeds = seed_range(parse_seeds(test["seeds"]))
    except argparse.ArgumentTypeError as e:
        raise SystemExit(f"planned test {where}: seeds {e}") from None
    finals, settings, missing = [], {}, {}
    for arm, key in ((a, "file"), (b, "against" if "against" in test else "file")):
        path = folder / test[key]
        if not path.exists():
            raise SystemExit(f"planned test {where}: {path} does not exist")
        if path not in loaded:
            loaded[path] = json.loads(path.read_text())
        finals.append(loaded[path]["families"].get(test["family"], {}).get("finals", {}))
        settings[key] = loaded[path]["settings"]
        missing.setdefault(path.name, []).extend(f"{arm}/{i}" for i in seeds if f"{arm}/{i}" not in finals[-1])
    if any(missing.values()):
        raise SystemExit(f"planned test {where}: " + "; ".join(f"{name} has no final training of {', '.join(keys)}"
                                                               for name, keys in missing.items() if keys))
    s = settings["file"]
    c = paired(a, b, *(arm_results(f, arm, seeds)[0] for f, arm in zip(finals, (a, b))))
    ci = _interval(c)
    if c.ci and (c.ci[0] > 0 or c.ci[1] < 0):
        ci = f"**{ci}**"
    comparison = f"{LABELS[a]} - {LABELS[b]}"
    if "against" in test:
        changed = changed_settings(settings["against"], s)
        comparison += (" at " + ", ".join(f"{k} {old}" for k, old, _ in changed) if changed
                       else f" of {test['against']}")
    draws = ("-" if not set(RANDOM) & {a, b} else
             "independent" if s.get("random_draws") == "per seed" else "shared")
    search = (f"{s['rounds']} rounds: {s['epochs']} epochs, then {warm_epochs(s['epochs'])} warm-started"
              if setting(s, "warm_start") else f"{s['rounds']} rounds x {s['epochs']} epochs")
    if "min_width" in s:  # only where a run set it
        search += f", min width {s['min_width']}"
    return (f"| {test['plan']} | {test['family']} | x{s['width_mult']} | {s['train_subset'] or 'all'} | {search} | "
            f"{s['final_epochs']} | {seed_text(seeds)} | {comparison} | {draws} | {test['role']} | "
            f"{_pct(c.gain, True)} | {ci} | {_wins(c)} | {format_p(c.p)} |")


def planned_tests(path: Path) -> str:
    """The markdown table of the tests a ledger (``bench/evidence_plans.json``) lists, each fixed in a plan's commit
    before its results: every figure is computed from the results file it names, beside the ledger."""
    tests = json.loads(path.read_text())["tests"]
    lines = ["| plan (commit) | family | width | training images | search | final epochs | seeds | "
             "comparison | random control's draws | role in the plan | mean (points) | 95% CI | wins | p (paired t) |",
             "|---|---|---:|---:|---|---:|---|---|---|---|---:|---|---:|---:|"]
    loaded: dict[Path, dict] = {}
    lines += [_plan_row(path.parent, test, loaded) for test in tests]
    return "\n".join(lines)


def longer_finals(short: Path, long: Path) -> str:
    """What longer finals changed, seed by seed: every paired difference and every arm's accuracy of results
    file ``long`` against the finals of the same seeds and widths in ``short`` (refused where a seed is missing
    there or its widths differ)."""
    shorter, longer = (json.loads(p.read_text()) for p in (short, long))
    epochs = shorter["settings"]["final_epochs"], longer["settings"]["final_epochs"]
    seeds = seed_range(longer["settings"]["seeds"])
    lines = [f"| family | seeds {seed_text(seeds)} | {epochs[0]} epochs | {epochs[1]} epochs | "
             "change (points) | 95% CI | seeds up | p (paired t) |", "|---|---|---:|---:|---:|---|---:|---:|"]
    for family, rec in longer["families"].items():
        was, now = shorter["families"].get(family, {}).get("finals", {}), rec["finals"]
        arms = [arm for arm in ARMS if f"{arm}/{seeds[0]}" in now]
        for key in (f"{arm}/{i}" for arm in arms for i in seeds):
            if key not in was:
                raise SystemExit(f"{short.name} has no {family} final {key} to compare with {long.name}'s")
            if was[key]["widths"] != now[key]["widths"]:
                raise SystemExit(f"{family} final {key}: {short.name} and {long.name} trained different widths")
        rows = [(f"{LABELS[c.a]} - {LABELS[c.b]}", _pct(c.gain, True), _pct(d.gain, True),
                 paired(c.a, c.b, d.diffs, c.diffs))
                for c, d in zip(compare(was, arms, seeds), compare(now, arms, seeds))]
        for arm in arms:
            before, after = ([f[f"{arm}/{i}"]["test_acc"] for i in seeds] for f in (was, now))
            rows.append((f"{LABELS[arm]} (test acc %)", _pct(sum(before) / len(seeds)),
                         _pct(sum(after) / len(seeds)), paired(arm, arm, after, before)))
        lines += [f"| {family} | {name} | {before} | {after} | {_pct(c.gain, True)} | {_interval(c)} | {_wins(c)} | "
                  f"{format_p(c.p)} |" for name, before, after, c in rows]
    return "\n".join(lines)


def changed_settings(old: dict, new: dict) -> list[tuple[str, object, object]]:
    """The search and final settings (name, ``old``'s value, ``new``'s) in which two results files' settings differ;
    a setting a file predates counts as the value its run used (:func:`bench_evidence.setting`)."""
    keys = dict.fromkeys(SEARCH_SETTINGS + FINAL_SETTINGS)
    return [(k.replace("_", " "), setting(old, k), setting(new, k)) for k in keys if setting(old, k) != setting(new, k)]


def across(old: Path, new: Path, seeds: Sequence[int] | None = None) -> str:
    """Each arm's final trainings in results file ``new`` minus the same arm's in ``old``, paired seed by seed over
    the seeds both trained it on (those of ``seeds`` where given): what a setting changed between two runs (such as
    ``--min-width``) did to each arm, the settings that differ stated above the table."""
    before, after = (json.loads(p.read_text()) for p in (old, new))
    changed = changed_settings(before["settings"], after["settings"])
    lines = [f"OLD {old.name}, NEW {new.name}: "
             + ("; ".join(f"{k} {a} in OLD, {b} in NEW" for k, a, b in changed) if changed
                else "the same search and final settings") + ".", "",
             "| family | arm | seeds | OLD test acc % (mean) | NEW | NEW - OLD (points) | 95% CI | per seed | wins | "
             "p (paired t) |", "|---|---|---|---:|---:|---:|---|---|---:|---:|"]
    header = len(lines)
    for family, rec in after["families"].items():
        was, now = before["families"].get(family, {}).get("finals", {}), rec["finals"]
        for arm in ARMS:
            trained = sorted(int(key.split("/")[1]) for key in now if key.split("/")[0] == arm and key in was)
            common = [i for i in trained if seeds is None or i in seeds]
            if not common:
                continue
            xs, ys = (arm_results(finals, arm, common)[0] for finals in (now, was))
            c = paired(arm, arm, xs, ys)
            lines.append(f"| {family} | {LABELS[arm]} | {seed_text(common)} | {_pct(mean_std(ys)[0])} | "
                         f"{_pct(mean_std(xs)[0])} | {_pct(c.gain, True)} | {_interval(c)} | "
                         f"{', '.join(_pct(d, True) for d in c.diffs)} | {_wins(c)} | {format_p(c.p)} |")
    if len(lines) == header:
        raise SystemExit(f"{old.name} and {new.name} hold no final training of the same family, arm and seed"
                         + (f" among seeds {seed_text(seeds)}" if seeds is not None else ""))
    return "\n".join(lines)
