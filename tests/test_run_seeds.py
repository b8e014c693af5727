"""bench/run_seeds.py: one run per seed, in order, none started after --last-start, one still running at
--stop killed; bad arguments refused with what was given."""

import datetime as dt
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Appends its seed to a file (the order of the lines is the order the seeds ran in); exits with status 3 for a
# seed named after it.
APPEND = [sys.executable, "-c",
          "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n'); "
          "sys.exit(3 if sys.argv[2] in sys.argv[3:] else 0)"]


def at(minutes: float) -> str:
    """A time ``minutes`` from now, as the runner takes it (UTC)."""
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)).isoformat(timespec="seconds")


def run_seeds(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / "run_seeds.py"), *args], capture_output=True,
                          text=True, timeout=timeout)


def test_every_seed_runs_in_order_with_its_own_arguments(tmp_path):
    log = tmp_path / "order.txt"
    proc = run_seeds("--seeds", "3..6", "--last-start", at(30), "--stop", at(60), "--", *APPEND, str(log), "{seed}")
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().split() == ["3", "4", "5", "6"]
    assert "4 of 4 seeds ran to the end: [3, 4, 5, 6]" in proc.stdout


def test_ranges_joined_by_commas_run_their_seeds_in_order(tmp_path):
    log = tmp_path / "order.txt"
    proc = run_seeds("--seeds", "1..2,5..5", "--last-start", at(30), "--stop", at(60), "--", *APPEND, str(log),
                     "{seed}")
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().split() == ["1", "2", "5"]
    assert "3 of 3 seeds ran to the end: [1, 2, 5]" in proc.stdout


def test_no_seed_starts_after_last_start(tmp_path):
    log = tmp_path / "order.txt"
    proc = run_seeds("--seeds", "2", "--last-start", at(-1), "--stop", at(60), "--", *APPEND, str(log), "{seed}")
    assert proc.returncode == 1
    assert not log.exists()
    assert "seeds [0, 1] not started" in proc.stdout and "past --last-start" in proc.stdout


def test_a_seed_running_at_stop_is_killed_and_the_next_not_started(tmp_path):
    # Seed 0 would sleep ten minutes; the stop (and the last start) comes ten seconds after the runner is
    # called, which starts seed 0 in well under a second (it imports no more than the standard library).
    sleeper = [sys.executable, "-c", "import sys, time; sys.argv[1] == '0' and time.sleep(600)", "{seed}"]
    proc = run_seeds("--seeds", "2", "--last-start", at(1 / 6), "--stop", at(1 / 6), "--", *sleeper)
    assert proc.returncode == 1
    assert "seed 0 killed at --stop" in proc.stdout and "seeds [1] not started" in proc.stdout


def test_a_failing_seed_is_reported_and_the_others_still_run(tmp_path):
    log = tmp_path / "order.txt"
    proc = run_seeds("--seeds", "3", "--last-start", at(30), "--stop", at(60), "--", *APPEND, str(log), "{seed}", "1")
    assert proc.returncode == 1
    assert log.read_text().split() == ["0", "1", "2"]
    assert "seed 1 ended" in proc.stdout and "with status 3" in proc.stdout
    assert "2 of 3 seeds ran to the end: [0, 2]" in proc.stdout


def test_bad_arguments_are_refused_with_what_was_given():
    no_seed = run_seeds("--seeds", "2", "--last-start", at(30), "--stop", at(60), "--", "echo", "x")
    assert no_seed.returncode == 2 and "must contain {seed}" in no_seed.stderr and "'echo', 'x'" in no_seed.stderr
    late = run_seeds("--seeds", "2", "--last-start", at(60), "--stop", at(30), "--", "echo", "{seed}")
    assert late.returncode == 2 and "--last-start" in late.stderr and "is after --stop" in late.stderr
    bad_time = run_seeds("--seeds", "2", "--last-start", "16h", "--stop", at(30), "--", "echo", "{seed}")
    assert bad_time.returncode == 2 and "2026-12-05T16:00" in bad_time.stderr and "'16h'" in bad_time.stderr
    bad_seeds = run_seeds("--seeds", "5..2", "--last-start", at(30), "--stop", at(60), "--", "echo", "{seed}")
    assert bad_seeds.returncode == 2 and "'5..2'" in bad_seeds.stderr
