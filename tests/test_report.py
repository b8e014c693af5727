"""The report generator on hand-written run directories (fast) and on a real tiny search (slow)."""

import json
import logging

import pytest

from netadjust.errors import ConfigError
from netadjust.report import IMAGES, write_report

mpimg = pytest.importorskip("matplotlib.image")

KEYS = ["stage1.block0.conv1", "stage1.block0.conv2", "stage2.block0.conv1", "stage2.block0.conv2"]
WIDTHS = [
    {"stage1.block0.conv1": 16, "stage1.block0.conv2": 16, "stage2.block0.conv1": 32, "stage2.block0.conv2": 32},
    {"stage1.block0.conv1": 18, "stage1.block0.conv2": 14, "stage2.block0.conv1": 36, "stage2.block0.conv2": 29},
    {"stage1.block0.conv1": 20, "stage1.block0.conv2": 12, "stage2.block0.conv1": 38, "stage2.block0.conv2": 28},
]
FINAL = {"stage1.block0.conv1": 21, "stage1.block0.conv2": 12, "stage2.block0.conv1": 40, "stage2.block0.conv2": 26}
MACS = [40_557_000, 40_612_345, 40_401_000]
NEXT_MACS = MACS[1:] + [40_489_999]
PARAMS = [270_000, 268_500, 271_250]
HELDOUT = [0.6125, 0.6450, 0.6600]
TEST = [0.6010, 0.6333, 0.6512]
TRAIN_S = [12.34, 11.96, 12.07]
FUR_S = [4.51, 4.49, 4.62]


def record(t: int) -> dict:
    widths, nxt = WIDTHS[t], (WIDTHS + [FINAL])[t + 1]
    moves = {k: nxt[k] - widths[k] for k in KEYS if nxt[k] != widths[k]}
    fur = {k: 0.01 * (i + 1) * (-1) ** (i + t) for i, k in enumerate(KEYS)}
    return {
        "round": t, "widths": widths, "macs": MACS[t], "params": PARAMS[t], "heldout_acc": HELDOUT[t],
        "heldout_loss": 1.2, "test_acc": TEST[t], "test_loss": 1.3, "fur": fur,
        "fur_stderr": {k: 0.002 for k in KEYS}, "drop_rate": {k: 0.05 for k in KEYS}, "drop_rate_clipped": [],
        "fur_base_loss": 1.2, "moves": moves, "next_widths": nxt, "next_macs": NEXT_MACS[t],
        "train_seconds": TRAIN_S[t], "fur_seconds": FUR_S[t], "seconds": TRAIN_S[t] + FUR_S[t] + 0.1,
        "history": [{"epoch": 0, "loss": 2.0}],
    }


def make_run(path, *, rounds_done=3, rounds=3, final=True, summary=True, comparison=True):
    path.mkdir(parents=True)
    config = {"arch": "resnet20", "width_mult": 0.25, "dataset": "digits", "rounds": rounds, "k": 2,
              "tolerance": 0.01, "epochs": 1, "final_epochs": 2 if comparison else 0, "seed": 0}
    (path / "config.json").write_text(json.dumps(config))
    (path / "records.jsonl").write_text("".join(json.dumps(record(t)) + "\n" for t in range(rounds_done)))
    if final:
        (path / "widths_final.json").write_text(json.dumps(FINAL))
    if summary:
        s = {"arch": {"arch": "resnet20", "num_classes": 10}, "dataset": "digits", "rounds": rounds,
             "macs_original": MACS[0], "macs_final": NEXT_MACS[-1], "macs_target": 40_500_000,
             "params_original": PARAMS[0], "params_final": 272_000, "within_tolerance": True, "search_seconds": 50.0}
        if comparison:
            s.update(final_epochs=2, original_test_acc=0.6952, searched_test_acc=0.7157, test_acc_gain=0.0205)
            (path / "final").mkdir()
            for name, acc in (("original", 0.6952), ("searched", 0.7157)):
                (path / "final" / f"{name}_seed0.json").write_text(
                    json.dumps({"widths": FINAL, "test_acc": acc, "epochs": 2, "seed": 0, "seconds": 3.2}))
        (path / "summary.json").write_text(json.dumps(s))
    return path


def cells(text: str, first: str) -> list[str]:
    """The cells of the markdown table row whose first cell is ``first``."""
    for line in text.splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and parts[0] == first:
            return parts
    raise AssertionError(f"no table row starting with {first!r} in:\n{text}")


def check_pngs(out):
    for name in IMAGES:
        raw = (out / name).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n", name
        h, w = mpimg.imread(out / name).shape[:2]
        assert 300 <= w <= 6000 and 200 <= h <= 4000, (name, w, h)


