"""The command line: output, JSON, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from netadjust.cli import main


def run_cli(*args):
    """Run the real console entry point in a subprocess; returns (code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "netadjust", *args], capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_models_lists_families(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "plain20" in out and "resnet110" in out


def test_datasets_lists_each_with_its_source(capsys):
    from netadjust.data import DATASETS

    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{name}: {spec.help}" for name, spec in DATASETS.items()]


def test_flops_json_matches_paper(capsys):
    assert main(["flops", "--arch", "resnet20", "--num-classes", "100", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["macs"] == 40_556_800 and report["macs_without_stem"] == 40_114_432
    assert report["params"] == sum(row["params"] for row in report["layers"])
    assert sum(row["searchable"] for row in report["layers"]) == 18
    assert [row["key"] for row in report["keys"]][:2] == ["stage1.block0.conv1", "stage1.block0.conv2"]
    assert all(row["dmacs_dc"] > 0 for row in report["keys"])


def test_flops_table_with_widths_file(tmp_path, capsys):
    from netadjust.models import get_arch

    w = get_arch("resnet20").default_widths()
    w["stage3.block2.conv2"] = 128
    (tmp_path / "w.json").write_text(json.dumps(w))
    assert main(["flops", "--widths", str(tmp_path / "w.json"), "--input-size", "8", "--in-channels", "1"]) == 0
    out = capsys.readouterr().out
    assert "stage3.block2.conv2" in out and "  128  " in out
    arch = get_arch("resnet20", input_size=8, in_channels=1)
    macs, params = arch.macs(w), arch.params(w)
    stem = arch.layers(w)[0].macs
    assert out.strip().splitlines()[-1] == (f"total: {macs:,} MACs ({macs / 1e6:.2f}M; {(macs - stem) / 1e6:.2f}M "
                                            f"without the stem), {params:,} params ({params / 1e6:.2f}M)")
    assert macs == 2_664_704 and params == 307_066  # equal to FlopCounterMode / 2 and the built model's parameters


@pytest.mark.parametrize("family, option, value", [("pyramidnet20", "alpha", 48.0), ("densenet40", "growth", 6)])
def test_family_options_reach_the_arch(family, option, value, capsys):
    from netadjust.cli import build_parser, search_config
    from netadjust.models import get_arch

    flag = f"--{option}"
    assert main(["flops", "--arch", family, flag, str(value), "--json"]) == 0
    expected = get_arch(family, **{option: value})
    assert json.loads(capsys.readouterr().out)["macs"] == expected.macs(expected.default_widths())
    assert expected.macs(expected.default_widths()) != get_arch(family).macs(get_arch(family).default_widths())
    cfg = search_config(build_parser().parse_args(["search", "--arch", family, flag, str(value)]))
    assert cfg.arch_options == {option: value} and type(cfg.arch_options[option]) is type(value)
    assert cfg.to_flat()[option] == value


@pytest.mark.parametrize("args, message", [
    (["flops", "--arch", "resnet21"], "unknown architecture 'resnet21'"),
    (["flops", "--num-classes", "0"], "num_classes must be a positive integer"),
    (["flops", "--arch", "resnet20", "--growth", "6"], "resnet20 does not take option(s) growth"),
    (["flops", "--arch", "densenet40", "--growth", "0"], "growth must be a positive integer, got 0"),
    (["flops", "--widths", "/nonexistent/w.json"], "cannot read widths file"),
])
def test_errors_are_one_line_exit_2(args, message):
    code, out, err = run_cli(*args)
    assert code == 2
    assert err.startswith("netadjust: error: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_widths_file_is_one_line_exit_2(tmp_path):
    (tmp_path / "w.json").write_text('{"stage1.block0.conv1": -3, "extra": 1}')
    code, _, err = run_cli("flops", "--widths", str(tmp_path / "w.json"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "unknown key 'extra'" in err and "-3 is not a positive integer" in err and "missing 17 key(s)" in err
    (tmp_path / "n.json").write_text("widths: 3")
    code, _, err = run_cli("flops", "--widths", str(tmp_path / "n.json"))
    assert code == 2 and "is not valid JSON" in err


def test_search_flags_override_config_file(tmp_path):
    (tmp_path / "c.toml").write_text('rounds = 5\nk = 2\n[train]\nepochs = 9\n')
    from netadjust.cli import build_parser, search_config

    cfg = search_config(build_parser().parse_args(["search", "--config", str(tmp_path / "c.toml"), "--rounds", "1"]))
    assert (cfg.rounds, cfg.k, cfg.train.epochs) == (1, 2, 9)  # flag > file > preset
    assert cfg.dataset == "digits" and cfg.final_epochs == 20  # the demo preset fills the rest


def test_search_command_errors(tmp_path):
    (tmp_path / "bad.toml").write_text("rounds = [")
    code, _, err = run_cli("search", "--config", str(tmp_path / "bad.toml"))
    assert code == 2 and "is not valid TOML" in err
    (tmp_path / "c.json").write_text('{"roundz": 3}')
    code, _, err = run_cli("search", "--config", str(tmp_path / "c.json"))
    assert code == 2 and "unknown key 'roundz' (did you mean rounds" in err
    code, _, err = run_cli("search", "--k", "12", "--out", str(tmp_path / "r"))
    errors = [line for line in err.splitlines() if line.startswith("netadjust: error:")]
    assert code == 2 and len(errors) == 1 and "--k 12 is larger than half" in errors[0] and "Traceback" not in err


def test_report_command_errors_on_missing_run(tmp_path):
    code, _, err = run_cli("report", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err


def test_log_json_lines_are_json(tmp_path):
    code, _, err = run_cli("train", "--dataset", "digits", "--epochs", "1", "--width-mult", "0.25", "--train-subset",
                           "100", "--batch-size", "50", "--out", str(tmp_path / "t"), "--log-json")
    assert code == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("epoch   1/1" in line["message"] for line in lines)
    assert all({"time", "level", "message"} <= set(line) for line in lines)
