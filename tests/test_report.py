"""The report generator on hand-written run directories (fast) and on a real tiny search (slow)."""

import json
import logging

import pytest

import netadjust.report
from netadjust.errors import ConfigError
from netadjust.report import IMAGES, write_report
from netadjust.report.run import load_run

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
                (path / "final" / f"{name}_seed0.json").write_text(json.dumps(
                    {"widths": FINAL, "test_acc": acc, "test_loss": 0.9, "epochs": 2, "seed": 0, "seconds": 3.2}))
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


def test_damaged_records_are_named(tmp_path):
    run = make_run(tmp_path / "run")
    good = (run / "records.jsonl").read_text().splitlines(keepends=True)
    records = run / "records.jsonl"

    def line2(mutate) -> None:
        rec = json.loads(json.dumps(record(1)))  # a deep copy: record() shares WIDTHS
        mutate(rec)
        records.write_text(good[0] + json.dumps(rec) + "\n" + good[2])

    line2(lambda rec: rec.pop("next_widths"))
    with pytest.raises(ConfigError, match=r"records.jsonl line 2 is corrupt: missing 'next_widths'"):
        write_report(run)
    records.write_bytes(good[0].encode() + b"\xff\xfe\x00\x81binary\n" + good[2].encode())
    with pytest.raises(ConfigError, match=r"records.jsonl line 2 is corrupt: not a JSON object"):
        write_report(run)
    records.write_text(good[0] + json.dumps([record(1)]) + "\n")
    with pytest.raises(ConfigError, match=r"records.jsonl line 2 is corrupt: expected a JSON object, got list"):
        write_report(run)
    line2(lambda rec: rec["widths"].pop("stage2.block0.conv2"))
    with pytest.raises(ConfigError, match=r"records.jsonl line 2 \('widths'\) is corrupt: expected a mapping of "
                                          r"layer key -> channels with the 4 layer keys of round 0"):
        write_report(run)
    line2(lambda rec: rec["widths"].update({"stage9.conv": 8}))
    with pytest.raises(ConfigError, match=r"records.jsonl line 2 \('widths'\) is corrupt"):
        write_report(run)
    assert not (run / "report").exists()


def test_unfinished_run_checks_the_latest_next_widths(tmp_path):
    run = make_run(tmp_path / "run", rounds_done=2, rounds=10, final=False, summary=False)
    rec = record(1)
    rec["next_widths"] = {"stage1.block0.conv1": 20}
    lines = (run / "records.jsonl").read_text().splitlines(keepends=True)
    (run / "records.jsonl").write_text(lines[0] + json.dumps(rec) + "\n")
    with pytest.raises(ConfigError, match=r"records.jsonl line 2 \('next_widths'\) is corrupt: expected a mapping "
                                          r"of layer key -> channels with the 4 layer keys of round 0"):
        write_report(run)


def test_damaged_config_summary_and_finals_are_named(tmp_path):
    run = make_run(tmp_path / "run")
    config = (run / "config.json").read_text()
    (run / "config.json").write_text(json.dumps([json.loads(config)]))
    with pytest.raises(ConfigError, match=r"config.json is corrupt: expected a JSON object, got list"):
        write_report(run)
    (run / "config.json").write_text(config)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "macs_target": "40.5M"}))
    with pytest.raises(ConfigError, match=r"summary.json is corrupt: macs_target must be a number, got '40.5M'"):
        write_report(run)
    (run / "summary.json").write_text(json.dumps({**summary, "final_seeds": [0, 1], "original_test_accs": [0.7]}))
    with pytest.raises(ConfigError, match=r"summary.json is corrupt: final_seeds lists 2 seeds but "
                                          r"original_test_accs holds 1 values"):
        write_report(run)
    (run / "summary.json").write_text(json.dumps(summary))
    final = run / "final" / "searched_seed0.json"
    (final).write_text(json.dumps({**json.loads(final.read_text()), "epochs": 2.5}))
    with pytest.raises(ConfigError, match=r"searched_seed0.json is corrupt: epochs must be an integer, got 2.5"):
        write_report(run)
    assert not (run / "report").exists()


def test_out_naming_a_file_is_refused_before_plotting(tmp_path, monkeypatch):
    def no_plotting(data):
        raise AssertionError("plotted although the output directory is a file")

    for name in netadjust.report.PLOTS:
        monkeypatch.setitem(netadjust.report.PLOTS, name, no_plotting)
    run = make_run(tmp_path / "run")
    (tmp_path / "taken").write_text("not a directory")
    with pytest.raises(ConfigError, match=r"taken is a file; choose another --out"):
        write_report(run, tmp_path / "taken")
    with pytest.raises(ConfigError, match=r"taken/report: .*taken is a file; choose another --out"):
        write_report(run, tmp_path / "taken" / "report")
    (run / "report").write_text("not a directory")
    with pytest.raises(ConfigError, match=r"run/report is a file; choose another --out"):
        write_report(run)
    assert (tmp_path / "taken").read_text() == (run / "report").read_text() == "not a directory"


