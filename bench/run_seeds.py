"""Run a benchmark once per seed, in order, inside a time window: how the plans of
bench/RESULTS_evidence.md are run, each seed its own run and results file, with a cut-off fixed ahead.

    python bench/run_seeds.py --seeds 0..7 --last-start 2026-12-05T16:00 --stop 2026-12-05T16:15 -- \\
        python bench/bench_evidence.py --mode gpu --device cpu ... --seeds {seed}..{seed} \\
        --out bench/results_evidence_..._s{seed}.json

Everything after ``--`` is the command; ``{seed}`` in it becomes each seed. No seed is started after
``--last-start``, and a seed still running at ``--stop`` is killed with everything it started (a
results file of bench_evidence.py keeps every training that ended: it is rewritten after each).
Times are UTC. One line per seed says how it ended; the exit status is 0 only if every seed ran and
ended with status 0. Merge the per-seed files afterwards with bench_evidence.py's ``--searches-from``
and ``--finals-from`` (nothing is trained again).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import subprocess
import sys

from seeds import parse_seeds, seed_range


def utc_time(text: str) -> dt.datetime:
    """A ``--last-start`` / ``--stop`` time: ISO date and time, UTC unless it names its offset."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a date and time such as 2026-12-05T16:00 (UTC), got {text!r}")
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def stamp(t: dt.datetime) -> str:
    return t.strftime("%H:%M:%S")


def run_seed(command: list[str], stop: dt.datetime) -> int | None:
    """Run ``command`` in a process group of its own until it ends (its exit status) or ``stop`` (None,
    the whole group killed)."""
    proc = subprocess.Popen(command, start_new_session=True)
    try:
        return proc.wait(timeout=max((stop - now()).total_seconds(), 0))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                usage="%(prog)s --seeds A..B --last-start TIME --stop TIME -- COMMAND ... {seed} ...")
    p.add_argument("--seeds", type=parse_seeds, required=True, help="N (seeds 0..N-1), A..B or A..B,C..D; run in order")
    p.add_argument("--last-start", type=utc_time, required=True, help="no seed is started after this time (UTC)")
    p.add_argument("--stop", type=utc_time, required=True, help="a seed still running then is killed (UTC)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="after --: the command, {seed} where the seed goes")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not any("{seed}" in a for a in command):
        p.error(f"the command after -- must contain {{seed}} (each seed its own run and file), got {command!r}")
    if args.last_start > args.stop:
        p.error(f"--last-start ({args.last_start.isoformat()}) is after --stop ({args.stop.isoformat()})")
    seeds = list(seed_range(args.seeds))
    ended = []
    for i, seed in enumerate(seeds):
        start = now()
        if start > args.last_start:
            print(f"run_seeds: seeds {seeds[i:]} not started: {stamp(start)} is past --last-start "
                  f"{stamp(args.last_start)}", flush=True)
            break
        print(f"run_seeds: seed {seed} started {stamp(start)}", flush=True)
        status = run_seed([a.replace("{seed}", str(seed)) for a in command], args.stop)
        if status is None:
            print(f"run_seeds: seed {seed} killed at --stop {stamp(args.stop)}; seeds {seeds[i + 1:]} not started",
                  flush=True)
            break
        print(f"run_seeds: seed {seed} ended {stamp(now())} with status {status}", flush=True)
        if status == 0:
            ended.append(seed)
    print(f"run_seeds: {len(ended)} of {len(seeds)} seeds ran to the end: {ended}", flush=True)
    return 0 if ended == seeds else 1


if __name__ == "__main__":
    sys.exit(main())
