"""FUR estimation: time and fidelity of the fast mode against the reference (official) scheme.

    python bench/bench_fur.py [--quick]

For ResNet-20 and ResNet-56 trained briefly on the digits data (held-out split enlarged to 15%,
216 images, to keep the reference scheme's ResNet-56 runs affordable on 2 cores), both modes estimate FUR with the paper's 5 repeats, and the
fast mode also with fewer. Fidelity is the Spearman correlation of a FUR vector with a
high-repeat estimate (20 repeats, another seed), averaged over several seeds. Both modes
compute the same estimator, so at equal repeats their fidelity is equal up to noise; the
question is the time. Writes bench/RESULTS_fur.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
from pathlib import Path

import numpy as np
import torch

from netadjust.config import TrainConfig
from netadjust.data import load_dataset
from netadjust.fur import estimate_fur
from netadjust.models import get_arch
from netadjust.train import build_and_train


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    keys = list(a)
    ra = np.argsort(np.argsort([a[k] for k in keys]))
    rb = np.argsort(np.argsort([b[k] for k in keys]))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-20 only, fewer seeds")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    data = load_dataset("digits", heldout_fraction=0.15)
    archs = ["resnet20"] if args.quick else ["resnet20", "resnet56"]
    rows = []
    for name in archs:
        seeds = range(2 if args.quick or name == "resnet56" else 3)
        arch = get_arch(name, num_classes=10, in_channels=1, input_size=8)
        widths = arch.default_widths()
        model = build_and_train(arch, widths, data, TrainConfig(epochs=4 if args.quick else 8),
                                progress=False).model
        kw = dict(base_drop_rate=0.05, batch_size=256)
        truth = estimate_fur(model, data, arch, widths, repeats=40, mode="fast", control_variate=False, seed=999,
                             **kw).fur
        for mode, cv, repeats in (("reference", False, 5), ("fast", False, 5), ("fast", True, 5), ("fast", True, 2),
                                  ("fast", True, 1)):
            times, rhos = [], []
            for seed in seeds:
                result = estimate_fur(model, data, arch, widths, repeats=repeats, mode=mode, control_variate=cv,
                                      seed=seed, **kw)
                times.append(result.seconds)
                rhos.append(spearman(result.fur, truth))
            label = mode + (" + control variate" if cv else "")
            rows.append((name, label, repeats, statistics.fmean(times), statistics.fmean(rhos),
                         statistics.stdev(rhos) if len(rhos) > 1 else 0.0))
            print(rows[-1], flush=True)
    base = {name: t for name, mode, r, t, _, _ in rows if mode == "reference"}
    lines = [
        "# FUR estimation: fast mode vs the reference scheme",
        "",
        f"- date: {datetime.date.today()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs), CPython "
        f"{platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"- command: `python bench/bench_fur.py{' --quick' if args.quick else ''}`",
        f"- data: digits, {data.size('heldout')} held-out images; models trained for "
        f"{4 if args.quick else 8} epochs; base drop rate 0.05",
        "- fidelity: Spearman correlation with a 40-repeat plain estimate (other seed), mean ± std over "
        f"{'2' if args.quick else '3 (ResNet-56: 2)'} seeds; time: mean seconds per estimation",
        "",
        "| arch | mode | repeats | seconds | speed-up vs reference | fidelity (Spearman) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {m} | {r} | {t:.2f} | {base[n] / t:.2f}x | {rho:.3f} ± {sd:.3f} |"
              for n, m, r, t, rho, sd in rows]
    text = "\n".join(lines) + "\n"
    Path(__file__).with_name("RESULTS_fur.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
