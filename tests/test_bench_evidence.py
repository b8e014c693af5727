"""bench/bench_evidence.py end to end at its smallest scale: the arms at equal MACs, the paired
differences it prints, and the reuse of earlier searches and final trainings only where they match."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data_files import write_cifar100

REPO = Path(__file__).resolve().parents[1]
# One seed of ResNet-20 on digits (the quick mode), the 0.64x arms too, 1-epoch finals, no plateau runs.
SMALL = ["--mode", "quick", "--families", "resnet20", "--seeds", "1", "--arms", "uniform_0.64", "adjusted_0.64",
         "--final-epochs", "1", "--plateau"]

pytestmark = pytest.mark.slow


def evidence(tmp_path: Path, out: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / "bench_evidence.py"), *SMALL, "--out",
                           str(tmp_path / out), *args], capture_output=True, text=True, cwd=tmp_path)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evidence")
    proc = evidence(tmp, "a.json", "--work", str(tmp / "work"))
    assert proc.returncode == 0, proc.stderr
    return tmp, proc.stdout, json.loads((tmp / "a.json").read_text())


def test_every_arm_is_searched_and_trained_at_its_macs(first):
    _, stdout, data = first
    record = data["families"]["resnet20"]
    assert set(record["searches"]) == {"adjusted/0", "adjusted_0.64/0"}
    assert set(record["finals"]) == {"uniform/0", "adjusted/0", "uniform_0.64/0", "adjusted_0.64/0"}
    target = {"uniform": 1.0, "adjusted": 1.0, "uniform_0.64": 0.64, "adjusted_0.64": 0.64}  # of the uniform MACs
    macs = {arm: record["finals"][f"{arm}/0"]["macs"] for arm in target}
    assert all(abs(macs[arm] / (target[arm] * macs["uniform"]) - 1) <= 0.01 for arm in macs)  # the search tolerance
    assert record["searches"]["adjusted_0.64/0"]["macs_target"] == pytest.approx(0.64 * macs["uniform"])
    for key, search in record["searches"].items():  # each search run once, and reported as it ended
        assert stdout.count(f"resnet20 search {key}:") == 1
        assert f"resnet20 search {key}: held-out {100 * search['rounds'][-1]['heldout_acc']:.2f}%" in stdout
    acc = {arm: record["finals"][f"{arm}/0"]["test_acc"] for arm in macs}
    assert f"adjusted - uniform: {100 * (acc['adjusted'] - acc['uniform']):+.2f} points" in stdout
    assert f"adjusted_0.64 - uniform_0.64: {100 * (acc['adjusted_0.64'] - acc['uniform_0.64']):+.2f} points" in stdout
    assert f"uniform - uniform_0.64: {100 * (acc['uniform'] - acc['uniform_0.64']):+.2f} points" in stdout  # the yardstick


def test_earlier_trainings_are_reused_only_where_their_widths_match(first):
    tmp, _, data = first
    finals = data["families"]["resnet20"]["finals"]
    doctored = json.loads(json.dumps(data))
    widths = doctored["families"]["resnet20"]["finals"]["uniform/0"]["widths"]
    widths[next(iter(widths))] += 1  # a uniform training of other widths than this run's
    (tmp / "doctored.json").write_text(json.dumps(doctored))

    proc = evidence(tmp, "b.json", "--work", str(tmp / "work-b"), "--searches-from", str(tmp / "a.json"),
                    "--finals-from", str(tmp / "doctored.json"))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp / "work-b").exists()  # no search ran
    again = json.loads((tmp / "b.json").read_text())["families"]["resnet20"]
    assert again["searches"] == data["families"]["resnet20"]["searches"]
    assert "reused_from" not in again["finals"]["uniform/0"]  # trained again
    assert again["finals"]["uniform/0"]["widths"] == finals["uniform/0"]["widths"]
    for key in ("adjusted/0", "uniform_0.64/0", "adjusted_0.64/0"):
        assert again["finals"][key] == {"reused_from": "doctored.json", **finals[key]}
        assert f"resnet20 finals {key}: {100 * finals[key]['test_acc']:.2f}% from doctored.json" in proc.stdout


def test_earlier_files_made_with_other_settings_are_refused(first):
    tmp, _, _ = first
    proc = evidence(tmp, "c.json", "--work", str(tmp / "work-c"), "--final-epochs", "2", "--finals-from",
                    str(tmp / "a.json"))
    assert proc.returncode != 0
    assert "--finals-from" in proc.stderr and "made with other settings (final_epochs: 1 there, 2 here)" in proc.stderr
    proc = evidence(tmp, "d.json", "--work", str(tmp / "work-d"), "--round-epochs", "2", "--searches-from",
                    str(tmp / "a.json"))
    assert proc.returncode != 0 and "made with other settings (epochs: 1 there, 2 here)" in proc.stderr
    proc = evidence(tmp, "d.json", "--work", str(tmp / "work-d"), "--rounds", "3", "--searches-from",
                    str(tmp / "a.json"))
    assert proc.returncode != 0 and "made with other settings (rounds: 2 there, 3 here)" in proc.stderr
    proc = evidence(tmp, "d.json", "--work", str(tmp / "work-d"), "--train-subset", "400", "--searches-from",
                    str(tmp / "a.json"))
    assert proc.returncode != 0 and "made with other settings (train_subset: 512 there, 400 here)" in proc.stderr
    proc = evidence(tmp, "d.json", "--work", str(tmp / "work-d"), "--width-mult", "0.5", "--finals-from",
                    str(tmp / "a.json"))
    assert proc.returncode != 0 and "made with other settings (width_mult: 0.25 there, 0.5 here)" in proc.stderr
    proc = evidence(tmp, "e.json", "--heldout-fraction", "0")
    assert proc.returncode == 2 and "--heldout-fraction must be in (0, 1)" in proc.stderr
    proc = evidence(tmp, "e.json", "--width-mult", "-0.5")
    assert proc.returncode == 2 and "--width-mult must be positive, got -0.5" in proc.stderr
    assert not (tmp / "e.json").exists()


def test_only_the_searches_a_run_uses_are_taken_from_earlier_files(first):
    tmp, _, data = first
    proc = evidence(tmp, "e.json", "--work", str(tmp / "work-e"), "--arms", "uniform", "--searches-from",
                    str(tmp / "a.json"), "--finals-from", str(tmp / "a.json"))
    assert proc.returncode == 0, proc.stderr
    searches = json.loads((tmp / "e.json").read_text())["families"]["resnet20"]["searches"]
    assert searches == {"adjusted/0": data["families"]["resnet20"]["searches"]["adjusted/0"]}  # not the 0.64x one


def test_skip_adjusted_leaves_out_the_1x_search_and_its_finals(first):
    tmp, _, data = first
    proc = evidence(tmp, "s.json", "--work", str(tmp / "work-s"), "--skip-adjusted", "--searches-from",
                    str(tmp / "a.json"), "--finals-from", str(tmp / "a.json"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp / "s.json").read_text())
    assert result["settings"]["arms"] == ["uniform", "uniform_0.64", "adjusted_0.64"]
    record, earlier = result["families"]["resnet20"], data["families"]["resnet20"]
    assert record["searches"] == {"adjusted_0.64/0": earlier["searches"]["adjusted_0.64/0"]}
    assert set(record["finals"]) == {"uniform/0", "uniform_0.64/0", "adjusted_0.64/0"}
    assert "adjusted - uniform" not in proc.stdout and "adjusted_0.64 - uniform_0.64: " in proc.stdout
    render = subprocess.run([sys.executable, str(REPO / "bench" / "bench_evidence.py"), "--render", str(tmp / "s.json"),
                             "--plots", str(tmp / "plots")], capture_output=True, text=True)
    assert render.returncode == 0, render.stderr
    assert "| FUR-adjusted 0.64x |" in render.stdout and "| FUR-adjusted |" not in render.stdout
    assert "No artists with labels" not in render.stderr  # the widths figure plots the 0.64x search instead
    assert (tmp / "plots" / "s_widths.png").exists()
    proc = evidence(tmp, "t.json", "--skip-adjusted", "--arms", "adjusted", "random")
    assert proc.returncode == 2 and "--skip-adjusted leaves out the arm that --arms names (adjusted)" in proc.stderr
    assert not (tmp / "t.json").exists()


def test_the_random_arms_are_computed_not_searched_and_old_draws_are_not_reused(first):
    from netadjust.config import SearchConfig
    from netadjust.models import get_arch
    from netadjust.search import random_guided_widths

    tmp, _, data = first
    doctored = json.loads(json.dumps(data))  # an earlier file with a random search and final of other widths
    record = doctored["families"]["resnet20"]
    old = {k: v + 1 for k, v in record["finals"]["uniform/0"]["widths"].items()}
    record["searches"]["random/0"] = {**record["searches"]["adjusted/0"], "widths": old}
    record["finals"]["random/0"] = {**record["finals"]["uniform/0"], "widths": old}
    (tmp / "old.json").write_text(json.dumps(doctored))
    proc = evidence(tmp, "f.json", "--work", str(tmp / "work-f"), "--arms", "random", "uniform_0.64", "random_0.64",
                    "--searches-from", str(tmp / "old.json"), "--finals-from", str(tmp / "old.json"))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp / "work-f").exists()  # no search ran: the FUR ones were reused, the random one computed
    result = json.loads((tmp / "f.json").read_text())
    assert result["settings"]["random_draws"] == "per seed"
    record = result["families"]["resnet20"]
    assert set(record["searches"]) == {"adjusted/0"}
    arch = get_arch("resnet20", num_classes=10, in_channels=1, input_size=8, width_mult=0.25)
    uniform_macs = record["finals"]["uniform/0"]["macs"]
    for arm, budget in (("random", 1.0), ("random_0.64", 0.64)):
        cfg = SearchConfig.from_dict({"arch": "resnet20", "width_mult": 0.25, "rounds": 2, "seed": 0,  # the quick mode's
                                      "budget": budget})
        assert record["finals"][f"{arm}/0"]["widths"] == random_guided_widths(cfg, arch)[-1]
        assert abs(record["finals"][f"{arm}/0"]["macs"] / (budget * uniform_macs) - 1) <= 0.01
    assert "reused_from" not in record["finals"]["random/0"]  # trained: the earlier one had other widths
    assert record["finals"]["uniform_0.64/0"]["reused_from"] == "old.json"
    for line in ("adjusted - random: ", "random - uniform: ", "random_0.64 - uniform_0.64: "):
        assert line in proc.stdout
    assert "adjusted_0.64 - random_0.64: " not in proc.stdout  # that search is not among this run's arms


def test_a_lower_min_width_reaches_the_searches_the_random_control_and_the_uniform_064_widths(first):
    from netadjust.budget import fit_budget
    from netadjust.config import SearchConfig
    from netadjust.models import get_arch
    from netadjust.search import random_guided_widths

    tmp, _, data = first
    proc = evidence(tmp, "m.json", "--work", str(tmp / "work-m"), "--min-width", "2", "--searches-from",
                    str(tmp / "a.json"))
    assert proc.returncode != 0  # those searches held their layers at 4 channels
    assert "--searches-from" in proc.stderr
    assert "made with other settings (min_width: None there, 2 here)" in proc.stderr
    proc = evidence(tmp, "m.json", "--work", str(tmp / "work-m"), "--min-width", "0")
    assert proc.returncode == 2 and "--min-width must be a positive integer, got 0" in proc.stderr
    assert not (tmp / "m.json").exists()

    proc = evidence(tmp, "m.json", "--work", str(tmp / "work-m"), "--min-width", "2", "--arms", "uniform_0.64",
                    "random_0.64", "--finals-from", str(tmp / "a.json"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp / "m.json").read_text())
    assert result["settings"]["min_width"] == 2
    record = result["families"]["resnet20"]
    arch = get_arch("resnet20", num_classes=10, in_channels=1, input_size=8, width_mult=0.25)
    default = arch.default_widths()
    assert min(default.values()) == 4  # the library's floor holds the uniform 0.64x widths there; 2 lets them narrow
    floored = fit_budget(arch, default, 0.64 * arch.macs(default), min_width=4)
    lower = fit_budget(arch, default, 0.64 * arch.macs(default), min_width=2)
    assert lower != floored and record["finals"]["uniform_0.64/0"]["widths"] == lower
    cfg = {"arch": "resnet20", "width_mult": 0.25, "rounds": 2, "seed": 0, "budget": 0.64}  # the quick mode's
    random = random_guided_widths(SearchConfig.from_dict({**cfg, "min_width": 2}), arch)[-1]
    assert random != random_guided_widths(SearchConfig.from_dict(cfg), arch)[-1]
    assert record["finals"]["random_0.64/0"]["widths"] == random and min(random.values()) < 4
    assert set(record["searches"]) == {"adjusted/0"}  # searched again, with the lower floor
    config = tmp / "work-m" / "resnet20" / "adjusted" / "seed0" / "config.json"
    assert json.loads(config.read_text())["min_width"] == 2
    assert record["finals"]["uniform/0"]["reused_from"] == "a.json"  # its widths do not depend on the floor


def test_a_seed_range_runs_those_seeds_alone(first):
    tmp, _, data = first
    doctored = json.loads(json.dumps(data))  # seed 0's searches and finals recorded as seed 1's
    record = doctored["families"]["resnet20"]
    for table in ("searches", "finals"):
        record[table] = {key.replace("/0", "/1"): run for key, run in record[table].items()}
    (tmp / "seed1.json").write_text(json.dumps(doctored))
    proc = evidence(tmp, "g.json", "--work", str(tmp / "work-g"), "--seeds", "1..1", "--searches-from",
                    str(tmp / "seed1.json"), "--finals-from", str(tmp / "seed1.json"))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp / "work-g").exists()  # seed 0 is not searched
    result = json.loads((tmp / "g.json").read_text())
    assert result["settings"]["seeds"] == "1..1"
    again = result["families"]["resnet20"]
    assert set(again["searches"]) == {"adjusted/1", "adjusted_0.64/1"}
    assert set(again["finals"]) == {"uniform/1", "adjusted/1", "uniform_0.64/1", "adjusted_0.64/1"}
    assert all(run["reused_from"] == "seed1.json" for run in again["finals"].values())  # nothing trained
    acc = {key: run["test_acc"] for key, run in again["finals"].items()}
    assert f"adjusted - uniform: {100 * (acc['adjusted/1'] - acc['uniform/1']):+.2f} points" in proc.stdout


@pytest.mark.parametrize("seeds", ["0", "3..1", "1..x", "2..", "x", "0..4,4..6", "5..6,0..1", "0..1,,3..4", "2,4"])
def test_bad_seeds_are_refused_before_anything_is_written(tmp_path, seeds):
    proc = evidence(tmp_path, "h.json", "--seeds", seeds)
    assert proc.returncode == 2
    assert (f"--seeds: takes a count N >= 1 (seeds 0..N-1), a range A..B with 0 <= A <= B (seeds A to B) or "
            f"ascending ranges joined by commas (A..B,C..D with B < C), got {seeds!r}") in proc.stderr
    assert not (tmp_path / "h.json").exists()


def test_the_paper_protocol_runs_on_cifar100(tmp_path):
    """``--mode paper`` (CIFAR-100, width 1.0, the official search settings) end to end on a few images in the
    original archive's format, its rounds and epochs cut to one: the path a user with the data takes."""
    write_cifar100(tmp_path / "data", n_train=300, n_test=10)
    out = tmp_path / "paper.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_evidence.py"), "--mode", "paper", "--dataset",
                           "cifar100", "--data-dir", str(tmp_path / "data"), "--families", "resnet20", "--seeds", "1",
                           "--arms", "random", "--rounds", "1", "--round-epochs", "1", "--final-epochs", "1",
                           "--work", str(tmp_path / "work"), "--out", str(out)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    s = data["settings"]
    assert (s["dataset"], s["width_mult"], s["repeats"], s["rounds"], s["epochs"]) == ("cifar100", 1.0, 5, 1, 1)
    finals = data["families"]["resnet20"]["finals"]
    assert set(finals) == {"uniform/0", "adjusted/0", "random/0"}
    assert finals["uniform/0"]["macs"] == 40_556_800  # the paper's ResNet-20 on CIFAR-100 (tests/test_models.py)
    assert all(abs(run["macs"] / finals["uniform/0"]["macs"] - 1) <= 0.01 for run in finals.values())
    report = subprocess.run([sys.executable, str(REPO / "bench" / "bench_evidence.py"), "--render", str(out)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "- data: cifar100, training subset all" in report.stdout
    assert "The paper's ResNet-18 0.8x on ImageNet (Figure 4)" in report.stdout
