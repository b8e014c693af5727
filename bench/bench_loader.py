"""Is the in-memory loader a bottleneck? Training throughput with and without it.

For each (data set, model) case, the same number of SGD steps of the same batch size is timed
(a) fed by ``DataSource.batches(train=True)`` (shuffle + random crop + flip + normalise) and
(b) fed by one pre-made normalised tensor (no loader, no augmentation). The overhead is
``time(a) / time(b) - 1``; the target is < 10%. Single steps of the two alternate (a b, b a,
...) because the machines are shared and noisy; the total ratio and the median of the per-pair
ratios are reported. The loader alone (no model) is timed too: its cost per image divided by the
cost of a training step per image is the overhead to expect, and it is much less noisy.

    .venv/bin/python bench/bench_loader.py --quick   # seconds
    .venv/bin/python bench/bench_loader.py           # full, a few minutes on 2 cores

Writes bench/RESULTS_loader.md (or --out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from netadjust.data import TensorSource, load_dataset, synthetic
from netadjust.data import Augment


def small_cnn(in_channels: int, num_classes: int) -> nn.Module:
    """A light 4-conv network: little compute per image, so loader cost shows up."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*block(in_channels, 16), *block(16, 32), nn.MaxPool2d(2),
                         *block(32, 32), nn.MaxPool2d(2), *block(32, 64),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


class _Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        short = F.avg_pool2d(x, 2) if self.stride == 2 else x
        if self.pad:
            short = F.pad(short, (0, 0, 0, 0, 0, self.pad))
        return F.relu(out + short)


def plain_resnet20(in_channels: int, num_classes: int) -> nn.Module:
    """ResNet-20 for CIFAR (16/32/64 channels, 3x3 blocks), written here in plain torch."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False),
                               nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for stage, cout in enumerate((16, 32, 64)):
        for i in range(3):
            layers.append(_Basic(cin, cout, 2 if stage and i == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


def resnet20(in_channels: int, num_classes: int, input_size: int) -> tuple[nn.Module, str]:
    """netadjust's own ResNet-20 if the models package works, else the plain one above."""
    try:
        from netadjust.models import get_arch

        arch = get_arch("resnet20", num_classes=num_classes, in_channels=in_channels,
                        input_size=input_size)
        return arch.build(), "resnet20 (netadjust.models)"
    except Exception as e:  # noqa: BLE001 - the models package may not be there yet
        print(f"# netadjust.models unusable ({type(e).__name__}: {e}); using plain ResNet-20",
              file=sys.stderr)
        return plain_resnet20(in_channels, num_classes), "resnet20 (plain torch, in script)"


