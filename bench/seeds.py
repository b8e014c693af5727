"""``--seeds`` of the evidence scripts: a count, a range of seeds, or ranges joined by commas (bench_evidence.py,
run_seeds.py)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

ALLOWED = ("takes a count N >= 1 (seeds 0..N-1), a range A..B with 0 <= A <= B (seeds A to B) or ascending ranges "
           "joined by commas (A..B,C..D with B < C)")


def _bounds(text: str) -> list[tuple[int, ...]]:
    """The numbers of each comma-separated part of ``text``, split at ".." ("0..9,30..45": (0, 9), (30, 45))."""
    return [tuple(map(int, part.split(".."))) for part in text.split(",")]


def parse_seeds(text: str) -> int | str:
    """``--seeds``: a count N (seeds 0..N-1), kept as an int so that earlier results files still continue, or
    ranges "A..B" (seeds A to B) joined by commas in ascending order, for a run on seeds of its own (such as a
    merge of the seeds of two plans, "0..9,30..45")."""
    try:
        if ".." not in text and int(text) >= 1:
            return int(text)
        ranges = _bounds(text)
        if all(len(r) == 2 and 0 <= r[0] <= r[1] for r in ranges) and all(
                b[0] > a[1] for a, b in zip(ranges, ranges[1:])):
            return ",".join(f"{first}..{last}" for first, last in ranges)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{ALLOWED}, got {text!r}")


def seed_range(seeds: int | str) -> tuple[int, ...]:
    """The seeds a results file's ``seeds`` setting names (see :func:`parse_seeds`), in order."""
    if isinstance(seeds, int):
        return tuple(range(seeds))
    return tuple(seed for first, last in _bounds(seeds) for seed in range(first, last + 1))


def seed_text(seeds: Iterable[int]) -> str:
    """Seeds as "A..B" where they run on without a gap, runs joined by ", " (a seed alone as itself)."""
    runs: list[list[int]] = []
    for seed in seeds:
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ", ".join(f"{r[0]}..{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
