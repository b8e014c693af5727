"""Training at the GPU's speed: the eager path against the fast path (a CUDA graph per step),
networks trained side by side, and a whole Fashion-MNIST search with a 3-seed final comparison.

Stages (each appends to one JSON file, rewritten after every stage, so a run cut short still
leaves what it measured):

1. ``throughput``: images/s of ResNet-20 x0.5 on Fashion-MNIST (batch 128), eager path vs fast
   path, from the second of two epochs (the first includes start-up and graph capture);
2. ``side_by_side``: aggregate images/s of k = 1, 2, 4, 6 such trainings run together in one
   process (a CUDA stream each), 2 epochs;
3. ``processes``: the alternative, k = 2 and 4 processes training at once (aggregate images/s
   over the epochs after the first, from each process's own timestamps);
4. ``search``: ``netadjust search`` on the whole training set, 10 rounds x 10 epochs, then the
   final comparison of 20 epochs on 3 seeds; wall time of the search and of the comparison.

    PYTHONPATH=src python3 bench/bench_gpu.py --out gpu.json        # on a GPU, a few minutes
    python bench/bench_gpu.py --quick --out /tmp/gpu.json            # a small CPU rehearsal
    python bench/bench_gpu.py --render gpu.json > bench/RESULTS_gpu.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from machine import device_name
from netadjust.config import SearchConfig, TrainConfig
from netadjust.data import load_dataset
from netadjust.models import get_arch
from netadjust.search import search
from netadjust.train import Training, train_concurrently

ARCH = dict(arch="resnet20", width_mult=0.5)


class Results:
    """The JSON file of everything measured, rewritten after every stage."""

    def __init__(self, path: Path, args: argparse.Namespace) -> None:
        self.path = path
        self.data = {"device": device_name(), "torch": torch.__version__, "date": dt.date.today().isoformat(),
                     "command": " ".join(sys.argv), "quick": args.quick, "stages": {}}
        self.save()

    def stage(self, name: str, fn, *args) -> dict | None:
        start = time.perf_counter()
        try:
            value = fn(*args)
        except Exception as exc:  # record it and go on: later stages may still work
            value = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        value["stage_seconds"] = time.perf_counter() - start
        self.data["stages"][name] = value
        self.save()
        print(f"[{name}] {json.dumps({k: v for k, v in value.items() if k != 'traceback'})}", flush=True)
        return value

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)


def trainings(data, device, k: int, epochs: int, stepper: str, batch_size: int) -> list[Training]:
    arch = get_arch(ARCH["arch"], num_classes=data.num_classes, in_channels=data.in_channels,
                    input_size=data.input_size, width_mult=ARCH["width_mult"])
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(Training(arch.build(), data, TrainConfig(epochs=epochs, batch_size=batch_size), seed=seed,
                            device=device, progress=False, desc=f"bench {seed}", stepper=stepper))
    return out


def throughput(data, device, batch_size: int) -> dict:
    out = {}
    for stepper in ("eager", "static"):
        result = train_concurrently(trainings(data, device, 1, 2, stepper, batch_size))[0]
        images = data.num_batches("train", batch_size=batch_size, train=True) * batch_size
        out[stepper] = {"images_per_s": images / result.history[-1]["seconds"],
                        "epoch_seconds": [h["seconds"] for h in result.history],
                        "train_loss": [h["train_loss"] for h in result.history]}
    out["speedup"] = out["static"]["images_per_s"] / out["eager"]["images_per_s"]
    return out


def side_by_side(data, device, batch_size: int, ks: list[int]) -> dict:
    out = {}
    images = data.num_batches("train", batch_size=batch_size, train=True) * batch_size
    for k in ks:
        group = trainings(data, device, k, 2, "auto", batch_size)
        start = time.perf_counter()
        results = train_concurrently(group)
        wall = time.perf_counter() - start
        second = max(r.history[-1]["seconds"] for r in results)
        out[str(k)] = {"wall_seconds": wall, "images_per_s_total": 2 * k * images / wall,
                       "images_per_s_second_epoch": k * images / second}
    return out


def worker(args: argparse.Namespace) -> None:
    """One process of the ``processes`` stage: train 3 epochs, print when each epoch ended."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_dataset("fashion-mnist", data_dir=args.data_dir, train_subset=args.train_subset)
    arch = get_arch(ARCH["arch"], num_classes=data.num_classes, in_channels=data.in_channels,
                    input_size=data.input_size, width_mult=ARCH["width_mult"])
    ends: list[float] = []
    train_concurrently([Training(arch.build(), data, TrainConfig(epochs=3, batch_size=args.batch_size),
                                 device=device, progress=False, checkpoint=lambda state: ends.append(time.time()))])
    images = data.num_batches("train", batch_size=args.batch_size, train=True) * args.batch_size
    print(json.dumps({"epoch_ends": ends, "images_per_epoch": images}))


