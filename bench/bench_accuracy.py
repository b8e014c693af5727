"""Accuracy at equal FLOPs on Fashion-MNIST: uniform vs network-adjusted vs pruned widths.

For each model family (ResNet-20 and Plain-20 at ``--width-mult``, 0.5 by default):

1. **uniform**: the family's original widths, trained with each seed;
2. **adjusted**: ``search(SearchConfig(...))`` once (seed 0) at the same MACs, then the searched
   widths retrained with each seed (seed 0's retraining is the search's own final comparison,
   read from RUN_DIR/final/);
3. **pruned**: a wider uniform network (``--wide-mult`` times the channels, ~2x MACs) trained,
   pruned with Torch-Pruning's global magnitude pruning (``MetaPruner(global_pruning=True)``,
   ``MagnitudeImportance``) to the uniform network's MACs (+-1%, counted on the pruned module
   with ``FlopCounterMode`` / 2), then fine-tuned; wide + fine-tune epochs = the others' epochs;
4. **0.64x MACs**: the original widths scaled uniformly to 0.64x MACs (``fit_budget``, the
   starting widths of ``SearchConfig(budget=0.64)``) vs a search run at ``budget=0.64``.

Torch-Pruning's dependency graph does not understand the parameter-free zero-padded shortcut
of the CIFAR ResNets (``F.pad`` on the channel dimension): it couples the whole residual stream
across stages as if the pad were element-wise, and the pruned model fails at the classifier
(checked with torch-pruning 1.6). For ResNets this benchmark therefore prunes only the first
conv of every block (its output channels, BN and the second conv's input); stem, second convs
and classifier are ignored layers. Plain nets have no shortcut and are pruned everywhere
except the classifier. ``ChannelDrop`` probes are the identity at p = 0 and invisible to the
tracer; they stay in the pruned model and act as the same regulariser during fine-tuning.

Every training uses one CPU thread; the families run in parallel worker processes
(``--workers``). Test accuracy is always on the full 10,000-image test set.

    .venv/bin/python bench/bench_accuracy.py --quick   # a few minutes, smoke test
    .venv/bin/python bench/bench_accuracy.py           # full, ~45 min on 2 shared cores
    .venv/bin/python bench/bench_accuracy.py --long    # tables 1 + 2 on a longer schedule, ~1 h

Needs the ``bench`` extra (torch-pruning, matplotlib) and the Debian package
``dataset-fashion-mnist``. Writes bench/RESULTS_accuracy.md, bench/plots/accuracy_*.png and a
JSON of every number (``--json``); search run directories go under ``--runs``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from netadjust.stats import mean_std

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
HERE = Path(__file__).resolve().parent

# parts: "equal" = tables 1 + 2 (uniform vs adjusted), "prune" = table 3, "small" = table 4 (0.64x).
MODES = {
    "quick": dict(width_mult=0.25, wide_mult=1.4, train_subset=1000, heldout_fraction=0.01, rounds=2,
                  search_epochs=1, final_epochs=2, wide_epochs=1, finetune_epochs=1, repeats=1, seeds=2,
                  budget_small=0.64, parts=("equal", "prune", "small"), budget_note="a smoke test"),
    "full": dict(width_mult=0.5, wide_mult=1.4, train_subset=4000, heldout_fraction=0.02, rounds=4, search_epochs=2,
                 final_epochs=5, wide_epochs=3, finetune_epochs=2, repeats=2, seeds=3, budget_small=0.64,
                 parts=("equal", "prune", "small"), budget_note="sized to fit ~45 minutes on 2 shared CPU cores"),
    # Uniform vs adjusted only, with 2x the data, 1.6x the final epochs, FUR on networks trained 2x
    # longer, and 2.5x the FUR repeats: does a longer schedule change tables 1 + 2?
    "long": dict(width_mult=0.5, train_subset=8000, heldout_fraction=0.03, rounds=4, search_epochs=4,
                 final_epochs=8, repeats=5, seeds=3, parts=("equal",),
                 budget_note="uniform vs adjusted only, sized to fit ~1 hour on 2 shared CPU cores"),
}


def check_data() -> None:
    missing = [f for f in FASHION_FILES if not (FASHION_DIR / f).exists()]
    if missing:
        sys.exit(f"Fashion-MNIST is missing ({', '.join(missing)} not in {FASHION_DIR}).\n"
                 f"Install it with:  sudo apt-get install dataset-fashion-mnist")


def counted_macs(model, in_channels: int, size: int) -> int:
    """MACs of a module as FlopCounterMode counts them (total FLOPs / 2), independent of ``arch``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_channels, size, size))
    model.train(was)
    return counter.get_total_flops() // 2


