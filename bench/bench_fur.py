"""FUR estimation: time and fidelity of the fast mode against the reference (official) scheme.

    python bench/bench_fur.py [--quick] [--truth-repeats N]

ResNet-20 and ResNet-56 are trained briefly on the digits data (held-out split enlarged to 15%,
216 images, to keep the reference scheme's ResNet-56 runs affordable on 2 cores). Each estimator
runs with several seeds: the reference scheme at the paper's 5 repeats, the fast mode without
the control variate at 5 (the same estimator, so the same values; only the time differs), and
the fast mode with the control variate at 5, 2 and 1 repeats.

Fidelity is measured against two high-repeat estimates of the same quantity (other seeds):

- the **control-variate truth** (the fast mode with its control variate, ``--truth-repeats``
  repeats), the primary one: the control variate leaves the mean unchanged, so it estimates the
  same FUR vector as the plain scheme, with far less noise;
- the **plain truth** (the fast mode without it, bit-for-bit the reference scheme's estimator).

How noisy each truth is, is measured too: two independent truths of each kind are compared.
Two numbers per estimate: the Spearman correlation of its FUR vector with a truth, and the share
of the truth's k most and k least used layers (k = 6, the search's default) that it also puts
there, i.e. how many of the search's widen/narrow decisions it reproduces.
Writes bench/RESULTS_fur.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from netadjust.config import TrainConfig
from netadjust.data import load_dataset
from netadjust.fur import estimate_fur
from netadjust.models import get_arch
from netadjust.train import build_and_train

K = 6  # layers widened and narrowed per round by default
ESTIMATORS = (("reference", False, 5), ("fast", False, 5), ("fast", True, 5), ("fast", True, 2), ("fast", True, 1))


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    keys = list(a)
    ra = np.argsort(np.argsort([a[k] for k in keys]))
    rb = np.argsort(np.argsort([b[k] for k in keys]))
    return float(np.corrcoef(ra, rb)[0, 1])


def decisions(fur: dict[str, float], k: int = K) -> set[tuple[str, str]]:
    """The layers a search round would widen (top k by FUR) and narrow (bottom k)."""
    order = sorted(fur, key=fur.get)
    return {("narrow", key) for key in order[:k]} | {("widen", key) for key in order[-k:]}


def agreement(a: dict[str, float], b: dict[str, float]) -> float:
    return len(decisions(a) & decisions(b)) / (2 * K)


def mean_sd(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-20 only, 2 seeds, 30-repeat truths")
    parser.add_argument("--truth-repeats", type=int, default=None, help="repeats of each truth (default 100)")
    args = parser.parse_args()
    truth_repeats = args.truth_repeats or (30 if args.quick else 100)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    started = time.perf_counter()
    data = load_dataset("digits", heldout_fraction=0.15)
    archs = ["resnet20"] if args.quick else ["resnet20", "resnet56"]
    seeds = range(2 if args.quick else 3)
    epochs = 4 if args.quick else 8
    rows, truth_rows = [], []
    for name in archs:
        arch = get_arch(name, num_classes=10, in_channels=1, input_size=8)
        widths = arch.default_widths()
        model = build_and_train(arch, widths, data, TrainConfig(epochs=epochs), progress=False).model
        kw = dict(base_drop_rate=0.05, batch_size=256, mode="fast", repeats=truth_repeats)
        truths = {(cv, seed): estimate_fur(model, data, arch, widths, control_variate=cv, seed=seed, **kw).fur
                  for cv in (True, False) for seed in (900, 901)}
        cv_truth, plain_truth = truths[True, 900], truths[False, 900]
        truth_rows.append((name, spearman(truths[True, 900], truths[True, 901]),
                           spearman(truths[False, 900], truths[False, 901]), spearman(cv_truth, plain_truth),
                           agreement(truths[True, 900], truths[True, 901]),
                           agreement(truths[False, 900], truths[False, 901])))
        print(truth_rows[-1], flush=True)
        for mode, cv, repeats in ESTIMATORS:
            results = [estimate_fur(model, data, arch, widths, repeats=repeats, mode=mode, control_variate=cv,
                                    seed=seed, base_drop_rate=0.05, batch_size=256) for seed in seeds]
            rows.append(dict(arch=name, label=mode + (" + control variate" if cv else ""), repeats=repeats,
                             seconds=statistics.fmean(r.seconds for r in results),
                             rho_cv=[spearman(r.fur, cv_truth) for r in results],
                             rho_plain=[spearman(r.fur, plain_truth) for r in results],
                             agree_cv=[agreement(r.fur, cv_truth) for r in results]))
            print(rows[-1], flush=True)
    base = {r["arch"]: r["seconds"] for r in rows if r["label"] == "reference"}
    command = "python bench/bench_fur.py" + (" --quick" if args.quick else "") + (
        f" --truth-repeats {args.truth_repeats}" if args.truth_repeats else "")
    lines = [
        "# FUR estimation: fast mode vs the reference scheme",
        "",
        f"- date: {datetime.date.today()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; no other job running",
        f"- command: `{command}` ({(time.perf_counter() - started) / 60:.0f} min)",
        f"- data: digits, {data.size('heldout')} held-out images, one batch; models trained for {epochs} epochs; "
        "base drop rate 0.05",
        f"- truths: {truth_repeats}-repeat fast-mode estimates with other seeds, with the control variate "
        "(CV truth) and without (plain truth)",
        f"- fidelity: mean ± std over {len(seeds)} seeds of the Spearman correlation with a truth, and of the "
        f"share of the truth's widen (top {K}) and narrow (bottom {K}) layers that the estimate also picks; "
        "time: mean seconds per estimation",
        "",
        "## How noisy the truths are",
        "",
        "Two truths of each kind, with independent masks, compared with each other:",
        "",
        "| arch | Spearman CV vs CV | Spearman plain vs plain | Spearman CV vs plain | widen/narrow agreement "
        "CV vs CV | same, plain vs plain |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {a:.3f} | {b:.3f} | {c:.3f} | {d:.2f} | {e:.2f} |" for n, a, b, c, d, e in truth_rows]
    lines += [
        "",
        "## Time and fidelity",
        "",
        "| arch | mode | repeats | seconds | speed-up vs reference | Spearman vs CV truth | "
        "Spearman vs plain truth | widen/narrow agreement with CV truth |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['arch']} | {r['label']} | {r['repeats']} | {r['seconds']:.2f} | "
              f"{base[r['arch']] / r['seconds']:.2f}x | {mean_sd(r['rho_cv'])} | {mean_sd(r['rho_plain'])} | "
              f"{mean_sd(r['agree_cv'])} |" for r in rows]
    text = "\n".join(lines) + "\n"
    Path(__file__).with_name("RESULTS_fur.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
