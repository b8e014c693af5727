"""bench/bench_evidence.py --render on a small results file written here, whose tables, paired differences,
confidence intervals, stage ratios and plots can be checked by hand."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIFORM = {"stage1.block0.conv1": 16, "stage2.block0.conv1": 32}
# Per arm, the test accuracy of seeds 0, 1, 2 and the widths every seed found.
ACCS = {"uniform": (0.90, 0.91, 0.92), "adjusted": (0.91, 0.91, 0.94), "random": (0.89, 0.92, 0.91)}
WIDTHS = {"uniform": UNIFORM, "adjusted": {"stage1.block0.conv1": 8, "stage2.block0.conv1": 48},
          "random": {"stage1.block0.conv1": 24, "stage2.block0.conv1": 24}}


def results(seeds: int | str = 3, warm_start: bool = True, searches_from: str | None = "earlier.json") -> dict:
    finals = {f"{arm}/{i}": {"test_acc": ACCS[arm][i], "macs": 1_000_000 + 1000 * i, "widths": WIDTHS[arm],
                             "train_loss": [1.0] * 8, "seconds": 60.0 + i}
              for arm in ACCS for i in range(3)}
    finals["uniform/0"]["reused_from"] = "earlier.json"
    return {
        "settings": {"mode": "cpu", "dataset": "fashion-mnist", "families": ["pyramidnet20"], "width_mult": 0.5,
                     "seeds": seeds, "train_subset": 4000, "heldout_fraction": 0.02, "rounds": 10, "epochs": 8,
                     "repeats": 2, "final_epochs": 8, "warm_start": warm_start, "searches_from": searches_from,
                     "finals_from": None, "arms": list(ACCS)},
        "device": "cpu (test)", "torch": "2.x", "started": "2026-12-01 10:00", "updated": "2026-12-01 11:00",
        "command": "bench_evidence.py --mode cpu",
        "families": {"pyramidnet20": {"searches": {"adjusted/0": {"seconds": 100.0}, "random/0": {"seconds": 200.0}},
                                      "finals": finals, "plateau": {"4": {"test_acc": 0.85}, "16": {"test_acc": 0.93}},
                                      "seconds": 600.0}},
    }


def render(tmp_path: Path, data: dict, *args: str) -> str:
    path = tmp_path / "results_evidence_test.json"
    path.write_text(json.dumps(data))
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_evidence.py"), "--render", str(path), *args],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_tables_give_each_arm_and_the_paired_differences(tmp_path):
    md = render(tmp_path, results())
    # MACs / uniform: the arm's mean over seeds against uniform seed 0's 1,000,000.
    assert "| FUR-adjusted | 1,001,000 | 1.001 | 92.00 ± 1.73 | 91.00, 91.00, 94.00 |" in md
    assert "| uniform | 1,001,000 | 1.001 | 91.00 ± 1.00 | 90.00, 91.00, 92.00 |" in md
    # adjusted - uniform per seed: +1, 0, +2 points; mean 1, sd 1, t(0.975, 2 df) = 4.3027 from the tables,
    # so the interval is 1 -+ 4.3027 / sqrt(3) = [-1.48, +3.48].
    assert "| FUR-adjusted - uniform | +1.00 | [-1.48, +3.48] | +1.00, +0.00, +2.00 | 2 of 3 |" in md
    # adjusted - random: +2, -1, +3 (sd 2.08, half-width 5.17); random - uniform: -1, +1, -1.
    assert "| FUR-adjusted - random-adjusted | +1.33 | [-3.84, +6.50] | +2.00, -1.00, +3.00 | 2 of 3 |" in md
    assert "| random-adjusted - uniform | -0.33 | [-3.20, +2.54] | -1.00, +1.00, -1.00 | 1 of 3 |" in md
    # Two-sided p of the paired t test, from t's closed form at 2 df, p = 1 - t / sqrt(2 + t^2):
    # t = sqrt(3) gives 0.225; t = 1.109 gives 0.383; t = 0.5 gives 2/3.
    assert "| +1.00, +0.00, +2.00 | 2 of 3 | 0.23 |" in md
    assert "| +2.00, -1.00, +3.00 | 2 of 3 | 0.38 |" in md
    assert "| -1.00, +1.00, -1.00 | 1 of 3 | 0.67 |" in md


def test_settings_curve_stage_shape_and_times_are_stated(tmp_path):
    md = render(tmp_path, results())
    assert ("- searches: 10 rounds x 8 epochs (rounds after the first warm-started, 2 epochs each), FUR repeats 2, "
            "the method's other defaults") in md
    assert "those `earlier.json` had recorded were taken from there" in md
    assert "4 epochs 85.00%, 8 epochs 90.00%, 16 epochs 93.00%." in md  # the final training is the 8-epoch point
    # 8/16 and 48/32; 24/16 and 24/32
    assert ("Searched / uniform width per stage (mean over seeds): FUR-adjusted: stage 1 0.50, stage 2 1.50; "
            "random-adjusted: stage 1 1.50, stage 2 0.75.") in md
    assert "Search time: 150 s per search on average; final trainings 60-62 s each; this run took 10.0 min" in md
    assert "(1 of its 9 final trainings taken from earlier runs, with their times)." in md
    unsearched = results()  # a run whose arms need no search (uniform and random ones only)
    unsearched["families"]["pyramidnet20"]["searches"] = {}
    assert "\nFinal trainings 60-62 s each; this run took 10.0 min" in render(tmp_path, unsearched)
    cold = render(tmp_path, results(warm_start=False, searches_from=None))
    assert "10 rounds x 8 epochs (every round from scratch), FUR repeats 2" in cold and "taken from there" not in cold
    assert "min width" not in cold  # stated only where a run set it
    data = results()
    data["settings"]["min_width"] = 2
    assert "FUR repeats 2, min width 2 (`--min-width`; it also floors the random control" in render(tmp_path, data)


def test_a_seed_range_is_tabulated_over_its_seeds_alone(tmp_path):
    data = results(seeds="1..2")
    record = data["families"]["pyramidnet20"]
    record["finals"] = {k: v for k, v in record["finals"].items() if not k.endswith("/0")}
    record["plateau"] = {}  # a run's plateau trainings are seed 0's
    md = render(tmp_path, data)
    assert "; seeds 1..2; arms" in md
    # MACs / uniform against uniform seed 1's 1,001,000; the mean of 1,001,000 and 1,002,000 is 1,001,500.
    assert "| uniform | 1,001,500 | 1.000 | 91.50 ± 0.71 | 91.00, 92.00 |" in md
    # adjusted - uniform per seed: 0, +2; mean 1, sd sqrt(2), t(0.975, 1 df) = 12.706: 1 -+ 12.706.
    assert "| FUR-adjusted - uniform | +1.00 | [-11.71, +13.71] | +0.00, +2.00 | 1 of 2 |" in md


def test_ranges_joined_by_commas_are_tabulated_over_their_seeds_alone(tmp_path):
    data = results(seeds="0..0,2..2")
    record = data["families"]["pyramidnet20"]
    record["finals"] = {k: v for k, v in record["finals"].items() if not k.endswith("/1")}
    md = render(tmp_path, data)
    assert "; seeds 0, 2; arms" in md
    # uniform seeds 0 and 2: 90 and 92, MACs 1,000,000 and 1,002,000, whose mean is 1.001 times seed 0's.
    assert "| uniform | 1,001,000 | 1.001 | 91.00 ± 1.41 | 90.00, 92.00 |" in md
    # adjusted - uniform per seed: +1, +2; mean 1.5, sd sqrt(0.5), t(0.975, 1 df) = 12.706: 1.5 -+ 12.706 * 0.5.
    assert "| FUR-adjusted - uniform | +1.50 | [-4.85, +7.85] | +1.00, +2.00 | 2 of 2 |" in md


def test_the_064_arms_shapes_are_taken_against_the_uniform_064_widths(tmp_path):
    data = results()
    finals = data["families"]["pyramidnet20"]["finals"]
    shapes = {"uniform_0.64": {"stage1.block0.conv1": 10, "stage2.block0.conv1": 20},
              "adjusted_0.64": {"stage1.block0.conv1": 5, "stage2.block0.conv1": 30},
              "random_0.64": {"stage1.block0.conv1": 12, "stage2.block0.conv1": 16}}
    for arm, widths in shapes.items():
        finals.update({f"{arm}/{i}": {**finals[f"uniform/{i}"], "widths": widths} for i in range(3)})
    data["settings"]["arms"] += list(shapes)
    md = render(tmp_path, data)
    # 5/10 and 30/20; 12/10 and 16/20: against the uniform 0.64x widths, not the family's 16 and 32.
    assert ("At 0.64x the MACs, searched / uniform 0.64x width per stage (mean over seeds): FUR-adjusted 0.64x: "
            "stage 1 0.50, stage 2 1.50; random-adjusted 0.64x: stage 1 1.20, stage 2 0.80.") in md
    assert "At 0.64x" not in render(tmp_path, results())


def test_an_unfinished_family_is_marked_and_not_tabulated(tmp_path):
    md = render(tmp_path, results(seeds=4))  # seed 3 has no final trainings
    assert "(unfinished: not every arm and seed has its final training)" in md
    assert "paired difference" not in md


def test_a_run_without_the_fur_arm_renders_the_others(tmp_path):
    pytest.importorskip("matplotlib")
    data = results()
    data["settings"]["arms"] = ["uniform", "random"]
    md = render(tmp_path, data, "--plots", str(tmp_path / "plots"))
    assert "| random-adjusted - uniform | -0.33 |" in md and "FUR-adjusted -" not in md
    assert "per stage (mean over seeds): random-adjusted: stage 1 1.50, stage 2 0.75." in md


def test_plots_are_written_and_linked(tmp_path):
    mpimg = pytest.importorskip("matplotlib.image")
    md = render(tmp_path, results(), "--plots", str(tmp_path / "plots"))
    for name in ("evidence_test_accuracy_vs_macs.png", "evidence_test_widths.png"):
        assert f"![{name}](plots/{name})" in md
        assert mpimg.imread(tmp_path / "plots" / name).shape[0] > 100


def plans(tmp_path: Path, data: dict, tests: list[dict]) -> subprocess.CompletedProcess:
    (tmp_path / "results_evidence_test.json").write_text(json.dumps(data))
    ledger = tmp_path / "plans.json"
    ledger.write_text(json.dumps({"tests": tests}))
    return subprocess.run([sys.executable, str(REPO / "bench" / "bench_evidence.py"), "--plans", str(ledger)],
                          capture_output=True, text=True)


def planned(seeds: str, a: str, b: str, role: str = "primary") -> dict:
    return {"plan": "abc1234", "file": "results_evidence_test.json", "family": "pyramidnet20", "seeds": seeds,
            "comparison": [a, b], "role": role}


def test_planned_tests_are_computed_from_the_files_and_seeds_they_name(tmp_path):
    data = results()
    finals = data["families"]["pyramidnet20"]["finals"]
    for i, d in enumerate((0.010, 0.011, 0.009)):  # adjusted - uniform: +1.0, +1.1, +0.9 points
        finals[f"adjusted/{i}"]["test_acc"] = finals[f"uniform/{i}"]["test_acc"] + d
    proc = plans(tmp_path, data, [planned("0..2", "adjusted", "uniform"),
                                  planned("1..2", "random", "uniform", "secondary")])
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert len(rows) == 4 and rows[0].startswith("| plan (commit) | family |")
    # mean 1.0, sd 0.1: 1 -+ 4.3027 * 0.1 / sqrt(3) = [+0.75, +1.25], in bold as it excludes 0; t = 17.3 at 2 df
    # gives p = 1 - t / sqrt(2 + t^2) = 0.0033.
    assert rows[2] == ("| abc1234 | pyramidnet20 | x0.5 | 4000 | 10 rounds: 8 epochs, then 2 warm-started | 8 | 0..2 | "
                       "FUR-adjusted - uniform | - | primary | +1.00 | **[+0.75, +1.25]** | 3 of 3 | 0.0033 |")
    # random - uniform on seeds 1 and 2 alone: +1, -1 points; mean 0, p = 1; the control's draws are named.
    assert rows[3] == ("| abc1234 | pyramidnet20 | x0.5 | 4000 | 10 rounds: 8 epochs, then 2 warm-started | 8 | 1..2 | "
                       "random-adjusted - uniform | shared | secondary | +0.00 | [-12.71, +12.71] | 1 of 2 | 1.00 |")
    data["settings"].update(random_draws="per seed", warm_start=False)
    proc = plans(tmp_path, data, [planned("1..2", "random", "uniform"), planned("0..0", "adjusted", "random")])
    assert "| 10 rounds x 8 epochs | 8 | 1..2 | random-adjusted - uniform | independent |" in proc.stdout
    # One seed has a difference (+2 points) but no interval or p.
    assert "| 0 | FUR-adjusted - random-adjusted | independent | primary | +2.00 | - | 1 of 1 | - |" in proc.stdout
    data["settings"]["min_width"] = 2
    proc = plans(tmp_path, data, [planned("1..2", "random", "uniform")])
    assert "| 10 rounds x 8 epochs, min width 2 | 8 | 1..2 | random-adjusted - uniform |" in proc.stdout


@pytest.mark.parametrize("test, message", [
    (planned("0..2", "uniform", "adjusted"), "comparison uniform - adjusted is none of adjusted - uniform, "),
    (planned("0..3", "adjusted", "uniform"), "has no final training of adjusted/3, uniform/3"),
    ({**planned("0..2", "adjusted", "uniform"), "file": "gone.json"}, "gone.json does not exist"),
    (planned("2..1", "adjusted", "uniform"), "seeds takes a count N >= 1 (seeds 0..N-1), a range A..B with 0 <= A <= B"),
])
def test_a_planned_test_the_files_cannot_answer_is_refused_by_name(tmp_path, test, message):
    proc = plans(tmp_path, results(), [test])
    assert proc.returncode != 0 and message in proc.stderr
    assert "planned test abc1234 (" in proc.stderr


def test_the_committed_ledger_renders_and_results_evidence_shows_its_table():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_evidence.py"), "--plans",
                           str(REPO / "bench" / "evidence_plans.json")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in (REPO / "bench" / "RESULTS_evidence.md").read_text()


def longer(tmp_path: Path, short: dict, long: dict) -> subprocess.CompletedProcess:
    paths = [tmp_path / "short.json", tmp_path / "long.json"]
    for path, data in zip(paths, (short, long)):
        path.write_text(json.dumps(data))
    return subprocess.run([sys.executable, str(REPO / "bench" / "bench_evidence.py"), "--longer-finals",
                           *map(str, paths)], capture_output=True, text=True)


def test_longer_finals_give_each_difference_and_arm_change_seed_by_seed(tmp_path):
    short, long = results(), results()
    long["settings"]["final_epochs"] = 16
    for i, d in enumerate((0.02, 0.03, 0.01)):  # every uniform final gains 2, 3 and 1 points; no other arm changes
        long["families"]["pyramidnet20"]["finals"][f"uniform/{i}"]["test_acc"] += d
    proc = longer(tmp_path, short, long)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert rows[0].startswith("| family | seeds 0..2 | 8 epochs | 16 epochs | change (points) |")
    # adjusted - uniform: +1, 0, +2 at 8 epochs, -1, -3, +1 at 16: changes -2, -3, -1 (mean -2, sd 1, so
    # -2 -+ 4.3027 / sqrt(3) = [-4.48, +0.48]; t = 2 sqrt(3) at 2 df gives p = 1 - t / sqrt(2 + t^2) = 0.074).
    assert ("| pyramidnet20 | FUR-adjusted - uniform | +1.00 | -1.00 | -2.00 | [-4.48, +0.48] | 0 of 3 | 0.074 |"
            in rows)
    assert ("| pyramidnet20 | FUR-adjusted - random-adjusted | +1.33 | +1.33 | +0.00 | [+0.00, +0.00] | 0 of 3 | 1.00 |"
            in rows)
    assert "| pyramidnet20 | uniform (test acc %) | 91.00 | 93.00 | +2.00 | [-0.48, +4.48] | 3 of 3 | 0.074 |" in rows
    long["families"]["pyramidnet20"]["finals"]["random/1"]["widths"] = WIDTHS["adjusted"]
    proc = longer(tmp_path, short, long)
    assert proc.returncode != 0
    assert "pyramidnet20 final random/1: short.json and long.json trained different widths" in proc.stderr
    del short["families"]["pyramidnet20"]["finals"]["adjusted/2"]
    proc = longer(tmp_path, short, results())
    assert proc.returncode != 0
    assert "short.json has no pyramidnet20 final adjusted/2 to compare with long.json's" in proc.stderr


def across(tmp_path: Path, old: dict, new: dict, *args: str) -> subprocess.CompletedProcess:
    paths = [tmp_path / "old.json", tmp_path / "new.json"]
    for path, data in zip(paths, (old, new)):
        path.write_text(json.dumps(data))
    return subprocess.run([sys.executable, str(REPO / "bench" / "bench_evidence.py"), "--across", *map(str, paths),
                           *args], capture_output=True, text=True)


def floor_2(data: dict) -> dict:
    """``data`` made with --min-width 2, its FUR-adjusted finals 2, 3 and 1 points up on seeds 0, 1, 2."""
    data["settings"]["min_width"] = 2
    for i, d in enumerate((0.02, 0.03, 0.01)):
        data["families"]["pyramidnet20"]["finals"][f"adjusted/{i}"]["test_acc"] += d
    return data


def test_across_gives_each_arms_change_between_two_runs_seed_by_seed(tmp_path):
    old, new = results(), floor_2(results())
    del new["families"]["pyramidnet20"]["finals"]["random/1"]
    proc = across(tmp_path, old, new)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    # The file that predates --min-width ran at the library's 4; warm start and the rest are the same.
    assert rows[0] == "OLD old.json, NEW new.json: min width 4 in OLD, 2 in NEW."
    # +2, +3, +1: mean 2, sd 1, 2 -+ 4.3027 / sqrt(3) = [-0.48, +4.48], p = 0.074 (as in the longer-finals test).
    assert ("| pyramidnet20 | FUR-adjusted | 0..2 | 92.00 | 94.00 | +2.00 | [-0.48, +4.48] | +2.00, +3.00, +1.00 | "
            "3 of 3 | 0.074 |") in rows
    assert "| pyramidnet20 | uniform | 0..2 | 91.00 | 91.00 | +0.00 |" in proc.stdout
    # An arm is paired over the seeds both files trained it on.
    assert "| pyramidnet20 | random-adjusted | 0, 2 | 90.00 | 90.00 | +0.00 |" in proc.stdout
    # --seeds keeps those: +3, +1 on seeds 1 and 2, mean 2, sd sqrt 2: 2 -+ 12.706 = [-10.71, +14.71]; t = 2 at
    # 1 df gives p = 1 - 2 atan(2) / pi = 0.30.
    proc = across(tmp_path, old, new, "--seeds", "1..2")
    assert ("| pyramidnet20 | FUR-adjusted | 1..2 | 92.50 | 94.50 | +2.00 | [-10.71, +14.71] | +3.00, +1.00 | 2 of 2 | "
            "0.30 |") in proc.stdout.splitlines()
    assert "| random-adjusted | 2 | 91.00 | 91.00 | +0.00 | - | +0.00 | 0 of 1 | - |" in proc.stdout
    assert across(tmp_path, old, results()).stdout.startswith(
        "OLD old.json, NEW new.json: the same search and final settings.")
    proc = across(tmp_path, old, new, "--seeds", "5..9")
    assert proc.returncode != 0
    assert "old.json and new.json hold no final training of the same family, arm and seed among seeds 5..9" in proc.stderr


def test_a_planned_test_against_a_second_file_subtracts_its_finals_and_names_what_differs(tmp_path):
    (tmp_path / "results_floor4.json").write_text(json.dumps(results()))
    test = {**planned("0..2", "adjusted", "adjusted"), "against": "results_floor4.json"}
    proc = plans(tmp_path, floor_2(results()), [test])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2] == (
        "| abc1234 | pyramidnet20 | x0.5 | 4000 | 10 rounds: 8 epochs, then 2 warm-started, min width 2 | 8 | 0..2 | "
        "FUR-adjusted - FUR-adjusted at min width 4 | - | primary | +2.00 | [-0.48, +4.48] | 3 of 3 | 0.074 |")
    # Where no setting differs, the comparison names the other file.
    proc = plans(tmp_path, results(), [test])
    assert "| FUR-adjusted - FUR-adjusted of results_floor4.json | - | primary | +0.00 |" in proc.stdout
    proc = plans(tmp_path, results(), [{**test, "seeds": "0..3", "comparison": ["adjusted", "random"]}])
    assert proc.returncode != 0
    assert ("results_evidence_test.json has no final training of adjusted/3; results_floor4.json has no final "
            "training of random/3") in proc.stderr
    proc = plans(tmp_path, results(), [{**test, "comparison": ["adjusted", "widest"]}])
    assert proc.returncode != 0 and "comparison adjusted - widest: the arms are uniform, adjusted," in proc.stderr