# -- final comparison over several seeds ------------------------------------------------------
SEEDS = [0, 1, 2]
ORIGINAL_ACCS = [0.6900, 0.6952, 0.7010]
SEARCHED_ACCS = [0.7120, 0.7157, 0.7085]


def seeded_run(path, *, aggregates=True):
    """A finished run whose final comparison ran on three seeds (``aggregates``: with the
    summary's means, stds and CI; without, the report computes them from the per-seed lists)."""
    run = make_run(path)
    summary = json.loads((run / "summary.json").read_text())
    summary.update(final_seeds=SEEDS, original_test_accs=ORIGINAL_ACCS, searched_test_accs=SEARCHED_ACCS,
                   original_test_acc=0.6954, searched_test_acc=0.712067)
    if aggregates:
        summary.update(original_test_acc_std=0.005503, searched_test_acc_std=0.0036, test_acc_gain=0.016667,
                       test_acc_gain_ci95=[-0.003142, 0.036475])
    else:
        del summary["test_acc_gain"]
    (run / "summary.json").write_text(json.dumps(summary))
    for seed, orig, searched in zip(SEEDS, ORIGINAL_ACCS, SEARCHED_ACCS):
        for name, acc in (("original", orig), ("searched", searched)):
            (run / "final" / f"{name}_seed{seed}.json").write_text(json.dumps(
                {"widths": FINAL, "test_acc": acc, "test_loss": 0.9, "epochs": 2, "seed": seed, "seconds": 3.2}))
    return run


@pytest.mark.parametrize("aggregates", [True, False], ids=["from-summary", "computed"])
def test_comparison_over_seeds(tmp_path, aggregates):
    text = write_report(seeded_run(tmp_path / "run", aggregates=aggregates)).read_text()
    final = text.split("## Final comparison", 1)[1]  # seed rows "0", "1", "2" also start round rows above
    assert "(2 epochs) on each of 3 seeds (0, 1, 2); test split." in final
    assert cells(final, "seed") == ["seed", "original test acc (%)", "searched test acc (%)", "difference (points)"]
    assert cells(final, "0") == ["0", "69.00", "71.20", "+2.20"]
    assert cells(final, "1") == ["1", "69.52", "71.57", "+2.05"]
    assert cells(final, "2") == ["2", "70.10", "70.85", "+0.75"]
    assert cells(final, "network")[1] == "test acc (%, mean ± std)"
    assert cells(final, "original") == ["original", "69.54 ± 0.55", "40.557", "270.000K"]
    assert cells(final, "searched") == ["searched", "71.21 ± 0.36", "40.490", "272.000K"]
    assert cells(final, "difference") == ["difference", "+1.67", "-0.067", "+2.000K"]
    assert "searched - original: +1.67 points, 95% CI [-0.31, +3.65] over 3 seeds (paired by seed)." in final
    assert cells(final, "searched_seed2")[1:] == ["2", "70.85", "3.2"]


