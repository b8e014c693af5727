"""Warm-start search against the cold (from scratch) search, on the same seeds.

Each seed runs both searches with the same settings and the same final comparison (the searched
and the original widths retrained from scratch for ``final_epochs``): the search's wall time as
a multiple of one final training (of the original widths, measured in the same run), and the
searched widths' final test accuracy.

    python bench/bench_warm.py                 # ResNet-20 x0.5, Fashion-MNIST subset, 3 seeds (CPU: ~20 min)
    python bench/bench_warm.py --quick         # digits, a minute
    python bench/bench_warm.py --gpu --out bench/RESULTS_warm_gpu.md   # all 60k images, on a GPU
Writes bench/RESULTS_warm.md (or --out) and the JSON beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import torch

from machine import device_name
from netadjust.config import SearchConfig
from netadjust.search import search
from netadjust.stats import mean_std, paired_difference

SETTINGS = dict(arch="resnet20", width_mult=0.5, dataset="fashion-mnist", train_subset=4000, heldout_fraction=0.02,
                rounds=4, epochs=4, repeats=2, final_epochs=8)
GPU = dict(SETTINGS, train_subset=None, heldout_fraction=0.1)  # all of Fashion-MNIST
QUICK = dict(arch="resnet20", width_mult=0.25, dataset="digits", train_subset=512, rounds=3, epochs=4, repeats=2,
             final_epochs=4)


# The searches compared: cold (every round from scratch), and warm starts whose new channels start
# with zero outgoing weights ("warm", the name the results files of the zero-start default keep)
# or as split copies of kept channels ("warm-split", the default since).
MODES = {"cold": {"warm_start": False}, "warm": {"warm_start": True, "warm_widen": "zero"},
         "warm-split": {"warm_start": True, "warm_widen": "split"}}


def run(settings: dict, modes: list[str], seeds: int, data_dir: str | None, json_path: Path) -> dict:
    """Every mode's search per seed; the JSON is rewritten after every seed, so a run cut short keeps its seeds."""
    out: dict = {"settings": settings, "device": device_name(), "modes": modes, "seeds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            row = {}
            for mode in modes:
                cfg = SearchConfig.from_dict({**settings, **MODES[mode], "data_dir": data_dir, "seed": seed,
                                              "out": f"{tmp}/{mode}{seed}"})
                result = search(cfg, progress=False)
                final = json.loads((result.run_dir / "final" / f"original_seed{seed}.json").read_text())
                s = result.summary
                row[mode] = {"search_seconds": s.search_seconds, "final_seconds": final["seconds"],
                             "ratio": s.search_seconds / final["seconds"], "searched_test_acc": s.searched_test_acc,
                             "original_test_acc": s.original_test_acc, "widths": result.widths_final,
                             "train_seconds": sum(r.train_seconds for r in result.records),
                             "fur_seconds": sum(r.fur_seconds for r in result.records)}
                print(f"seed {seed} {mode}: search {s.search_seconds:.0f} s = {row[mode]['ratio']:.2f}x a final "
                      f"training; searched {100 * s.searched_test_acc:.2f}%", flush=True)
            out["seeds"][str(seed)] = row
            json_path.write_text(json.dumps(out, indent=1))
    return out


def markdown(d: dict, command: str) -> str:
    seeds = list(d["seeds"].values())
    s, modes = d["settings"], d.get("modes", ["cold", "warm"])
    lines = ["# Warm-start search against cold search", "",
             f"- date: {dt.date.today().isoformat()}; machine: {d.get('device') or device_name()}, torch "
             f"{torch.__version__}", f"- command: `{command}`",
             f"- {s['arch']} x{s['width_mult']} on {s['dataset']} (training subset {s.get('train_subset') or 'all'}), "
             f"{s['rounds']} rounds x {s['epochs']} epochs (warm rounds: the default quarter of that), FUR repeats "
             f"{s['repeats']}, final trainings {s['final_epochs']} epochs", "",
             "| seed | " + " | ".join(f"{m}: search / final" for m in modes) + " | "
             + " | ".join(f"{m} searched %" for m in modes) + " | original % |",
             "|---:|" + "---:|" * (2 * len(modes) + 1)]
    for i, row in enumerate(seeds):
        lines.append(f"| {i} | " + " | ".join(f"{row[m]['ratio']:.2f}x" for m in modes) + " | "
                     + " | ".join(f"{100 * row[m]['searched_test_acc']:.2f}" for m in modes)
                     + f" | {100 * row[modes[0]]['original_test_acc']:.2f} |")
    ratios = {m: mean_std([r[m]["ratio"] for r in seeds]) for m in modes}
    accs = {m: mean_std([r[m]["searched_test_acc"] for r in seeds]) for m in modes}
    lines += ["", "Search / one final training: " + ", ".join(
        f"{m} {ratios[m][0]:.2f}x ± {ratios[m][1]:.2f}" for m in modes) + ".",
        "Searched widths' final test accuracy: " + ", ".join(
        f"{m} {100 * accs[m][0]:.2f} ± {100 * accs[m][1]:.2f}" for m in modes) + ".", ""]
    for a, b in [(a, b) for i, b in enumerate(modes) for a in modes[i + 1:]]:
        gain, ci = paired_difference([r[a]["searched_test_acc"] for r in seeds], [r[b]["searched_test_acc"] for r in seeds])
        lines.append(f"- {a} - {b}: {100 * gain:+.2f} points" + (f", 95% CI [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"
                                                                 if ci else "") + " (paired by seed)")
    return "\n".join(lines + [""])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--gpu", action="store_true", help="all of Fashion-MNIST (for a GPU)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="the searches compared")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(Path(__file__).parent / "RESULTS_warm.md"))
    args = p.parse_args()
    d = run(QUICK if args.quick else GPU if args.gpu else SETTINGS, args.modes, args.seeds, args.data_dir,
            Path(args.out).with_suffix(".json"))
    text = markdown(d, " ".join(["python", *sys.argv]))
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