def module_widths(model) -> dict[str, int]:
    """Searchable-layer widths read off a (possibly pruned) CIFAR ResNet/Plain module."""
    out = {}
    for seg in model.segments:
        if hasattr(seg, "probe1"):
            out[seg.probe1.key] = seg.conv1.out_channels
            out[seg.probe2.key] = seg.conv2.out_channels
    return out


def prune_to(model, target: int, *, plain: bool, in_channels: int, size: int, tolerance: float = 0.01):
    """Global magnitude pruning of ``model`` to ``target`` MACs (+-tolerance); bisection on the ratio."""
    import torch
    import torch_pruning as tp

    example = torch.zeros(1, in_channels, size, size)
    fc = model.segments[-1][-1]
    if plain:
        ignored = [fc]
    else:  # see the module docstring: only each block's conv1 is pruned
        ignored = [fc, model.segments[0][0]] + [seg.conv2 for seg in model.segments if hasattr(seg, "conv2")]

    def attempt(ratio: float):
        m = copy.deepcopy(model).eval()
        pruner = tp.pruner.MetaPruner(m, example, importance=tp.importance.MagnitudeImportance(p=1),
                                      global_pruning=True, pruning_ratio=ratio, max_pruning_ratio=0.9,
                                      ignored_layers=[dict(m.named_modules())[n] for n in names])
        pruner.step()
        return m, counted_macs(m, in_channels, size)

    named = {id(mod): name for name, mod in model.named_modules()}
    names = [named[id(mod)] for mod in ignored]
    lo, hi = 0.0, 0.9
    best = None
    for _ in range(30):
        mid = (lo + hi) / 2
        m, macs = attempt(mid)
        if best is None or abs(macs - target) < abs(best[1] - target):
            best = (m, macs, mid)
        if abs(macs - target) / target <= tolerance:
            break
        lo, hi = (mid, hi) if macs > target else (lo, mid)
    return best


def prune_part(family: str, s: dict[str, Any], data, arch, base_macs: int, seeds: list[int], train_cfg, row,
               log) -> None:
    """Table 3: wide uniform network -> global magnitude pruning to ``base_macs`` -> fine-tune."""
    import torch

    from netadjust.config import TrainConfig
    from netadjust.models import get_arch
    from netadjust.train import build_and_train, train_model

    wide = get_arch(family, num_classes=10, in_channels=1, input_size=28, width_mult=s["width_mult"] * s["wide_mult"])
    wide_macs = wide.macs(wide.default_widths())
    acc_p, acc_w, pruned_macs, pruned_widths, ratios = [], [], [], None, []
    for seed in seeds:
        r = build_and_train(wide, wide.default_widths(), data, dataclasses.replace(train_cfg, epochs=s["wide_epochs"]),
                            seed=seed, device=torch.device("cpu"), eval_splits=("test",), progress=False, desc="wide")
        acc_w.append(r.metrics["test"].top1)
        model, macs, ratio = prune_to(r.model, base_macs, plain=family.startswith("plain"), in_channels=1, size=28)
        ft = TrainConfig(epochs=s["finetune_epochs"], lr=0.05, drop_rate=train_cfg.drop_rate, device="cpu")
        f = train_model(model, data, ft, seed=seed, device=torch.device("cpu"), eval_splits=("test",),
                        progress=False, desc="finetune")
        acc_p.append(f.metrics["test"].top1)
        pruned_macs.append(macs)
        ratios.append(ratio)
        pruned_widths = module_widths(model)
        log.info("%s pruned seed %d: wide %.4f, ratio %.3f, MACs %d (target %d), fine-tuned %.4f", family, seed,
                 acc_w[-1], ratio, macs, base_macs, acc_p[-1])
    row("wide (before pruning)", wide.default_widths(), acc_w, wide_macs)
    row("pruned + fine-tuned", pruned_widths, acc_p, round(statistics.fmean(pruned_macs)),
        macs_each=pruned_macs, ratios=ratios)