def test_comparison_with_one_listed_seed_is_unchanged(tmp_path):
    run = make_run(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    summary.update(final_seeds=[0], original_test_accs=[0.6952], searched_test_accs=[0.7157],
                   original_test_acc_std=0.0, searched_test_acc_std=0.0)
    (run / "summary.json").write_text(json.dumps(summary))
    text = write_report(run).read_text()
    assert "(2 epochs) and seed; test split." in text and "paired by seed" not in text
    assert cells(text, "original") == ["original", "69.52", "40.557", "270.000K"]
    assert cells(text, "difference") == ["difference", "+2.05", "-0.067", "+2.000K"]


# -- the figures' content -------------------------------------------------------------------
def lines_by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def test_widths_figure(tmp_path):
    from netadjust.report.plots import plot_widths

    data = load_run(make_run(tmp_path / "run"))
    ax = plot_widths(data).axes[0]
    before, after = [WIDTHS[0][k] for k in KEYS], [FINAL[k] for k in KEYS]
    kept, widened, narrowed = ax.containers
    assert [p.get_height() for p in kept] == [min(b, a) for b, a in zip(before, after)]
    assert [p.get_y() for p in kept] == [0] * len(KEYS)
    assert [p.get_height() for p in widened] == [max(a - b, 0) for b, a in zip(before, after)] == [5, 0, 8, 0]
    assert [p.get_y() for p in widened] == before
    assert [p.get_height() for p in narrowed] == [max(b - a, 0) for b, a in zip(before, after)] == [0, 4, 0, 6]
    assert [p.get_y() for p in narrowed] == after
    assert [p.get_x() + p.get_width() / 2 for p in kept] == list(range(len(KEYS)))
    assert [t.get_text() for t in ax.get_xticklabels()] == KEYS
    assert ax.get_title() == "widths: round 0 → final"


def test_widths_rounds_figure(tmp_path):
    from netadjust.report.plots import plot_widths_rounds

    data = load_run(make_run(tmp_path / "run"))
    ax = plot_widths_rounds(data).axes[0]
    (image,) = ax.images
    assert image.get_array().tolist() == [[w[k] for k in KEYS] for w in [*WIDTHS, FINAL]]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["round 0", "round 1", "round 2", "final"]
    assert [t.get_text() for t in ax.get_xticklabels()] == KEYS
    # An unfinished run: the last row is the latest adjustment.
    data = load_run(make_run(tmp_path / "unfinished", rounds_done=2, rounds=10, final=False, summary=False))
    ax = plot_widths_rounds(data).axes[0]
    assert ax.images[0].get_array().tolist() == [[w[k] for k in KEYS] for w in WIDTHS]
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "next"


def test_fur_figure(tmp_path):
    import numpy as np

    from netadjust.report.plots import plot_fur

    data = load_run(make_run(tmp_path / "run"))
    top, _colorbar, bottom = plot_fur(data).axes[:3]
    fur = [[record(t)["fur"][k] for k in KEYS] for t in range(3)]
    np.testing.assert_allclose(top.images[0].get_array(), fur)
    assert [t.get_text() for t in top.get_yticklabels()] == ["round 0", "round 1", "round 2"]
    bars = bottom.containers
    assert len(bars) == 3
    for t, bar in enumerate(bars):
        line, _caps, (segments,) = bar.lines
        np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), fur[t])  # errorbar keeps objects
        lows = [seg[0][1] for seg in segments.get_segments()]
        highs = [seg[1][1] for seg in segments.get_segments()]
        np.testing.assert_allclose(lows, [v - 0.002 for v in fur[t]])
        np.testing.assert_allclose(highs, [v + 0.002 for v in fur[t]])
        assert bar.get_label() == f"round {t}"
    assert [t.get_text() for t in bottom.get_xticklabels()] == KEYS


def test_progress_figure(tmp_path):
    import numpy as np

    from netadjust.report.plots import plot_progress

    data = load_run(make_run(tmp_path / "run"))
    fig = plot_progress(data)
    left, right = fig.axes
    lines = lines_by_label(left)
    np.testing.assert_allclose(lines["held-out accuracy"].get_ydata(), [100 * a for a in HELDOUT])
    np.testing.assert_allclose(lines["test accuracy"].get_ydata(), [100 * a for a in TEST])
    assert list(lines["test accuracy"].get_xdata()) == [0, 1, 2]
    macs = lines_by_label(right)
    assert list(macs["MACs (M)"].get_xdata()) == [0, 1, 2, 3]
    np.testing.assert_allclose(macs["MACs (M)"].get_ydata(), [m / 1e6 for m in MACS + NEXT_MACS[-1:]])
    np.testing.assert_allclose(macs["MACs target"].get_ydata(), [40.5, 40.5])
    assert [t.get_text() for t in left.get_xticklabels()] == ["0", "1", "2", "final"]
    # Without a summary the target is round 0's MACs.
    data = load_run(make_run(tmp_path / "unfinished", rounds_done=2, rounds=10, final=False, summary=False))
    left, right = plot_progress(data).axes
    np.testing.assert_allclose(lines_by_label(right)["MACs target"].get_ydata(), [MACS[0] / 1e6] * 2)
    np.testing.assert_allclose(lines_by_label(right)["MACs (M)"].get_ydata(), [m / 1e6 for m in MACS])
    assert left.get_title() == "search progress (unfinished)"


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
    first = result.records[0]
    assert cells(text, "0")[3:5] == [f"{100 * first.heldout_acc:.2f}", f"{100 * first.test_acc:.2f}"]
    key = next(iter(result.widths_final))
    change = result.widths_final[key] - result.widths_original[key]
    assert cells(text, key)[3] == (f"{change:+d}" if change else "0")
    assert cells(text, "difference")[1] == f"{100 * result.summary.test_acc_gain:+.2f}"