def test_full_report(tmp_path, caplog):
    run = make_run(tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="netadjust.report"):
        path = write_report(run)
    out = run / "report"
    assert path == out / "report.md"
    assert sorted(p.name for p in out.iterdir()) == sorted([*IMAGES, "report.md"])
    assert "report.md" in caplog.text
    check_pngs(out)
    text = path.read_text()
    assert "resnet20 on digits" in text and "Status: finished (3 of 3 rounds)" in text
    for image in IMAGES:
        assert f"]({image})" in text
    # Per-round rows: MACs in M, params in K, accuracies in %, seconds, moves widened/narrowed.
    assert cells(text, "round")[1:3] == ["MACs (M)", "params (K)"]
    assert cells(text, "0") == ["0", "40.557", "270.000", "61.25", "60.10", "12.3", "4.5", "2", "2", "40.612"]
    assert cells(text, "1") == ["1", "40.612", "268.500", "64.50", "63.33", "12.0", "4.5", "2", "2", "40.401"]
    assert cells(text, "2") == ["2", "40.401", "271.250", "66.00", "65.12", "12.1", "4.6", "2", "1", "40.490"]
    assert "- round 0: stage1.block0.conv1 +2, stage1.block0.conv2 -2" in text
    # Widths table: round 0 -> final with signed changes.
    assert cells(text, "stage1.block0.conv1") == ["stage1.block0.conv1", "16", "21", "+5"]
    assert cells(text, "stage1.block0.conv2") == ["stage1.block0.conv2", "16", "12", "-4"]
    assert cells(text, "stage2.block0.conv1") == ["stage2.block0.conv1", "32", "40", "+8"]
    assert cells(text, "stage2.block0.conv2") == ["stage2.block0.conv2", "32", "26", "-6"]
    assert "2 layers widened, 2 narrowed, 0 unchanged" in text
    # Final comparison, with the MACs target from the summary.
    assert cells(text, "MACs target")[1] == "40.500M"
    assert cells(text, "original") == ["original", "69.52", "40.557", "270.000K"]
    assert cells(text, "searched") == ["searched", "71.57", "40.490", "272.000K"]
    assert cells(text, "difference") == ["difference", "+2.05", "-0.067", "+2.000K"]
    assert cells(text, "original_seed0")[2] == "69.52"


def test_report_without_comparison(tmp_path):
    run = make_run(tmp_path / "run", comparison=False)
    text = write_report(run, tmp_path / "elsewhere").read_text()
    assert (tmp_path / "elsewhere" / "widths.png").exists() and not (run / "report").exists()
    assert "No final comparison" in text
    assert "| original |" not in text and "| difference |" not in text


def test_unfinished_run_still_reports(tmp_path):
    run = make_run(tmp_path / "run", rounds_done=2, rounds=10, final=False, summary=False)
    out = write_report(run).parent
    check_pngs(out)
    text = (out / "report.md").read_text()
    assert "**unfinished**: 2 of 10 rounds recorded" in text
    assert cells(text, "rounds")[1] == "2 done of 10"
    with pytest.raises(AssertionError):
        cells(text, "2")  # no third round row
    # "After" is the latest adjustment: round 1's next_widths; the target falls back to round 0's MACs.
    assert "round 0 -> next (after round 1)" in text
    assert cells(text, "stage1.block0.conv1") == ["stage1.block0.conv1", "16", "20", "+4"]
    assert cells(text, "MACs target")[1] == "40.557M (round 0's MACs)"
    assert "No final comparison" in text


def test_search_done_but_comparison_pending(tmp_path):
    run = make_run(tmp_path / "run", summary=False)
    text = write_report(run).read_text()
    assert "summary.json is missing" in text and "round 0 -> final" in text


def test_missing_run_directory(tmp_path):
    with pytest.raises(ConfigError, match="nope does not exist"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="config.json is missing"):
        write_report(tmp_path / "empty")


def test_corrupt_files_are_named(tmp_path):
    run = make_run(tmp_path / "run")
    good = (run / "records.jsonl").read_text()
    (run / "records.jsonl").write_text(good + '{"round": 3, "wid\n')
    with pytest.raises(ConfigError, match="records.jsonl line 4 is corrupt"):
        write_report(run)
    (run / "records.jsonl").write_text(good.replace('"macs": 40612345', '"macs": "x"'))
    with pytest.raises(ConfigError, match="records.jsonl line 2 is corrupt"):
        write_report(run)
    (run / "records.jsonl").write_text("")
    with pytest.raises(ConfigError, match="records.jsonl holds no completed round"):
        write_report(run)
    (run / "records.jsonl").write_text(good)
    (run / "widths_final.json").write_text('{"stage1.block0.conv1": 3}')
    with pytest.raises(ConfigError, match="widths_final.json is corrupt"):
        write_report(run)
    (run / "widths_final.json").write_text(json.dumps(FINAL))
    (run / "summary.json").write_text("{")
    with pytest.raises(ConfigError, match="summary.json is corrupt"):
        write_report(run)
    assert not (run / "report").exists()


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ConfigError, match=r"pip install 'netadjust\[report\]'"):
        write_report(make_run(tmp_path / "run"))


@pytest.mark.slow
def test_report_of_a_real_search(tmp_path):
    from netadjust.config import SearchConfig
    from netadjust.search import search

    cfg = SearchConfig.from_dict(dict(arch="resnet20", width_mult=0.25, dataset="digits", train_subset=256, rounds=2,
                                      k=3, epochs=1, batch_size=64, fur_batch_size=128, repeats=2, final_epochs=1,
                                      out=str(tmp_path / "run")))
    result = search(cfg, progress=False)
    path = write_report(result.run_dir)
    check_pngs(path.parent)
    text = path.read_text()
    assert "Status: finished (2 of 2 rounds)" in text
    assert cells(text, "0")[3:5] == [f"{100 * result.records[0][k]:.2f}" for k in ("heldout_acc", "test_acc")]
    key = next(iter(result.widths_final))
    change = result.widths_final[key] - result.widths_original[key]
    assert cells(text, key)[3] == (f"{change:+d}" if change else "0")
    assert cells(text, "difference")[1] == f"{100 * result.summary['test_acc_gain']:+.2f}"
