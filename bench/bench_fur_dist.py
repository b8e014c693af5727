"""FUR estimation with 1 process vs 2 processes under torchrun (gloo, CPU): layers dealt out.

    python bench/bench_fur_dist.py [--quick]

A ResNet-20 is trained briefly on digits and saved; then FUR is estimated (fast mode, 5
repeats) by one process with 2 threads and by `torchrun --nproc-per-node 2` with 1 thread per
process, on the same 2 cores. Writes bench/RESULTS_fur_dist.md with the times and their ratio,
and checks both give the same FUR vector.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SETTINGS = dict(num_classes=10, in_channels=1, input_size=8)


def worker(state_path: str, out_path: str, repeats: int) -> None:
    from netadjust.data import load_dataset
    from netadjust.dist import exit_worker, init_distributed, shutdown
    from netadjust.fur import estimate_fur
    from netadjust.models import get_arch

    env = init_distributed(torch.device("cpu"))
    data = load_dataset("digits", heldout_fraction=0.3)
    arch = get_arch("resnet20", **SETTINGS)
    widths = arch.default_widths()
    model = arch.build(widths)
    model.load_state_dict(torch.load(state_path, weights_only=True))
    estimate_fur(model, data, arch, widths, repeats=1, seed=1, env=env)  # warm-up
    start = time.perf_counter()
    result = estimate_fur(model, data, arch, widths, repeats=repeats, seed=0, env=env)
    seconds = time.perf_counter() - start
    if env.rank == 0:
        Path(out_path).write_text(json.dumps({"seconds": seconds, "fur": result.fur}))
    shutdown()
    exit_worker(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("STATE", "OUT", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    from netadjust.config import TrainConfig
    from netadjust.data import load_dataset
    from netadjust.models import get_arch
    from netadjust.train import build_and_train

    repeats = 2 if args.quick else 5
    tmp = Path(tempfile.mkdtemp())
    arch = get_arch("resnet20", **SETTINGS)
    model = build_and_train(arch, arch.default_widths(), load_dataset("digits", heldout_fraction=0.3),
                            TrainConfig(epochs=2 if args.quick else 6), progress=False).model
    torch.save(model.state_dict(), tmp / "model.pt")
    me = [str(Path(__file__).resolve()), "--worker", str(tmp / "model.pt")]
    runs = {}
    for label, threads, cmd in (
        ("1 process x 2 threads", "2", [sys.executable, *me, str(tmp / "one.json"), str(repeats)]),
        ("2 processes x 1 thread", "1", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                         "--nproc-per-node", "2", *me, str(tmp / "two.json"), str(repeats)]),
    ):
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": threads})
        runs[label] = json.loads((tmp / ("one.json" if threads == "2" else "two.json")).read_text())
    (a, ra), (b, rb) = runs.items()
    max_diff = max(abs(ra["fur"][k] - rb["fur"][k]) for k in ra["fur"])
    lines = [
        "# FUR estimation: 1 vs 2 processes (torchrun, gloo, CPU)",
        "",
        f"- date: {datetime.date.today()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs), CPython "
        f"{platform.python_version()}, torch {torch.__version__}",
        f"- command: `python bench/bench_fur_dist.py{' --quick' if args.quick else ''}`",
        f"- ResNet-20 on digits (431 held-out images), fast mode, {repeats} repeats, layers dealt out to ranks",
        "",
        "| setting | seconds | speed-up |",
        "|---|---|---|",
        f"| {a} | {ra['seconds']:.2f} | 1.00x |",
        f"| {b} | {rb['seconds']:.2f} | {ra['seconds'] / rb['seconds']:.2f}x |",
        "",
        f"Largest difference between the two FUR vectors: {max_diff:.2e} (same per-key mask streams).",
    ]
    text = "\n".join(lines) + "\n"
    Path(__file__).with_name("RESULTS_fur_dist.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
