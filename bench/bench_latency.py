"""Latency against MACs: the lookup table's accuracy, and MACs- vs latency-budget searches.

1. **Table accuracy.** For each network, the table (``netadjust.latency``) is measured, then
   uniformly scaled widths and random per-layer widths are timed directly and compared with
   the table's prediction (the issue's target: within 10%).
2. **At equal MACs, equal latency?** A MACs-budget search and the uniform widths at the same
   MACs, timed; and a latency-budget search at the same fraction of the measured latency:
   its measured latency against the target, and its MACs.

Run it alone (timings swing when other jobs run)::

    python bench/bench_latency.py [--quick]     # writes bench/RESULTS_latency.md (+ .json)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from netadjust.budget import fit_budget, scale_widths
from netadjust.config import SearchConfig
from netadjust.latency import LatencyTable, Stopwatch, time_module
from netadjust.models import get_arch
from netadjust.search import search

HERE = Path(__file__).parent
CPU = torch.device("cpu")


def table_accuracy(name: str, settings: dict, batch: int, samples: int, rng: random.Random) -> dict:
    arch = get_arch(name, **settings)
    start = time.perf_counter()
    table = LatencyTable.measure(arch, CPU, batch, progress=False)
    seconds = time.perf_counter() - start
    base = arch.default_widths()
    watch = Stopwatch.of(table, arch)
    errors = {"uniform": [], "random": []}
    for i in range(samples):
        if i % 2 == 0:
            widths, kind = scale_widths(base, rng.choice([0.5, 0.7, 1.3, 1.6])), "uniform"
        else:
            widths, kind = {k: max(4, round(w * rng.uniform(0.5, 1.8))) for k, w in base.items()}, "random"
        timed = watch.network(arch, widths)
        errors[kind].append(table.predict(widths, arch) / timed - 1)
    drift = min(time_module(watch.reference, watch.x) for _ in range(5)) / table.measured - 1  # the machine's own
    every = errors["uniform"] + errors["random"]
    return {"network": f"{name} x{settings.get('width_mult', 1.0)}", "batch": batch, "table_seconds": seconds,
            "start_ms": 1e3 * table.measured,
            **{f"{k}_median_abs": statistics.median(abs(e) for e in v) for k, v in errors.items()},
            "max_abs": max(abs(e) for e in every), "within_10": sum(abs(e) <= 0.10 for e in every) / len(every),
            "drift": drift, "errors": errors}


def searches(budget: float, quick: bool, work: Path) -> dict:
    base = dict(arch="resnet20", width_mult=0.5, dataset="fashion-mnist", train_subset=1000 if quick else 4000,
                rounds=2 if quick else 4, epochs=1 if quick else 2, k=3, repeats=2, final_epochs=0, budget=budget,
                warm_start=False)
    out = {}
    for metric in ("macs", "latency"):
        cfg = SearchConfig.from_dict({**base, "budget_metric": metric, "out": str(work / metric)})
        out[metric] = search(cfg, overwrite=True, progress=False)
    arch = get_arch("resnet20", num_classes=10, in_channels=1, input_size=28, width_mult=0.5)
    uniform = fit_budget(arch, arch.default_widths(), budget * arch.macs(arch.default_widths()))
    table = LatencyTable.from_dict(json.loads((work / "latency" / "latency.json").read_text()))
    timed = {"uniform": uniform, "macs-searched": out["macs"].widths_final, "latency-searched": out["latency"].widths_final}
    watch = Stopwatch.of(table, arch)
    rows = {}
    for label, widths in timed.items():
        rows[label] = {"macs": arch.macs(widths), "ms": 1e3 * watch.network(arch, widths),
                       "predicted_ms": 1e3 * table.predict(widths, arch)}
    return {"budget": budget, "settings": base, "start_ms": 1e3 * table.measured,
            "target_ms": 1e3 * budget * table.measured, "rows": rows}


def render(results: dict) -> str:
    lines = ["# Latency: the lookup table, and MACs against latency budgets", "",
             f"`{results['command']}`, {results['date']}, {results['machine']}, torch {results['torch']}, "
             f"{results['threads']} threads, batch 1 unless stated; CPU only (no GPU was lent to this task).", "",
             "## Table accuracy (predicted / timed - 1)", "",
             "Every timing is relative to the starting network timed back to back with it (`Stopwatch`), "
             "as the search does. *Drift*: the starting network's absolute timing after the samples against "
             "the one in the table (how much the machine itself moved meanwhile; relative timing is meant to "
             "cancel it).", "",
             "| network | batch | table built in | starting network | median abs error, uniform scalings | "
             "median abs error, random widths | max abs error | within 10% | drift |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["accuracy"]:
        lines.append(f"| {r['network']} | {r['batch']} | {r['table_seconds']:.1f} s | {r['start_ms']:.2f} ms | "
                     f"{r['uniform_median_abs']:.1%} | {r['random_median_abs']:.1%} | {r['max_abs']:.1%} | "
                     f"{r['within_10']:.0%} | {r['drift']:+.1%} |")
    s = results["searches"]
    lines += ["", f"## Searches at {s['budget']}x (ResNet-20 x0.5, Fashion-MNIST 28 px)", "",
              f"Settings: `{json.dumps(s['settings'])}`. Starting network {s['start_ms']:.3f} ms; latency target "
              f"{s['target_ms']:.3f} ms. *Timed*: relative to the starting network (`Stopwatch`), in its "
              f"milliseconds.", "",
              "| widths | MACs | timed | table's prediction |", "|---|---|---|---|"]
    for label, r in s["rows"].items():
        lines.append(f"| {label} | {r['macs']:,} | {r['ms']:.3f} ms | {r['predicted_ms']:.3f} ms |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and a shorter search (minutes)")
    parser.add_argument("--work", default="runs/bench-latency", help="where the searches write their runs")
    args = parser.parse_args()
    rng = random.Random(0)
    samples = 6 if args.quick else 16
    nets = [("resnet20", {"num_classes": 10, "in_channels": 1, "input_size": 28, "width_mult": 0.5}),
            ("resnet20", {"num_classes": 10, "in_channels": 3, "input_size": 32, "width_mult": 1.0}),
            ("mobilenet_v2", {"num_classes": 10, "in_channels": 3, "input_size": 32, "width_mult": 0.5})]
    accuracy = []
    for name, settings in nets:
        for batch in (1, 32):
            accuracy.append(table_accuracy(name, settings, batch, samples, rng))
            print(accuracy[-1]["network"], batch, f"{accuracy[-1]['within_10']:.0%} within 10%", flush=True)
    results = {"command": "python bench/bench_latency.py" + (" --quick" if args.quick else ""),
               "date": str(dt.date.today()), "machine": f"{platform.node()} ({platform.machine()}, "
               f"{torch.get_num_threads()} threads)", "torch": torch.__version__, "threads": torch.get_num_threads(),
               "accuracy": accuracy, "searches": searches(0.7, args.quick, Path(args.work))}
    (HERE / "RESULTS_latency.json").write_text(json.dumps(results, indent=1))
    (HERE / "RESULTS_latency.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    sys.exit(main())
