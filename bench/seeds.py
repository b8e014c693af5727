"""``--seeds`` of the evidence scripts: a count or a range of seeds (bench_evidence.py, run_seeds.py)."""

from __future__ import annotations

import argparse


def parse_seeds(text: str) -> int | str:
    """``--seeds``: a count N (seeds 0..N-1), kept as an int so that earlier results files still continue, or a
    range "A..B" (seeds A to B), for a run on seeds of its own."""
    first, dots, last = text.partition("..")
    try:
        if not dots and int(text) >= 1:
            return int(text)
        if dots and 0 <= int(first) <= int(last):
            return f"{int(first)}..{int(last)}"
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"takes a count N >= 1 (seeds 0..N-1) or a range A..B with 0 <= A <= B "
                                     f"(seeds A to B), got {text!r}")


def seed_range(seeds: int | str) -> range:
    """The seeds a results file's ``seeds`` setting names (see :func:`parse_seeds`)."""
    if isinstance(seeds, int):
        return range(seeds)
    first, last = map(int, seeds.split(".."))
    return range(first, last + 1)
