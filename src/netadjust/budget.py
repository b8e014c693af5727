"""FLOPs restore: rescale all searchable widths uniformly to a MACs budget (pure).

After an adjustment the network's MACs drift from the budget ``F0``. All searchable widths are
multiplied by one factor ``s`` (stem and classifier are fixed), rounded to integers (or to a
multiple, e.g. 8, for hardware-friendly widths) and kept at or above the minimum width. ``s``
is found by bisection until ``|F - F0| / F <= tolerance`` (1% in the official code). A key
whose width the architecture constrains (a grouped conv's groups, an even channel split:
``Arch.width_steps``) is rounded to the least common multiple of both. MACs are
evaluated from the layer list, never by building a model, so this takes milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .errors import ConfigError
from .models import Arch

if TYPE_CHECKING:
    from .latency import LatencyTable


class Cost:
    """What the budget holds: MACs (default), or the latency a lookup table predicts (seconds)."""

    def __init__(self, arch: Arch, table: LatencyTable | None = None) -> None:
        self.arch, self.table = arch, table

    def __call__(self, widths: Mapping[str, int]) -> float:
        return self.arch.macs(widths) if self.table is None else self.table.predict(widths, self.arch)

    def start(self) -> float:
        """The cost of the family's starting widths: their MACs, or their timed latency."""
        return self.arch.macs(self.arch.default_widths()) if self.table is None else self.table.measured

    def show(self, value: float) -> str:
        return f"{value:,.0f} MACs" if self.table is None else f"{1e3 * value:.3f} ms"


def lowest(step: int, min_width: int) -> int:
    """The smallest width on ``step`` that is at least ``min_width``."""
    return step * math.ceil(min_width / step)


def round_to(value: float, multiple: int = 1) -> int:
    """``value`` rounded to the nearest multiple of ``multiple`` (at least ``multiple``)."""
    return max(multiple, multiple * round(value / multiple))


def scale_widths(widths: Mapping[str, int], scale: float, *, multiple_of: int | Mapping[str, int] = 1,
                 min_width: int = 1) -> dict[str, int]:
    """Every width times ``scale``, rounded to its multiple (one for all, or per key), and not
    below ``min_width`` (rounded up to the multiple)."""
    steps = multiple_of if isinstance(multiple_of, Mapping) else dict.fromkeys(widths, multiple_of)
    return {k: max(lowest(steps[k], min_width), round_to(w * scale, steps[k])) for k, w in widths.items()}


def within(macs: int, target: float, tolerance: float) -> bool:
    return abs(macs - target) / macs <= tolerance


def fit_budget(arch: Arch, widths: Mapping[str, int], target: float, *, tolerance: float = 0.01,
               multiple_of: int = 1, min_width: int = 1, max_steps: int = 100,
               cost: Cost | None = None) -> dict[str, int]:
    """``widths`` rescaled uniformly so their ``cost`` (default: ``arch.macs``) is within
    ``tolerance`` of ``target``.

    Raises :class:`ConfigError` when the budget is below what the minimum widths cost, or when
    the rounding granularity makes the tolerance unreachable.
    """
    steps = {k: math.lcm(multiple_of, step) for k, step in arch.width_steps().items()}
    measure = cost or Cost(arch)
    show = measure.show

    def scaled(s: float) -> float:
        return measure(scale_widths(widths, s, multiple_of=steps, min_width=min_width))

    if multiple_of == 1 and all(w % steps[k] == 0 for k, w in widths.items()) and within(measure(widths), target,
                                                                                        tolerance):
        return dict(widths)
    lo, hi = 0.0, 1.0
    floor = scaled(lo)
    if floor > target * (1 + tolerance):
        raise ConfigError(f"budget of {show(target)} is unreachable: {arch.name} costs {show(floor)} with "
                          f"every searchable layer at its minimum width ({max(min_width, multiple_of)}); "
                          f"raise --budget or lower --min-width / --multiple-of")
    while scaled(hi) < target:
        hi *= 2
        if hi > 1e6:
            raise ConfigError(f"budget of {show(target)} is unreachable by widening {arch.name}")
    for _ in range(max_steps):
        mid = (lo + hi) / 2
        candidate = scale_widths(widths, mid, multiple_of=steps, min_width=min_width)
        value = measure(candidate)
        if within(value, target, tolerance):
            return candidate
        lo, hi = (mid, hi) if value < target else (lo, mid)
    # No single factor lands within tolerance: one rounding step changes MACs too much (equal
    # widths in a stage, a coarse --multiple-of, or a "max" residual stream whose width one conv
    # sets). Leave uniform scaling by one layer at a time: from the rounding below the target,
    # round layers up; from the one above, round layers down, nearest to their rounding first.
    below = scale_widths(widths, lo, multiple_of=steps, min_width=min_width)
    above = scale_widths(widths, hi, multiple_of=steps, min_width=min_width)
    best, best_value = below, measure(below)
    up = sorted(widths, key=lambda k: above[k] - widths[k] * hi)
    down = sorted(widths, key=lambda k: widths[k] * hi - above[k])
    for start, order, sign in ((below, up, 1), (above, down, -1)):
        candidate = dict(start)
        for key in order:
            previous = candidate[key]
            step = sign * steps[key]
            candidate[key] = max(lowest(steps[key], min_width), previous + step)
            value = measure(candidate)
            if within(value, target, tolerance):
                return candidate
            if abs(value - target) < abs(best_value - target):
                best, best_value = dict(candidate), value
            if (value - target) * step > 0:  # overshot: undo and try the next layer
                candidate[key] = previous
    raise ConfigError(f"cannot rescale {arch.name} to {show(target)} within {tolerance:.1%}: the closest is "
                      f"{show(best_value)} ({(best_value - target) / target:+.1%}); raise --tolerance or lower "
                      f"--multiple-of")
