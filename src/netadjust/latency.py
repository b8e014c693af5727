"""Latency as the budget: a lookup table of measured layer latencies, interpolated.

As NetAdapt does, the network's latency is not timed for every candidate widths (the budget
restore evaluates dozens per round) but predicted from a table measured once:

- every MAC-bearing layer of the architecture (``Arch.layers``) belongs to a *kind*: its
  kernel, output size, grouping (plain, grouped, depthwise), bias and whether a BatchNorm
  follows. For each kind a small grid of (input channels, output channels) spanning a quarter
  to two and a half times the widths it has at the start is timed as an isolated block (conv,
  its BatchNorm, ReLU) at the latency batch size; a depthwise kind has one axis;
- a layer's latency at any widths is the bilinear interpolation of its kind's grid (linear
  extrapolation beyond it); the network's is the sum over its layers times a *calibration*: the
  timed latency of the whole starting network over the sum of its layers' predictions (what the
  residual additions, pooling and the framework add, taken as proportional: on this project's
  2-core CPU that predicted other widths better than a fixed overhead, bench/RESULTS_latency.md);
- every timing is a median of ``repeats`` runs after ``warmup`` runs, synchronised on a GPU,
  taken relative to the starting network timed right after it (:class:`Stopwatch`), so that a
  machine whose speed drifts affects the table less; a machine busy with other work still
  gives a worse one: measure on an idle machine.

:meth:`LatencyTable.predict` is the cost the budget restore holds, and its per-key forward
difference (:meth:`LatencyTable.derivative`) can replace the MACs derivative in FUR's drop rates
(``--fur-cost latency``). The table is JSON (``to_dict`` / ``from_dict``), kept in the run
directory so a resumed search uses the same one.
"""

from __future__ import annotations

import bisect
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .models import Arch
from .models.base import Layer, forward_difference

log = logging.getLogger(__name__)

GRID = (0.25, 0.5, 1.0, 1.6, 2.5)  # multiples of a kind's starting widths that the table times
Measure = Callable[[nn.Module, torch.Tensor], float]


