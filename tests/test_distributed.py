"""torchrun with 2 CPU processes (gloo): sharded FUR equals the single process; a whole search runs,
and one stopped mid-round resumes to the same result."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def torchrun(*args, timeout=600):
    proc = subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=timeout, env=ENV)
    # A clean end: no rank aborted on exit (what a gloo thread racing the interpreter's teardown
    # does, the reason workers end through exit_worker).
    assert "terminate called" not in proc.stderr and "exitcode  : -6" not in proc.stderr, proc.stderr[-3000:]
    return proc


def test_exit_worker_flushes_output_and_exits_with_the_code():
    script = textwrap.dedent('''
        import logging, sys
        from netadjust.dist import exit_worker
        logging.basicConfig(stream=sys.stderr, format="%(message)s")
        print("unterminated line", end="")
        sys.stderr.write("buffered")
        logging.getLogger("x").warning(" logged")
        exit_worker(3)
        print("not reached")
    ''')
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=ENV)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "unterminated line", "buffered logged\n")


FUR_SCRIPT = textwrap.dedent('''
    import json, sys, torch
    from netadjust.config import TrainConfig
    from netadjust.data import synthetic
    from netadjust.dist import exit_worker, init_distributed, shutdown
    from netadjust.fur import estimate_fur
    from netadjust.models import get_arch
    from netadjust.train import build_and_train

    env = init_distributed(torch.device("cpu"))
    arch = get_arch("resnet20", num_classes=4, in_channels=1, input_size=8, width_mult=0.25)
    w = arch.default_widths()
    data = synthetic(n_train=128, n_heldout=96)
    model = build_and_train(arch, w, data, TrainConfig(epochs=1, batch_size=32), progress=False).model
    result = estimate_fur(model, data, arch, w, repeats=2, batch_size=40, seed=5, env=env)
    if env.rank == int(sys.argv[2]):
        with open(sys.argv[1], "w") as f:
            json.dump({"fur": result.fur, "stderr": result.stderr}, f)
    shutdown()
    exit_worker(0)  # no interpreter teardown for a gloo thread to race with
''')


@pytest.mark.slow
def test_sharded_fur_equals_single_process(tmp_path):
    script = tmp_path / "fur.py"
    script.write_text(FUR_SCRIPT)
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "one.json"), "0"],
                            capture_output=True, text=True, timeout=300, env=ENV)
    assert single.returncode == 0, single.stderr
    for rank in (0, 1):
        proc = torchrun(str(script), str(tmp_path / f"two{rank}.json"), str(rank))
        assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.loads((tmp_path / "one.json").read_text())
    # Each key draws from its own generator, so who probes it does not matter: equal up to
    # float summation order.
    for rank in (0, 1):
        two = json.loads((tmp_path / f"two{rank}.json").read_text())
        assert two["fur"].keys() == one["fur"].keys()
        for key in one["fur"]:
            assert abs(two["fur"][key] - one["fur"][key]) < 1e-6, key


SEARCH = ["-m", "netadjust", "search", "--width-mult", "0.25", "--train-subset", "256", "--rounds", "2",
          "--k", "3", "--epochs", "2", "--batch-size", "32", "--fur-batch-size", "128", "--repeats", "2",
          "--final-epochs", "0", "--quiet", "--no-report"]
TIMINGS = ("train_seconds", "fur_seconds", "seconds", "history")


def read_records(run):
    return [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """One uninterrupted 2-process search."""
    out = tmp_path_factory.mktemp("dist") / "two"
    proc = torchrun(*SEARCH, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_process_search_runs_and_agrees(two_process_run, tmp_path):
    from netadjust.adjust import AdjustRule, adjust_widths

    records = read_records(two_process_run)
    assert [r["round"] for r in records] == [0, 1]  # written once, by rank 0
    one = subprocess.run([sys.executable, *SEARCH, "--out", str(tmp_path / "one"), "--batch-size", "64"],
                         capture_output=True, text=True, timeout=600, env=ENV)
    assert one.returncode == 0, one.stderr
    single = read_records(tmp_path / "one")
    # Same start and budget. The trained weights differ (per-rank BatchNorm statistics,
    # augmentation and dropout streams), so later widths may differ; every run keeps the rule
    # and the budget exactly, and its metrics cover the whole split (counts, not a shard's).
    assert records[0]["widths"] == single[0]["widths"]
    target = json.loads((two_process_run / "summary.json").read_text())["macs_target"]
    heldout = 144  # 10% of digits' 1437 training images
    for run in (records, single):
        for r in run:
            assert abs(r["next_macs"] - target) / r["next_macs"] <= 0.01
            _, moves = adjust_widths(r["widths"], run[0]["widths"], r["fur"], AdjustRule(k=3), r["round"])
            assert moves == r["moves"]
            assert abs(r["heldout_acc"] * heldout - round(r["heldout_acc"] * heldout)) < 1e-6


@pytest.mark.slow
def test_two_process_search_stopped_mid_round_resumes_to_the_same_result(two_process_run, tmp_path):
    broken = tmp_path / "broken"
    proc = subprocess.Popen([*TORCHRUN, *SEARCH, "--out", str(broken)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    current, records = broken / "checkpoints" / "current.pt", broken / "records.jsonl"
    deadline = time.time() + 300
    # Stop it once round 1 (the second) has finished an epoch: torchrun passes SIGTERM to the ranks.
    while time.time() < deadline and not (current.exists() and records.exists()):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert f"netadjust search --resume {broken}" in err
    assert len(records.read_text().splitlines()) == 1

    resumed = torchrun("-m", "netadjust", "search", "--resume", str(broken), "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # Same world size, same seeds: the resumed run continues exactly where the stopped one was.
    strip = [[{k: v for k, v in r.items() if k not in TIMINGS} for r in read_records(run)]
             for run in (broken, two_process_run)]
    assert strip[0] == strip[1]
    assert (json.loads((broken / "widths_final.json").read_text())
            == json.loads((two_process_run / "widths_final.json").read_text()))
