"""Where does a search's time go, and how does it compare with training the final model once?

For each search run directory: time in training (``train_seconds`` of every round in
RUN_DIR/records.jsonl), in FUR estimation (``fur_seconds``), and in bookkeeping (everything else
of the round's ``seconds``: held-out/test evaluation after training, checkpoint writing, the
adjustment and the FLOPs restore), and the ratio of the whole search (sum of round seconds) to
one final training run of the searched widths (RUN_DIR/final/searched_seed0.json "seconds"; the
final training evaluates on the test set only). The paper says the search costs about as much
as retraining the final model: its CIFAR schedule is 10 rounds x 20 epochs against 200 final
epochs, i.e. the same number of training epochs, so the ratio is expected to be close to
(search epochs / final epochs) x (1 + FUR and bookkeeping overhead). The training seconds of a round include its
held-out and test evaluation; the epochs' own seconds are in each record's history, so
evaluation is split out. This script also reports
that epoch ratio and the overhead, so the measured ratio can be read for other schedules.

    .venv/bin/python bench/bench_search_cost.py --runs /tmp/netadjust-bench/full   # analyse existing runs
    .venv/bin/python bench/bench_search_cost.py --quick                            # run a tiny search, analyse it

Without ``--runs`` it runs one search itself (ResNet-20 x0.5 on Fashion-MNIST; ``--quick`` is
tiny). Writes bench/RESULTS_search_cost.md (or --out) and a plot named after it in plots/ beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def analyse(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines() if line.strip()]
    config = json.loads((run_dir / "config.json").read_text())
    final_path = run_dir / "final" / "searched_seed0.json"
    final = json.loads(final_path.read_text()) if final_path.exists() else None
    train = sum(e["seconds"] for r in records for e in r["history"])  # the epochs themselves
    evaluation = sum(r["train_seconds"] for r in records) - train  # build + held-out/test evaluation
    fur = sum(r["fur_seconds"] for r in records)
    total = sum(r["seconds"] for r in records)
    out = {"run": run_dir.name, "arch": config["arch"], "width_mult": config["width_mult"],
           "budget": config["budget"], "rounds": len(records), "epochs_per_round": config["epochs"],
           "train": train, "eval": evaluation, "fur": fur, "other": total - train - evaluation - fur,
           "total": total,
           }
    if final is not None:
        out.update(final_seconds=final["seconds"], final_epochs=final["epochs"], ratio=total / final["seconds"],
                   epoch_ratio=len(records) * config["epochs"] / final["epochs"])
    return out


def run_own_search(quick: bool, out_root: Path) -> Path:
    if not all((FASHION_DIR / f).exists() for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")):
        sys.exit(f"Fashion-MNIST is missing from {FASHION_DIR}.\n"
                 f"Install it with:  sudo apt-get install dataset-fashion-mnist")
    import torch

    torch.set_num_threads(1)
    from netadjust.config import SearchConfig, TrainConfig
    from netadjust.search import search

    run_dir = out_root / "resnet20_cost"
    cfg = SearchConfig(arch="resnet20", width_mult=0.25 if quick else 0.5, dataset="fashion-mnist",
                       heldout_fraction=0.01 if quick else 0.02, train_subset=1000 if quick else 4000,
                       rounds=2 if quick else 4, repeats=1 if quick else 2, final_epochs=2 if quick else 5, warm_start=False,
                       out=str(run_dir), train=TrainConfig(epochs=1 if quick else 2, device="cpu"))
    search(cfg, overwrite=True, progress=False)
    return out_root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", help="folder of search run directories (e.g. bench_accuracy.py's --runs)")
    ap.add_argument("--quick", action="store_true", help="without --runs: a tiny search")
    ap.add_argument("--out", default=None, help="markdown (default bench/RESULTS_search_cost.md; "
                                                "--quick: /tmp/netadjust-bench/RESULTS_search_cost_quick.md)")
    args = ap.parse_args()
    if args.runs:
        root = Path(args.runs)
    else:
        root = run_own_search(args.quick, Path("/tmp/netadjust-bench/cost-quick" if args.quick
                                                else "/tmp/netadjust-bench/cost"))
    runs = sorted(p for p in root.iterdir() if (p / "records.jsonl").exists())
    if not runs:
        sys.exit(f"no search run directories (with records.jsonl) under {root}")
    rows = [analyse(p) for p in runs]
    out = Path(args.out) if args.out else (Path("/tmp/netadjust-bench/RESULTS_search_cost_quick.md") if args.quick
                                           else HERE / "RESULTS_search_cost.md")

    import torch

    lines = ["# Search cost: training vs FUR vs bookkeeping, and search / final training (Fashion-MNIST)", "",
             f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
             f"- Machine: {platform.platform()}, {os.cpu_count()} cores (shared with other jobs), torch "
             f"{torch.__version__}; one torch thread per search (two searches of different families ran "
             "at the same time in separate processes when the runs come from bench_accuracy.py)",
             f"- Command: `.venv/bin/python bench/bench_search_cost.py {' '.join(sys.argv[1:])}`",
             f"- Runs analysed: {root} ({', '.join(p.name for p in runs)})", "",
             "Times are wall-clock seconds from each run's records.jsonl (per round: train_seconds, fur_seconds, "
             "seconds, and each epoch's seconds in its history): *training* = the training epochs; *evaluation* = "
             "the rest of train_seconds (building the model, evaluating it on the held-out and test splits); "
             "*FUR* = fur_seconds; *other* = round seconds - those: checkpoint writing, adjustment, FLOPs "
             "restore. Bookkeeping = evaluation + other. *Final* = one "
             "training of the searched widths (RUN_DIR/final/searched_seed0.json), test evaluation included.", "",
             "| run | rounds x epochs | training s | FUR s | evaluation s | other s | search total s | final "
             "training s (epochs) | search / final | search epochs / final epochs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pct = lambda x: f"{x:.0f} ({100 * x / r['total']:.0f}%)"  # noqa: E731
        fin = (f"{r['final_seconds']:.0f} ({r['final_epochs']})", f"{r['ratio']:.2f}", f"{r['epoch_ratio']:.2f}") \
            if "ratio" in r else ("-", "-", "-")
        lines.append(f"| {r['run']} ({r['arch']} x{r['width_mult']}, budget {r['budget']}) | {r['rounds']} x "
                     f"{r['epochs_per_round']} | {pct(r['train'])} | {pct(r['fur'])} | {pct(r['eval'])} | {pct(r['other'])} | "
                     f"{r['total']:.0f} | {fin[0]} | {fin[1]} | {fin[2]} |")
    lines += ["", "Normalised: search / final divided by the epoch ratio is the cost of a search epoch (with "
              "its share of FUR and bookkeeping) relative to a final-training epoch; with the paper's schedule "
              "(equal epochs) it would be the search / final ratio, if per-epoch overheads stayed the same.", "",
              "| run | (search / final) / (epoch ratio) |", "|---|---|"]
    for r in rows:
        if "ratio" in r:
            lines.append(f"| {r['run']} | {r['ratio'] / r['epoch_ratio']:.2f} |")
    lines.append("")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir = out.parent / "plots"  # next to the markdown, named after it
    plot_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 2))
    labels = [r["run"] for r in rows]
    left = [0.0] * len(rows)
    for part, color in (("train", "C0"), ("fur", "C1"), ("eval", "C2"), ("other", "C7")):
        vals = [r[part] for r in rows]
        ax.barh(labels, vals, left=left, color=color, label=part)
        left = [a + b for a, b in zip(left, vals)]
    for i, r in enumerate(rows):
        if "final_seconds" in r:
            ax.plot([r["final_seconds"]] * 2, [i - 0.4, i + 0.4], "k--", lw=1.5,
                    label="one final training" if i == 0 else None)
    ax.set_xlabel("seconds")
    ax.set_title("search time by part vs one final training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = plot_dir / f"{out.stem.removeprefix('RESULTS_')}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    lines += [f"![search cost](plots/{p.name})", ""]
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
