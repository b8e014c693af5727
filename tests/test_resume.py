"""Runs that survive: SIGTERM mid-round, resume, identical results; corrupt state files."""

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY

from netadjust.config import SearchConfig
from netadjust.errors import ConfigError
from netadjust.search import search

ARGS = ["--width-mult", "0.25", "--train-subset", "256", "--rounds", "2", "--k", "3", "--epochs", "3",
        "--batch-size", "32", "--fur-batch-size", "128", "--repeats", "2", "--final-epochs", "2", "--quiet"]
TIMINGS = ("train_seconds", "fur_seconds", "seconds", "history")


def records(run):
    out = []
    for line in (run / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.append({k: v for k, v in rec.items() if k not in TIMINGS})
        out[-1]["losses"] = [(h["train_loss"], h["train_acc"]) for h in rec["history"]]
    return out


def start(out):
    return subprocess.Popen([sys.executable, "-m", "netadjust", "search", *ARGS, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigterm_mid_round_then_resume_equals_uninterrupted(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    proc = start(broken)
    current = broken / "checkpoints" / "current.pt"
    deadline = time.time() + 240
    # Wait until round 1 (the second) has finished an epoch, then stop it mid-round.
    while time.time() < deadline and not (current.exists() and (broken / "records.jsonl").exists()):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err  # 128 + SIGTERM, as a shell reports it
    assert "terminated" in err and f"netadjust search --resume {broken}" in err
    assert len((broken / "records.jsonl").read_text().splitlines()) == 1
    assert not any(p.name.startswith(".") for p in broken.rglob("*")), "no temporary files left"

    resumed = subprocess.run([sys.executable, "-m", "netadjust", "search", "--resume", str(broken)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after round 1" in resumed.stderr
    done = subprocess.run([sys.executable, "-m", "netadjust", "search", *ARGS, "--out", str(whole)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert records(broken) == records(whole)
    assert json.loads((broken / "widths_final.json").read_text()) == json.loads((whole / "widths_final.json").read_text())
    a, b = (json.loads((d / "summary.json").read_text()) for d in (broken, whole))
    assert a["searched_test_acc"] == b["searched_test_acc"] and a["original_test_acc"] == b["original_test_acc"]


@pytest.fixture
def finished(tiny_run):
    return SearchConfig.from_dict({**TINY, "out": str(tiny_run)}), tiny_run


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name, message", [
    ("config.json", "config.json is corrupt"),
    ("records.jsonl", "records.jsonl line 1 is corrupt"),
])
def test_truncated_state_file_is_named(finished, name, message):
    cfg, run = finished
    truncate(run / name)
    with pytest.raises(ConfigError, match=message):
        search(cfg, resume=True, progress=False)


def test_truncated_final_result_is_named(finished):
    cfg, run = finished
    truncate(run / "final" / "searched_seed0.json")
    with pytest.raises(ConfigError, match="searched_seed0.json is corrupt"):
        search(cfg, resume=True, progress=False)


def test_truncated_epoch_checkpoint_restarts_its_round(finished, caplog):
    cfg, run = finished
    cfg2 = cfg.replace(rounds=2)
    # Pretend round 1 was interrupted after an epoch, and its checkpoint got cut in half.
    (run / "checkpoints" / "current.pt").write_bytes((run / "checkpoints" / "round0.pt").read_bytes()[:100])
    result = search(cfg2, resume=True, allow_changes=True, progress=False)
    assert len(result.records) == 2
    assert "current.pt is unreadable" in caplog.text and "restarting" in caplog.text
    assert not (run / "checkpoints" / "current.pt").exists()


def test_changed_setting_is_named_unless_allowed(finished):
    cfg, _ = finished
    with pytest.raises(ConfigError, match="lr \\(stored 0.15, now 0.1\\).*--allow-changes"):
        search(cfg.replace(lr=0.1), resume=True, progress=False)
