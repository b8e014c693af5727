"""How often a torchrun worker aborts at exit: a normal exit against `netadjust.dist.exit_worker`.

    python bench/bench_worker_exit.py [--runs 40]

Each run starts 2 CPU processes (gloo) that all-reduce a tensor made in Python and end with the
process group still alive (what DDP leaves behind, torch 2.13). A gloo thread that is still
releasing that collective's tensors when the interpreter finalizes is killed inside C++ code and
the process aborts ("terminate called without an active exception"); ending through
`exit_worker` skips the teardown. Writes bench/RESULTS_worker_exit.md.
"""

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import torch
from machine import device_name

WORKER = textwrap.dedent('''
    import sys, torch, torch.distributed as dist
    from netadjust.dist import exit_worker
    dist.init_process_group("gloo")
    t = torch.ones(3)
    dist.all_reduce(t)
    del t
    if sys.argv[1] == "exit_worker":
        exit_worker(0)
''')
ENDINGS = {"normal exit": "normal", "exit_worker(0)": "exit_worker"}


def aborted(script: Path, ending: str) -> bool:
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), ending], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return proc.returncode != 0 or "terminate called" in proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="torchrun launches per ending (default 40)")
    args = parser.parse_args()
    script = Path(tempfile.mkdtemp()) / "worker.py"
    script.write_text(WORKER)
    counts = {}
    for label, ending in ENDINGS.items():
        counts[label] = sum(aborted(script, ending) for _ in range(args.runs))
        print(f"{label}: {counts[label]} of {args.runs} runs aborted", flush=True)
    lines = [
        "# Worker exit under torchrun: a normal exit against exit_worker",
        "",
        f"- date: {datetime.date.today()}",
        f"- machine: {device_name()}, torch {torch.__version__}",
        f"- command: `python bench/bench_worker_exit.py --runs {args.runs}`",
        "- each run: `torchrun --standalone --nproc-per-node 2`, gloo, one all-reduce of a tensor made in "
        "Python, the process group left alive (as DDP leaves it)",
        "",
        "| ending | runs | runs with an aborted rank |",
        "|---|---|---|",
        *[f"| {label} | {args.runs} | {n} |" for label, n in counts.items()],
        "",
        "An aborted rank prints \"terminate called without an active exception\" and torchrun reports the "
        "run as failed. This is why `netadjust` ends every torchrun worker through "
        "`netadjust.dist.exit_worker`.",
    ]
    text = "\n".join(lines) + "\n"
    Path(__file__).with_name("RESULTS_worker_exit.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
