"""bench/bench_random_control.py at a small scale: it reproduces every recorded random search
with the old draws, and its tables hold what it computed."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_recorded_random_searches_are_reproduced_and_tables_filled(tmp_path):
    out = tmp_path / "control.md"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_random_control.py"), "--seeds", "4",
                           "--block", "2", "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    matched, total = map(int, re.search(r"\*\*(\d+) of the (\d+)\*\*", text).groups())
    assert matched == total > 0
    rows = [line for line in text.splitlines() if re.match(r"\| (resnet20|plain20|pyramidnet20) \| \d+ \|", line)]
    assert len(rows) == 3 * 2 * 3  # families x rules x round counts
    assert all(len(re.findall(r"\d\.\d{3} \(\d\.\d{3}; \d\.\d{3}\)", row)) == 3 for row in rows)


def test_too_few_seeds_for_two_blocks_are_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_random_control.py"), "--seeds", "3",
                           "--block", "2"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "--seeds must hold at least two blocks" in proc.stderr