def run_family(family: str, s: dict[str, Any], runs: str, log_path: str) -> dict[str, Any]:
    """Everything for one model family; runs in a worker process with one torch thread."""
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(filename=log_path, level=logging.INFO, force=True,
                        format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    log = logging.getLogger("bench")
    from netadjust.budget import fit_budget
    from netadjust.config import SearchConfig, TrainConfig
    from netadjust.data import load_dataset
    from netadjust.models import get_arch
    from netadjust.search import search
    from netadjust.train import build_and_train

    t_family = time.perf_counter()
    train_cfg = TrainConfig(epochs=s["final_epochs"], device="cpu")
    data = load_dataset("fashion-mnist", heldout_fraction=s["heldout_fraction"], seed=0,
                        train_subset=s["train_subset"])
    arch = get_arch(family, num_classes=10, in_channels=1, input_size=28, width_mult=s["width_mult"])
    uniform = arch.default_widths()
    base_macs = arch.macs(uniform)
    seeds = list(range(s["seeds"]))
    out: dict[str, Any] = {"family": family, "base_macs": base_macs, "rows": {}, "widths": {}, "runs": {}}

    def train(widths: dict[str, int], seed: int, desc: str) -> tuple[float, float]:
        r = build_and_train(arch, widths, data, train_cfg, seed=seed, device=torch.device("cpu"),
                            eval_splits=("test",), progress=False, desc=desc)
        log.info("%s %s seed %d: test %.4f (%.0fs)", family, desc, seed, r.metrics["test"].top1, r.seconds)
        return r.metrics["test"].top1, r.seconds

    def do_search(budget: float, name: str) -> tuple[dict[str, int], dict[str, int], dict[str, dict]]:
        run_dir = Path(runs) / f"{family}_{name}"
        cfg = SearchConfig(arch=family, width_mult=s["width_mult"], dataset="fashion-mnist",
                           heldout_fraction=s["heldout_fraction"], train_subset=s["train_subset"],
                           rounds=s["rounds"], repeats=s["repeats"], budget=budget, final_epochs=s["final_epochs"],
                           seed=0, out=str(run_dir), warm_start=False,
                           train=TrainConfig(epochs=s["search_epochs"], device="cpu"))
        res = search(cfg, overwrite=True, progress=False)
        finals = {p.stem: json.loads(p.read_text()) for p in (run_dir / "final").glob("*.json")}
        out["runs"][name] = str(run_dir)
        log.info("%s search %s done: %s", family, name, res.summary)
        return res.widths_original, res.widths_final, finals

    def row(name: str, widths: dict[str, int] | None, accs: list[float], macs: int, **extra: Any) -> None:
        m, sd = mean_std(accs)
        out["rows"][name] = {"accs": accs, "mean": m, "std": sd, "macs": macs, **extra}
        if widths is not None:
            out["widths"][name] = dict(widths)

    # 1 + 2: uniform vs adjusted at the same MACs; seed 0 comes from the search's final comparison.
    original, searched, finals = do_search(1.0, "budget1.0")
    assert original == uniform
    acc_u, acc_a = [finals["original_seed0"]["test_acc"]], [finals["searched_seed0"]["test_acc"]]
    for seed in seeds[1:]:
        acc_u.append(train(uniform, seed, "uniform")[0])
        acc_a.append(train(searched, seed, "adjusted")[0])
    row("uniform", uniform, acc_u, base_macs)
    row("adjusted", searched, acc_a, arch.macs(searched))

    # 3: wide uniform -> global magnitude pruning to base MACs -> fine-tune.
    if "prune" in s["parts"]:
        prune_part(family, s, data, arch, base_macs, seeds, train_cfg, row, log)

    # 4: uniform at 0.64x MACs vs search at budget 0.64.
    if "small" in s["parts"]:
        small_target = s["budget_small"] * base_macs
        small_uniform = fit_budget(arch, uniform, small_target, tolerance=0.01,
                                   min_width=min(4, *uniform.values()))  # as search.prepare does
        start, searched_small, finals = do_search(s["budget_small"], f"budget{s['budget_small']}")
        assert start == small_uniform, (start, small_uniform)
        acc_su, acc_sa = [finals["original_seed0"]["test_acc"]], [finals["searched_seed0"]["test_acc"]]
        for seed in seeds[1:]:
            acc_su.append(train(small_uniform, seed, "uniform-small")[0])
            acc_sa.append(train(searched_small, seed, "adjusted-small")[0])
        row("uniform 0.64x", small_uniform, acc_su, arch.macs(small_uniform))
        row("adjusted 0.64x", searched_small, acc_sa, arch.macs(searched_small))
    out["seconds"] = time.perf_counter() - t_family
    log.info("%s done in %.0fs", family, out["seconds"])
    return out


def fmt_acc(r: dict[str, Any]) -> str:
    return f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"


def plots(results: list[dict[str, Any]], plot_dir: Path, tag: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    markers = {"uniform": "o", "adjusted": "s", "pruned + fine-tuned": "^", "wide (before pruning)": "v",
               "uniform 0.64x": "o", "adjusted 0.64x": "s"}
    colors = {"uniform": "C0", "adjusted": "C1", "pruned + fine-tuned": "C2", "wide (before pruning)": "C7",
              "uniform 0.64x": "C0", "adjusted 0.64x": "C1"}
    for ax, res in zip(axes[0], results):
        for name, r in res["rows"].items():
            ax.errorbar(r["macs"] / 1e6, 100 * r["mean"], yerr=100 * r["std"], fmt=markers[name], color=colors[name],
                        capsize=3, label=name)
        ax.set_xlabel("MACs (M)")
        ax.set_ylabel("test top-1 (%), mean ± std over seeds")
        ax.set_title(f"{res['family']} on Fashion-MNIST")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    p = plot_dir / f"accuracy_vs_macs{tag}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, axes = plt.subplots(len(results), 1, figsize=(11, 3.6 * len(results)), squeeze=False)
    for ax, res in zip(axes[:, 0], results):
        keys = list(res["widths"]["uniform"])
        names = ["uniform", "adjusted", "pruned + fine-tuned", "uniform 0.64x", "adjusted 0.64x"]
        n = len(names)
        for i, name in enumerate(names):
            w = res["widths"].get(name)
            if w is None:
                continue
            xs = [j + (i - n / 2 + 0.5) * 0.8 / n for j in range(len(keys))]
            ax.bar(xs, [w[k] for k in keys], width=0.8 / n, label=name)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([k.replace("stage", "s").replace(".block", ".b").replace(".conv", ".c") for k in keys],
                           rotation=60, fontsize=7)
        ax.set_ylabel("channels")
        ax.set_title(f"{res['family']}: widths per searchable conv (pruned: last seed)")
        ax.legend(fontsize=7, ncol=5)
    fig.tight_layout()
    p = plot_dir / f"widths{tag}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


def write_markdown(path: Path, results: list[dict[str, Any]], s: dict[str, Any], args, wall: float,
                   plot_paths: list[Path]) -> None:
    import torch

    lines = [
        "# Accuracy at equal FLOPs: uniform vs network-adjusted"
        + (" vs pruned" if "prune" in s["parts"] else "") + " (Fashion-MNIST)",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- Machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(shared with other jobs), torch {torch.__version__}, torch-pruning {_tp_version()}, Python "
        f"{platform.python_version()}",
        f"- Command: `.venv/bin/python bench/bench_accuracy.py {' '.join(sys.argv[1:])}`",
        f"- Wall time: {wall / 60:.1f} min ({len(results)} families in {args.workers} worker processes, "
        f"one torch thread each); per family: "
        + ", ".join(f"{r['family']} {r['seconds'] / 60:.1f} min" for r in results),
        "",
        "## Settings",
        "",
        f"- Models: {', '.join(r['family'] for r in results)} at width multiplier {s['width_mult']} "
        f"(stage widths {', '.join(str(round(w * s['width_mult'])) for w in (16, 32, 64))}), 28x28x1 input, "
        "10 classes, residual policy `max` (the default).",
        f"- Data: Fashion-MNIST, training subset of the first {s['train_subset']} images (`train_subset`), "
        f"held-out split for FUR {s['heldout_fraction']:.0%} of the 60k training images "
        f"({round(60000 * s['heldout_fraction'])} images, `heldout_fraction`), test = the full 10k test set. "
        "One data split (seed 0) for all runs; the seed changes weight init, shuffling and dropout masks.",
        f"- Training: the library's recipe (SGD momentum 0.9, lr 0.15 cosine to 1e-3, wd 3e-4, batch 128, "
        f"channel-dropout regulariser 0.05), {s['final_epochs']} epochs per final training; seeds "
        f"{', '.join(map(str, range(s['seeds'])))}.",
        f"- Search (`netadjust.search`): seed 0 only, {s['rounds']} rounds x {s['search_epochs']} epochs, "
        f"k = 6, k_decay 0.5, arch_lr 0.15 (defaults), FUR repeats {s['repeats']}, fast FUR mode, 1% MACs "
        "tolerance. The seed-0 rows of *uniform* and *adjusted* are the search's own final comparison "
        "(RUN_DIR/final/); seeds >= 1 are retrained here with the same schedule.",
    ]
    if "prune" in s["parts"]:
        lines.append(
            f"- Pruning: uniform network at {s['wide_mult']}x the channels (width multiplier "
            f"{s['width_mult'] * s['wide_mult']:g}) trained {s['wide_epochs']} epochs, pruned once with "
            "`torch_pruning.pruner.MetaPruner(global_pruning=True, importance=MagnitudeImportance(p=1), "
            "max_pruning_ratio=0.9)`, pruning ratio found by bisection so the pruned module's "
            "`FlopCounterMode` total / 2 is within 1% of the uniform network's MACs, then fine-tuned "
            f"{s['finetune_epochs']} epochs (lr 0.05 cosine to 1e-3): {s['wide_epochs']} + "
            f"{s['finetune_epochs']} = {s['wide_epochs'] + s['finetune_epochs']} epochs, as the others' "
            f"{s['final_epochs']}. ResNets: only each block's conv1 is pruned (Torch-Pruning's graph mis-couples "
            "the zero-padded parameter-free shortcut, see the script's docstring); Plain nets: every conv but "
            "the classifier.")
    lines += [
        "",
        f"These are short schedules on a {s['train_subset'] // 1000}k-image subset ({s['budget_note']}); "
        "they are far from the paper's 10 x 20-epoch search and 200-epoch retraining on 50k images.",
        "",
    ]
    for res in results:
        rows = res["rows"]
        base = res["base_macs"]
        lines += [f"## {res['family']} (width multiplier {s['width_mult']})", "",
                  "| # | method | MACs | MACs / uniform | test top-1 % (mean ± std) | per seed |",
                  "|---|---|---|---|---|---|"]
        order = [("1", "uniform"), ("2", "adjusted"), ("3", "wide (before pruning)"), ("3", "pruned + fine-tuned"),
                 ("4", "uniform 0.64x"), ("4", "adjusted 0.64x")]
        for num, name in order:
            if name not in rows:
                continue
            r = rows[name]
            per = ", ".join(f"{100 * a:.2f}" for a in r["accs"])
            macs = f"{r['macs']:,}"
            if "macs_each" in r:
                macs = " / ".join(f"{m:,} ({100 * (m / base - 1):+.1f}%)" for m in r["macs_each"])
            lines.append(f"| {num} | {name} | {macs} | {r['macs'] / base:.3f} | {fmt_acc(r)} | {per} |")
        gaps = [f"Adjusted minus uniform: {100 * (rows['adjusted']['mean'] - rows['uniform']['mean']):+.2f} points"]
        if "pruned + fine-tuned" in rows:
            pruned = rows["pruned + fine-tuned"]
            gaps.append(f"adjusted minus pruned: {100 * (rows['adjusted']['mean'] - pruned['mean']):+.2f} points")
        if "uniform 0.64x" in rows:
            gaps.append("at 0.64x MACs, adjusted minus uniform: "
                        f"{100 * (rows['adjusted 0.64x']['mean'] - rows['uniform 0.64x']['mean']):+.2f} points")
        text = "; ".join(gaps) + "."
        if "pruned + fine-tuned" in rows:
            text += (" Pruned MACs are counted with `FlopCounterMode` on the pruned module (one per seed); "
                     "pruning ratios " + ", ".join(f"{x:.3f}" for x in pruned["ratios"]) + ".")
        lines += ["", text, ""]
        lines += ["Widths (searchable convs in order" + ("; pruned = last seed" if "prune" in s["parts"] else "")
                  + "):", ""]
        for name in ("uniform", "adjusted", "pruned + fine-tuned", "uniform 0.64x", "adjusted 0.64x"):
            w = res["widths"].get(name)
            if w:
                lines.append(f"- {name}: {list(w.values())}")
        lines.append("")
    lines += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plot_paths] + [""]
    lines += ["## Discussion", "", "_See below (written after the run)._", ""]
    path.write_text("\n".join(lines))


def _tp_version() -> str:
    try:
        import torch_pruning

        return getattr(torch_pruning, "__version__", "?")
    except ImportError:
        return "not installed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="tiny settings: a smoke test of the whole pipeline")
    group.add_argument("--long", action="store_true", help="uniform vs adjusted only, on a longer schedule "
                                                           "(writes bench/RESULTS_accuracy_long.md)")
    ap.add_argument("--families", default="resnet20,plain20")
    ap.add_argument("--workers", type=int, default=2, help="families trained in parallel (one thread each)")
    ap.add_argument("--runs", default=None, help="where search run directories go (default /tmp/netadjust-bench/MODE)")
    ap.add_argument("--out", default=None, help="markdown output (default bench/RESULTS_accuracy.md; "
                                                "--quick: /tmp/netadjust-bench/RESULTS_accuracy_quick.md)")
    ap.add_argument("--json", default=None, help="all numbers as JSON (default next to the runs)")
    args = ap.parse_args()
    check_data()
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        sys.exit("torch-pruning is missing: pip install -e '.[bench]' (keep the installed torch)")
    mode = "quick" if args.quick else "long" if args.long else "full"
    s = MODES[mode]
    runs = Path(args.runs or f"/tmp/netadjust-bench/{mode}")
    if runs.exists():
        shutil.rmtree(runs)
    runs.mkdir(parents=True)
    tag = {"quick": "_quick", "long": "_long", "full": ""}[mode]
    out_md = Path(args.out) if args.out else (runs.parent if args.quick else HERE) / f"RESULTS_accuracy{tag}.md"
    families = args.families.split(",")
    t0 = time.perf_counter()
    print(f"[bench_accuracy] {mode}: {families}, settings {s}; logs in {runs}/<family>.log", flush=True)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(run_family, f, s, str(runs), str(runs / f"{f}.log")) for f in families]
        results = [f.result() for f in futures]
    wall = time.perf_counter() - t0
    json_path = Path(args.json) if args.json else runs / "accuracy.json"
    json_path.write_text(json.dumps({"settings": s, "wall_seconds": wall, "results": results}, indent=1))
    plot_paths = plots(results, runs / "plots" if args.quick else HERE / "plots", tag)
    write_markdown(out_md, results, s, args, wall, plot_paths)
    for res in results:
        for name, r in res["rows"].items():
            print(f"{res['family']:9s} {name:24s} MACs {r['macs']:>12,}  test {fmt_acc(r)}")
    print(f"[bench_accuracy] wall {wall / 60:.1f} min; wrote {out_md}, {json_path}")


if __name__ == "__main__":
    main()
