"""The random control's widths, computed without training: how its draws shape them under the
rule the searches seed each round with now (``search.round_seed``) and the one used before
2026-12-02 (``seed + round``, which gave seed s in round t + 1 the draws of seed s + 1 in round t).

1. The old rule must give exactly the widths of every random search recorded in
   bench/results_evidence_*.json: those widths then depended on nothing but the draws.
2. For each family (the evidence benchmark's width 0.5, Fashion-MNIST's geometry) and round
   count: the control's searched / uniform width per stage over ``--seeds`` seeds, its mean and
   its standard deviation across seeds, and the standard deviation of the means of blocks of
   ``--block`` consecutive seeds (0..B-1, B..2B-1, ...), as the evidence runs take seeds 0..B-1.
   With independent draws the block sd is about the seed sd / sqrt(B); shared draws make it larger.
3. The mean stage ratios of the seeds the recorded evidence runs used, under both rules.

    python bench/bench_random_control.py --out bench/RESULTS_random_control.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from pathlib import Path

from bench_evidence_report import mean_stage_ratios, stage_ratios
from machine import device_name
from netadjust.config import SearchConfig
from netadjust.models import get_arch
from netadjust.search import random_guided_widths, round_seed

HERE = Path(__file__).resolve().parent
FAMILIES = ("resnet20", "plain20", "pyramidnet20")
ROUNDS = (3, 5, 10)
OLD_RULE = "seed + round (before 2026-12-02)"
RULES = {OLD_RULE: lambda seed, t: seed + t, "round_seed (now)": round_seed}


def arch_of(family: str, width_mult: float = 0.5):
    return get_arch(family, num_classes=10, in_channels=1, input_size=28, width_mult=width_mult)


def paths(family: str, seeds, rounds: int, seed_of, width_mult: float = 0.5) -> list[list[dict[str, int]]]:
    arch = arch_of(family, width_mult)
    return [random_guided_widths(SearchConfig.from_dict({"arch": family, "width_mult": width_mult, "rounds": rounds,
                                                         "seed": seed}), arch, seed_of=seed_of) for seed in seeds]


def recorded_searches() -> list[tuple[str, int, float, dict[int, dict[str, int]], list[str]]]:
    """The random searches of every Fashion-MNIST evidence file, as (family, rounds, width
    multiplier, {seed: widths}, the files that hold exactly those): many files share them."""
    groups: dict[str, tuple] = {}
    for path in sorted(HERE.glob("results_evidence_*.json")):
        data = json.loads(path.read_text())
        s = data["settings"]
        if s["dataset"] != "fashion-mnist":
            continue
        for family, record in data["families"].items():
            widths = {int(k.split("/")[1]): v["widths"] for k, v in record["searches"].items()
                      if k.startswith("random/")}
            if widths:
                key = json.dumps([family, s["rounds"], s["width_mult"], widths], sort_keys=True)
                groups.setdefault(key, (family, s["rounds"], s["width_mult"], widths, []))[-1].append(path.name)
    return list(groups.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=330, help="seeds per family, rule and round count")
    p.add_argument("--block", type=int, default=11, help="consecutive seeds per block (an evidence run's seeds)")
    p.add_argument("--out", default=None, help="markdown file of the results (default: print)")
    args = p.parse_args()
    if args.seeds < 2 * args.block or args.block < 2:
        p.error(f"--seeds must hold at least two blocks of at least 2 seeds; got --seeds {args.seeds} "
                f"--block {args.block}")
    lines = ["# The random control's widths, computed without training", "",
             f"- machine: {device_name()}; {dt.date.today().isoformat()}",
             f"- command: `python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}`",
             "- method: `netadjust.search.random_guided_widths`, the evidence benchmark's settings (width 0.5, "
             "Fashion-MNIST geometry, the method's defaults: k 6, k decay 0.5, arch lr 0.15, 1% tolerance); "
             "stage ratio = mean over a stage's layers of searched / uniform width", ""]

    recorded = recorded_searches()
    matched = total = 0
    for family, rounds, width_mult, widths, names in recorded:  # each set of searches once, counted per file
        computed = paths(family, sorted(widths), rounds, RULES[OLD_RULE], width_mult)
        total += len(names) * len(widths)
        matched += len(names) * sum(path[-1] == widths[seed] for seed, path in zip(sorted(widths), computed))
    lines += ["## The recorded random searches", "",
              f"The rule `seed + round` gives exactly the widths of **{matched} of the {total}** random searches "
              f"recorded in `bench/results_evidence_*.json` ({sum(len(r[-1]) for r in recorded)} files and families): "
              "their widths depended only on the draws, never on the trainings.", ""]
    if matched != total:
        sys.exit(f"only {matched} of {total} recorded random searches reproduced")

    lines += ["## Stage ratios over seeds", "",
              f"Per family, round count and rule: mean over {args.seeds} seeds (0..{args.seeds - 1}) of each stage's "
              f"ratio, its sd across seeds, and the sd of the means of {args.seeds // args.block} blocks of "
              f"{args.block} consecutive seeds (independent draws: about the seed sd / {args.block ** 0.5:.2f}).", "",
              "| family | rounds | draws seeded by | stage 1: mean (seed sd; block sd) | stage 2 | stage 3 |",
              "|---|---:|---|---|---|---|"]
    for family in FAMILIES:
        uniform = arch_of(family).default_widths()
        for rule, seed_of in RULES.items():
            walks = paths(family, range(args.seeds), max(ROUNDS), seed_of)
            for rounds in ROUNDS:
                ratios = [stage_ratios(w[rounds], uniform) for w in walks]
                cells = []
                for j in range(len(ratios[0])):
                    values = [r[j] for r in ratios]
                    blocks = [statistics.fmean(values[i:i + args.block])
                              for i in range(0, args.seeds - args.block + 1, args.block)]
                    cells.append(f"{statistics.fmean(values):.3f} ({statistics.stdev(values):.3f}; "
                                 f"{statistics.stdev(blocks):.3f})")
                lines.append(f"| {family} | {rounds} | {rule} | " + " | ".join(cells) + " |")

    lines += ["", "## The seeds of the recorded evidence runs", "",
              "Mean stage ratios (stage 1 / 2 / 3) of the random arm's widths on the seeds the recorded files "
              "searched, as recorded (`seed + round`) and as the same seeds draw now (`round_seed`); files that "
              "share their searches are listed together.", "",
              "| files | family | rounds | seeds | as recorded | with round_seed |", "|---|---|---:|---|---|---|"]
    for family, rounds, width_mult, widths, names in recorded:
        uniform = arch_of(family, width_mult).default_widths()
        seeds = sorted(widths)
        now = [w[-1] for w in paths(family, seeds, rounds, round_seed, width_mult)]
        show = " / ".join
        lines.append(f"| {', '.join(f'`{n}`' for n in names)} | {family} | {rounds} | {seeds[0]}..{seeds[-1]} | "
                     f"{show(f'{r:.2f}' for r in mean_stage_ratios([widths[i] for i in seeds], uniform))} | "
                     f"{show(f'{r:.2f}' for r in mean_stage_ratios(now, uniform))} |")
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