def processes(args: argparse.Namespace, ks: list[int]) -> dict:
    out = {}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    for k in ks:
        cmd = [sys.executable, __file__, "--worker", "--batch-size", str(args.batch_size)]
        cmd += ["--data-dir", args.data_dir] if args.data_dir else []
        cmd += ["--train-subset", str(args.train_subset)] if args.train_subset else []
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(k)]
        reports = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"worker failed: {stderr[-2000:]}")
            reports.append(json.loads(stdout.strip().splitlines()[-1]))
        # Epochs 2 and 3 of every process: their images over the span from the first start to the last end.
        starts = [r["epoch_ends"][0] for r in reports]
        ends = [r["epoch_ends"][-1] for r in reports]
        images = sum(2 * r["images_per_epoch"] for r in reports)
        out[str(k)] = {"images_per_s_total": images / (max(ends) - min(starts)),
                       "overlap_seconds": min(ends) - max(starts)}
    return out


def whole_search(args: argparse.Namespace, device: torch.device, rounds: int, epochs: int, final_epochs: int,
                 seeds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SearchConfig.from_dict({**ARCH, "dataset": "fashion-mnist", "data_dir": args.data_dir,
                                      "train_subset": args.train_subset, "rounds": rounds, "epochs": epochs,
                                      "final_epochs": final_epochs, "final_seeds": seeds, "batch_size": args.batch_size,
                                      "warm_start": False,
                                      "device": str(device), "out": str(Path(tmp) / "run")})
        start = time.perf_counter()
        result = search(cfg, progress=False)
        wall = time.perf_counter() - start
        s = result.summary
        return {"settings": {k: v for k, v in cfg.to_flat().items() if k in
                             ("rounds", "epochs", "final_epochs", "final_seeds", "batch_size", "train_subset")},
                "wall_seconds": wall, "search_seconds": s.search_seconds, "final_seconds": wall - s.search_seconds,
                "train_seconds_per_round": [r.train_seconds for r in result.records],
                "fur_seconds_per_round": [r.fur_seconds for r in result.records],
                "original_test_accs": s.original_test_accs, "searched_test_accs": s.searched_test_accs,
                "test_acc_gain": s.test_acc_gain, "test_acc_gain_ci95": s.test_acc_gain_ci95,
                "macs_original": s.macs_original, "macs_final": s.macs_final}


def render(path: Path) -> str:
    d = json.loads(path.read_text())
    st = d["stages"]
    lines = ["# GPU training speed (bench/bench_gpu.py)", "",
             f"- device: {d['device']}, torch {d['torch']}, {d['date']}", f"- command: `{d['command']}`",
             "- model: ResNet-20 x0.5 on Fashion-MNIST (54,000 training images), batch 128, bf16 autocast, "
             "channels-last", ""]
    for name, value in st.items():
        if "error" in value:
            lines += [f"**{name}: failed** — `{value['error']}`", ""]
    t = st.get("throughput", {})
    if "speedup" in t:
        lines += ["## Eager path vs fast path (second epoch)", "", "| path | images/s | epoch seconds |", "|---|---:|---|"]
        for k in ("eager", "static"):
            lines.append(f"| {'fast (CUDA graph)' if k == 'static' else 'eager'} | {t[k]['images_per_s']:,.0f} | "
                         f"{', '.join(f'{s:.2f}' for s in t[k]['epoch_seconds'])} |")
        lines += ["", f"Speed-up: **{t['speedup']:.2f}x**.", ""]
    sbs = st.get("side_by_side", {})
    procs = st.get("processes", {})
    if any(k.isdigit() for k in sbs):
        lines += ["## Several networks at once", "", "| networks | one process, CUDA streams: images/s (all) | "
                  "second epoch | separate processes: images/s |", "|---:|---:|---:|---:|"]
        for k, v in sbs.items():
            if k.isdigit():
                p = procs.get(k, {})
                lines.append(f"| {k} | {v['images_per_s_total']:,.0f} | {v['images_per_s_second_epoch']:,.0f} | "
                             f"{p['images_per_s_total']:,.0f} |" if "images_per_s_total" in p else
                             f"| {k} | {v['images_per_s_total']:,.0f} | {v['images_per_s_second_epoch']:,.0f} | - |")
        lines.append("")
    s = st.get("search", {})
    if "wall_seconds" in s:
        cfg = s["settings"]
        lines += ["## A whole search", "", f"`netadjust search` with {cfg['rounds']} rounds x {cfg['epochs']} epochs, "
                  f"final comparison {cfg['final_epochs']} epochs x {cfg['final_seeds']} seeds "
                  f"(train subset: {cfg['train_subset'] or 'all'}):", "",
                  f"- search: {s['search_seconds']:.0f} s (training {sum(s['train_seconds_per_round']):.0f} s, "
                  f"FUR {sum(s['fur_seconds_per_round']):.0f} s)",
                  f"- final comparison: {s['final_seconds']:.0f} s", f"- total: **{s['wall_seconds']:.0f} s** "
                  f"({s['wall_seconds'] / 60:.1f} min)",
                  f"- test accuracy, original per seed: {', '.join(f'{100 * a:.2f}' for a in s['original_test_accs'])}; "
                  f"searched: {', '.join(f'{100 * a:.2f}' for a in s['searched_test_accs'])}; paired gain "
                  f"{100 * s['test_acc_gain']:+.2f} points"
                  + (f", 95% CI [{100 * s['test_acc_gain_ci95'][0]:+.2f}, {100 * s['test_acc_gain_ci95'][1]:+.2f}]"
                     if s.get("test_acc_gain_ci95") else ""), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small rehearsal (CPU minutes)")
    p.add_argument("--out", default="bench_gpu.json", help="JSON file of the results")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST's IDX files (default: the Debian package's)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--skip", nargs="*", default=[], help="stages to skip")
    p.add_argument("--render", metavar="JSON", help="print the markdown of a results file and exit")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.render:
        print(render(Path(args.render)))
        return
    if args.worker:
        worker(args)
        return
    if args.quick and args.train_subset is None:
        args.train_subset = 2048
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = Results(Path(args.out), args)
    data = load_dataset("fashion-mnist", data_dir=args.data_dir, train_subset=args.train_subset)
    if "throughput" not in args.skip:
        results.stage("throughput", throughput, data, device, args.batch_size)
    if "side_by_side" not in args.skip:
        results.stage("side_by_side", side_by_side, data, device, args.batch_size, [1, 2] if args.quick else [1, 2, 4, 6])
    if "processes" not in args.skip:
        results.stage("processes", processes, args, [2] if args.quick else [2, 4])
    if "search" not in args.skip:
        shape = (2, 1, 1, 2) if args.quick else (10, 10, 20, 3)
        results.stage("search", whole_search, args, device, *shape)
    print(render(Path(args.out)))


if __name__ == "__main__":
    main()
