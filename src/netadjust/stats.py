"""Small statistics for results over seeds and repeats: means, spreads, confidence intervals, p-values.

No SciPy: Student's t quantile is found by bisection on its CDF, integrated numerically
(Simpson's rule on the density); it matches published tables to 1e-4.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    mean, std = mean_std(values)
    return mean, std / math.sqrt(len(values))


def _t_cdf(t: float, df: int, steps: int = 2000) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom, t >= 0."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    h = t / steps
    total = density(0.0) + density(t)
    total += sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
    return 0.5 + total * h / 3


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p in [0.5, 1)) of Student's t with ``df`` >= 1 degrees of freedom."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got p={p}, df={df}")
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, tuple[float, float] | None]:
    """Mean and its two-sided t confidence interval (``None`` for fewer than two values)."""
    mean, err = mean_stderr(values)
    if len(values) < 2:
        return mean, None
    half = t_quantile(0.5 + level / 2, len(values) - 1) * err
    return mean, (mean - half, mean + half)


def paired_difference(a: Sequence[float], b: Sequence[float],
                      level: float = 0.95) -> tuple[float, tuple[float, float] | None]:
    """Mean of ``a[i] - b[i]`` and its confidence interval: the comparison of two arms run on
    the same seeds, where seed-to-seed variation common to both cancels."""
    return mean_ci(_differences(a, b), level)


def _differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    return [x - y for x, y in zip(a, b)]


def paired_p_value(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the paired t test that the mean of ``a[i] - b[i]`` is 0 (``None`` for
    fewer than two pairs). Equal pairs throughout give 1; a nonzero difference with no spread, 0."""
    diffs = _differences(a, b)
    if len(diffs) < 2:
        return None
    mean, err = mean_stderr(diffs)
    if err == 0:
        return 1.0 if mean == 0 else 0.0
    return max(0.0, 2 * (1 - _t_cdf(abs(mean) / err, len(diffs) - 1)))
