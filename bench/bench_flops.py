"""Speed of exact FLOPs evaluation (no model built) against counting on a built model.

    python bench/bench_flops.py [--quick]

Writes bench/RESULTS_flops.md. The baseline is PyTorch's FlopCounterMode on the built model
(build + one forward of one image), the only other exact counter at hand.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from netadjust.models import get_arch


def per_call(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def torch_count(arch, widths) -> int:
    model = arch.build(widths).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, arch.in_channels, arch.input_size, arch.input_size))
    return counter.get_total_flops() // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats, torch_repeats = (200, 2) if args.quick else (2000, 5)
    rows = []
    for name in ("resnet20", "resnet56", "resnet110"):
        arch = get_arch(name, num_classes=100)
        w = arch.default_widths()
        assert arch.macs(w) == torch_count(arch, w)
        ours = per_call(lambda: arch.macs(w), repeats)
        deriv = per_call(lambda: arch.macs_derivative(w), max(repeats // 50, 5))
        theirs = per_call(lambda: torch_count(arch, w), torch_repeats)
        rows.append((name, len(w), ours * 1e3, deriv * 1e3, theirs * 1e3, theirs / ours))
    lines = [
        "# FLOPs evaluation speed",
        "",
        f"- date: {datetime.date.today()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, torch {torch.__version__}",
        f"- command: `python bench/bench_flops.py{' --quick' if args.quick else ''}`",
        "",
        "| arch (CIFAR-100, 32x32) | keys | `arch.macs` (ms) | `macs_derivative` (ms) | build + FlopCounterMode (ms) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {k} | {a:.4f} | {d:.2f} | {t:.1f} | {r:,.0f}x |" for n, k, a, d, t, r in rows]
    text = "\n".join(lines) + "\n"
    Path(__file__).with_name("RESULTS_flops.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