def make_data(name: str) -> TensorSource:
    if name == "cifar-shaped":
        # CIFAR-sized synthetic data with the CIFAR augmentation (no CIFAR files needed).
        src = synthetic(num_classes=10, in_channels=3, input_size=32, n_train=10000,
                        n_heldout=0, n_test=512)
        src.augment = Augment(crop_padding=4, flip=True)
        src.name = "cifar-shaped (synthetic 3x32x32, pad 4 + flip)"
        return src
    return load_dataset(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sgd_step(model: nn.Module, opt: torch.optim.Optimizer, feed, device: torch.device) -> float:
    """Seconds for one SGD step on the next batch of ``feed`` (fetching it included)."""
    _sync(device)
    start = time.perf_counter()
    x, y = next(feed)
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    _sync(device)
    return time.perf_counter() - start


def loader_feed(src: TensorSource, batch_size: int, seed: int, device: torch.device):
    """Endless training batches, epoch after epoch."""
    epoch = 0
    while True:
        yield from src.batches("train", batch_size=batch_size, train=True, epoch=epoch, seed=seed,
                               device=device)
        epoch += 1


def fixed_feed(x: torch.Tensor, y: torch.Tensor):
    while True:
        yield x, y


def bench_case(src: TensorSource, model_name: str, batch_size: int, steps: int,
               device: torch.device) -> dict:
    torch.manual_seed(0)
    if model_name == "small":
        model, label = small_cnn(src.in_channels, src.num_classes), "small 4-conv CNN"
    else:
        model, label = resnet20(src.in_channels, src.num_classes, src.input_size)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x0, y0 = next(src.batches("train", batch_size=batch_size, train=False, device=device))
    x0, y0 = x0.clone(), y0.clone()
    feed, fixed = loader_feed(src, batch_size, seed=0, device=device), fixed_feed(x0, y0)
    for _ in range(2):  # warm-up (allocator, kernels)
        sgd_step(model, opt, fixed, device), sgd_step(model, opt, feed, device)
    # Steps alternate (a b, b a, a b, ...) so that load from other processes hits both alike.
    with_loader, without = [], []
    for i in range(steps):
        if i % 2 == 0:
            with_loader.append(sgd_step(model, opt, feed, device))
            without.append(sgd_step(model, opt, fixed, device))
        else:
            without.append(sgd_step(model, opt, fixed, device))
            with_loader.append(sgd_step(model, opt, feed, device))
    # the loader alone: whole epochs, no model
    _sync(device)
    n, start = 0, time.perf_counter()
    for epoch in range(2):
        for x, _ in src.batches("train", batch_size=batch_size, train=True, epoch=epoch,
                                device=device):
            n += len(x)
    _sync(device)
    loader_only = n / (time.perf_counter() - start)
    ta, tb = sum(with_loader), sum(without)
    images = steps * batch_size
    pair = statistics.median(a / b for a, b in zip(with_loader, without)) - 1
    return dict(data=src.name, model=label, ips_loader=images / ta, ips_fixed=images / tb,
                overhead=ta / tb - 1, pair=pair, loader_only=loader_only,
                share=(images / tb) / loader_only)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few steps, one case (seconds)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=None, help="SGD steps of each variant per case")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS_loader.md"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()[0]
    fm_ok = Path("/usr/share/datasets/fashion-mnist").is_dir()
    first = "fashion-mnist" if fm_ok else "digits"
    if args.quick:
        cases = [(first, "small")]
        steps = args.steps or 16
    else:
        cases = [(first, "small"), (first, "resnet20"), ("cifar-shaped", "small"),
                 ("cifar-shaped", "resnet20")]
        steps = args.steps or 60
    sources: dict[str, TensorSource] = {}
    rows = []
    for data_name, model_name in cases:
        if data_name not in sources:
            sources[data_name] = make_data(data_name)
        row = bench_case(sources[data_name], model_name, args.batch_size, steps, device)
        rows.append(row)
        print(f"{row['data'][:34]:34s} {row['model'][:30]:30s} loader {row['ips_loader']:7.0f} img/s"
              f"  fixed {row['ips_fixed']:7.0f} img/s  overhead {100 * row['overhead']:+5.1f}% "
              f"(median pair {100 * row['pair']:+5.1f}%)  loader alone {row['loader_only']:8.0f} "
              f"img/s (= {100 * row['share']:.2f}% of a step)")
    command = "python bench/bench_loader.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# In-memory loader overhead",
        "",
        "Training throughput of SGD steps fed (a) by `DataSource.batches(train=True)` (shuffle, "
        "random crop, flip, normalise) and (b) by one pre-made normalised tensor, same batch size "
        "and number of steps, single steps of (a) and (b) alternating in one process. Overhead = "
        "time(a) / time(b) - 1 over all steps, and the median over (a, b) pairs of the same "
        "ratio (target < 10%). *Loader alone*: images/s of the loader with no "
        "model (2 epochs); *loader share* = (b) / loader alone, the overhead expected from the "
        "loader's own cost, which is far less noisy than the measured difference on a shared "
        "machine.",
        "",
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- command: `{command.strip()}`",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} (CPU, {torch.get_num_threads()} "
        f"threads), Python {platform.python_version()}"
        + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
        f"- device: {device}; 1-minute load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (other processes share the machine)",
        f"- batch {args.batch_size}, {steps} steps of each variant per case, alternating",
        "",
        "| data | model | with loader (img/s) | pre-made tensor (img/s) | overhead (total) | "
        "overhead (median pair) | loader alone (img/s) | loader share |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['data']} | {r['model']} | {r['ips_loader']:.0f} | {r['ips_fixed']:.0f} "
                     f"| {100 * r['overhead']:+.1f}% | {100 * r['pair']:+.1f}% "
                     f"| {r['loader_only']:.0f} | {100 * r['share']:.2f}% |")
    lines.append("")
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