def time_module(module: nn.Module, x: torch.Tensor, *, warmup: int = 3, repeats: int = 15) -> float:
    """Median seconds of ``module(x)`` (no gradients), after ``warmup`` calls."""
    cuda = x.device.type == "cuda"
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize(x.device)
            start = time.perf_counter()
            module(x)
            if cuda:
                torch.cuda.synchronize(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def kind(layer: Layer) -> str:
    """What a layer's latency depends on besides its widths, as a table key (taken at the
    starting widths: a grouped conv may have as many input channels as groups elsewhere)."""
    kh, kw = layer.kernel if isinstance(layer.kernel, tuple) else (layer.kernel, layer.kernel)
    group = "dw" if layer.groups == layer.cin and layer.groups > 1 else f"g{layer.groups}"
    return f"k{kh}x{kw}/{layer.out_hw[0]}x{layer.out_hw[1]}/{group}/{'bias' if layer.bias else 'nobias'}/" \
           f"{'bn' if layer.norm else 'nonorm'}"


def block(layer: Layer, cin: int, cout: int, depthwise: bool) -> nn.Module:
    """The isolated block a table entry times: conv (stride 1, same padding), BN, ReLU."""
    kh, kw = layer.kernel if isinstance(layer.kernel, tuple) else (layer.kernel, layer.kernel)
    groups = cin if depthwise else layer.groups
    parts: list[nn.Module] = [nn.Conv2d(cin, cout, (kh, kw), padding=(kh // 2, kw // 2), groups=groups, bias=layer.bias)]
    if layer.norm:
        parts.append(nn.BatchNorm2d(cout))
    parts.append(nn.ReLU(inplace=True))
    return nn.Sequential(*parts).eval()


def _axis(values: list[int], step: int) -> list[int]:
    """Grid points: the GRID multiples of the smallest and largest starting value, on ``step``."""
    lo, hi = min(values), max(values)
    points = {max(step, step * round(lo * g / step)) for g in GRID} | {max(step, step * round(hi * g / step))
                                                                        for g in GRID}
    return sorted(points)


def _interp(xs: list[int], ys: list[float], x: float) -> float:
    """Piecewise-linear interpolation of (xs, ys) at x, extrapolating the end segments."""
    if len(xs) == 1:
        return ys[0]
    i = min(max(bisect.bisect_right(xs, x) - 1, 0), len(xs) - 2)
    return ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i])


class LatencyTable:
    """Predicted inference latency (seconds) of an architecture at any widths."""

    def __init__(self, tables: Mapping[str, dict[str, Any]], kinds: Mapping[str, str], calibration: float,
                 measured: float, device: str, batch: int) -> None:
        self.tables = dict(tables)  # kind -> {"cin": [...], "cout": [...], "depthwise": bool, "seconds": [[...]]}
        self.kinds = dict(kinds)  # layer name -> its kind
        self.calibration, self.measured, self.device, self.batch = calibration, measured, device, batch

    @classmethod
    def measure(cls, arch: Arch, device: torch.device, batch: int = 1, *, measure: Measure | None = None,
                progress: bool = True) -> LatencyTable:
        """Time the table's grid and the starting network of ``arch`` on ``device`` (with
        ``measure``, default :func:`time_module`), through a :class:`Stopwatch`."""
        watch = Stopwatch(arch, device, batch, measure)
        layers = arch.layers(arch.default_widths())
        by_kind: dict[str, list[Layer]] = {}
        for layer in layers:
            by_kind.setdefault(kind(layer), []).append(layer)
        tables = {}
        began = time.perf_counter()
        for name, members in by_kind.items():
            first = members[0]
            h, w = first.out_hw
            depthwise = first.groups == first.cin and first.groups > 1
            step = 1 if depthwise else first.groups
            cins = _axis([m.cin for m in members], step)
            couts = cins if depthwise else _axis([m.cout for m in members], step)
            seconds = [[watch(block(first, cin, cout, depthwise).to(device), torch.randn(batch, cin, h, w, device=device),
                              rounds=1) for cout in ([cin] if depthwise else couts)] for cin in cins]
            tables[name] = {"cin": cins, "cout": couts, "depthwise": depthwise, "seconds": seconds}
        table = cls(tables, {layer.name: kind(layer) for layer in layers}, 1.0, watch.seconds, str(device), batch)
        table.calibration = table.measured / table.predict(arch.default_widths(), arch)
        if progress:
            log.info("latency table: %d layer kinds, %d timings in %.1fs on %s (batch %d); starting network %.3f ms, "
                     "%.2fx the sum of its layers", len(tables),
                     sum(len(t["seconds"]) * len(t["seconds"][0]) for t in tables.values()),
                     time.perf_counter() - began, device, batch, 1e3 * table.measured, table.calibration)
        return table

    def layer_seconds(self, layer: Layer) -> float:
        t = self.tables[self.kinds[layer.name]]
        if t["depthwise"]:
            return _interp(t["cin"], [row[0] for row in t["seconds"]], layer.cin)
        along_cout = [_interp(t["cout"], row, layer.cout) for row in t["seconds"]]
        return _interp(t["cin"], along_cout, layer.cin)

    def predict(self, widths: Mapping[str, int], arch: Arch) -> float:
        """Predicted seconds of one forward pass of ``batch`` images at ``widths``."""
        return self.calibration * sum(self.layer_seconds(layer) for layer in arch.layers(widths))

    def derivative(self, widths: Mapping[str, int], arch: Arch) -> dict[str, float]:
        """Predicted seconds one more channel of each key adds (forward difference; at least a
        picosecond, as timings are not monotonic everywhere and a cost must be positive)."""
        steps = forward_difference(lambda w: self.predict(w, arch), widths)
        return {key: max(step, 1e-12) for key, step in steps.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"tables": self.tables, "kinds": self.kinds, "calibration": self.calibration,
                "measured": self.measured, "device": self.device, "batch": self.batch}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyTable:
        return cls(data["tables"], data["kinds"], data["calibration"], data["measured"], data["device"], data["batch"])


class Stopwatch:
    """Times modules against a reference, the architecture's starting network, timed back to
    back with each of them: a module's seconds are the median of ``rounds`` ratios t(module) /
    t(reference) (three; one per table entry, as they are many), times the reference's own
    seconds (the least of five medians, taken once).
    A machine whose speed drifts (a shared VM moved one network's timing by 2x within seconds,
    bench/RESULTS_latency.md) then changes both timings of a ratio alike, and the table, the
    starting network and the final check stay in one unit."""

    def __init__(self, arch: Arch, device: torch.device, batch: int = 1, measure: Measure | None = None,
                 seconds: float | None = None) -> None:
        self.measure = measure or time_module
        self.reference = arch.build(arch.default_widths()).to(device).eval()
        self.x = torch.randn(batch, arch.in_channels, arch.input_size, arch.input_size, device=device)
        self.seconds = seconds if seconds is not None else min(self.measure(self.reference, self.x) for _ in range(5))

    @classmethod
    def of(cls, table: LatencyTable, arch: Arch, measure: Measure | None = None) -> Stopwatch:
        """The stopwatch ``table`` was measured with (its reference at the table's seconds)."""
        return cls(arch, torch.device(table.device), table.batch, measure, seconds=table.measured)

    def __call__(self, module: nn.Module, x: torch.Tensor, rounds: int = 3) -> float:
        ratios = [self.measure(module, x) / self.measure(self.reference, self.x) for _ in range(rounds)]
        return statistics.median(ratios) * self.seconds

    def network(self, arch: Arch, widths: Mapping[str, int]) -> float:
        """Seconds of the network at ``widths`` on the reference's device and batch."""
        model = arch.build(widths).to(self.x.device).eval()
        return self(model, torch.randn(self.x.shape[0], arch.in_channels, arch.input_size, arch.input_size,
                                       device=self.x.device))
