"""Bad input, damaged state and odd requests: one clear line and exit code 2 (or the documented
behaviour), never a traceback, never lost data, never a half-created run."""

import json
import os

import pytest
import torch

from conftest import TINY
from netadjust.cli import main
from netadjust.config import SearchConfig
from netadjust.errors import ConfigError
from netadjust.io import FILE_MODE, write_json_atomic
from netadjust.rundir import RunDir
from netadjust.search import search

TINY_FLAGS = ["--width-mult", "0.25", "--train-subset", "128", "--rounds", "1", "--k", "2", "--epochs", "1",
              "--batch-size", "64", "--fur-batch-size", "128", "--repeats", "2", "--final-epochs", "1",
              "--quiet", "--no-report"]


def fails(capsys, *argv, code=2):
    """Run the CLI in-process; it must return ``code`` with one ``netadjust: error:`` line. Returns it."""
    assert main(list(argv)) == code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("netadjust: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.fixture
def run(tiny_run):
    return tiny_run


# -- 1. data loss ------------------------------------------------------------------------------
def test_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "keep.txt").write_text("x")
    line = fails(capsys, "search", "--out", str(d), "--overwrite", *TINY_FLAGS)
    assert "refuses to delete" in line and "no config.json" in line
    assert (d / "keep.txt").read_text() == "x" and (d / "sub").is_dir()
    (d / "config.json").write_text("{}")  # a config.json does not make the rest a run's
    line = fails(capsys, "search", "--out", str(d), "--overwrite", *TINY_FLAGS)
    assert "files a run does not write (keep.txt, sub)" in line and (d / "keep.txt").exists()


def test_overwrite_deletes_a_run_and_says_what(run, caplog):
    (run / "checkpoints" / ".round0.pt.abc.tmp").write_bytes(b"")  # a stale temporary file is a run's
    held = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert RunDir(run).remove() == held and not run.exists()
    assert "config.json" in held and "records.jsonl" in held and "checkpoints/round0.pt" in held


def test_resume_and_overwrite_contradict(run, capsys):
    line = fails(capsys, "search", "--resume", str(run), "--overwrite")
    assert "--resume and --overwrite contradict each other" in line
    assert (run / "records.jsonl").exists()


# -- 2. stale results --------------------------------------------------------------------------
def test_resume_with_other_final_epochs_retrains_the_final_runs(run):
    cfg = SearchConfig.from_dict({**TINY, "out": str(run), "final_epochs": 2})
    result = search(cfg, resume=True, allow_changes=True, progress=False)
    for name in ("original", "searched"):
        stored = json.loads((run / "final" / f"{name}_seed0.json").read_text())
        assert stored["epochs"] == 2 and stored["train"]["epochs"] == 2
    assert result.summary.final_epochs == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["original_test_accs"] == [json.loads((run / "final" / "original_seed0.json").read_text())["test_acc"]]


def test_resume_with_more_rounds_retrains_the_final_runs_on_the_new_widths_and_fewer_is_refused(run):
    result = search(SearchConfig.from_dict({**TINY, "out": str(run), "rounds": 2}), resume=True, allow_changes=True,
                    progress=False)
    assert len(result.records) == 2
    stored = json.loads((run / "final" / "searched_seed0.json").read_text())
    assert stored["widths"] == result.widths_final == result.records[1].next_widths
    with pytest.raises(ConfigError, match="already holds 2 rounds, more than --rounds 1; resume with --rounds 2"):
        search(SearchConfig.from_dict({**TINY, "out": str(run)}), resume=True, allow_changes=True, progress=False)


# -- 3. settings that resume would ignore --------------------------------------------------------
@pytest.mark.parametrize("extra, named", [(["--preset", "paper"], "--preset"), (["--out", "elsewhere"], "--out"),
                                          (["--config", "c.json"], "--config")])
def test_resume_refuses_settings_it_would_ignore(run, capsys, extra, named):
    line = fails(capsys, "search", "--resume", str(run), *extra)
    assert f"{named} cannot be combined with it" in line and "--allow-changes" in line


# -- 4. half-created runs ------------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--device", "cuda"], "--device cuda: CUDA is not available here"),
    (["--device", "cuda:7"], "--device cuda:7: "),
    (["--device", "mps"], "--device mps: Apple's MPS is not available here"),
    (["--device", "tpu"], "--device must be one of auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["--seed", "99999999999999999999"], "--seed must be an integer in [0, "),
    (["--width-mult", "inf"], "--width-mult must be a finite number, got inf"),
])
def test_bad_run_settings_fail_before_anything_is_written(tmp_path, capsys, flags, message):
    if torch.cuda.device_count() > (7 if "cuda:7" in flags else 0) and "cuda" in flags[-1]:
        pytest.skip("this machine has that CUDA device")
    out = tmp_path / "run"
    for command in ("search", "train"):
        line = fails(capsys, command, "--out", str(out), *(TINY_FLAGS if command == "search" else ["--quiet"]), *flags)
        assert message in line
        assert not out.exists()


# -- 5. config values of the wrong type ------------------------------------------------------------
@pytest.mark.parametrize("content, message", [
    ({"lr": "fast"}, "lr must be a number, got 'fast'"),
    ({"epochs": "1"}, "epochs must be an integer, got '1'"),
    ({"train": 5}, "'train' must be a table of training settings"),
    ({"dataset": 5}, "dataset must be a string, got 5"),
    ({"fur_control_variate": "false"}, "fur_control_variate must be true or false, got 'false'"),
    ({"rounds": True}, "rounds must be an integer, got True"),
    ({"alpha": "big"}, "alpha must be a number, got 'big'"),
    ({"residual": "min"}, "residual must be one of max, local, got 'min'"),
    ([1, 2], "must be an object of settings, got list"),
])
def test_config_file_values_are_type_checked(tmp_path, capsys, content, message):
    (tmp_path / "c.json").write_text(json.dumps(content))
    line = fails(capsys, "search", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "run"))
    assert f"config file {tmp_path / 'c.json'}" in line and message in line
    assert not (tmp_path / "run").exists()


def test_config_numbers_become_floats_where_the_field_is_a_float():
    cfg = SearchConfig.from_dict({"lr": 1, "budget": 1, "train": {"momentum": 0}})
    assert type(cfg.train.lr) is float and type(cfg.budget) is float and type(cfg.train.momentum) is float


# -- 6. other tracebacks that became one line -----------------------------------------------------
def test_flops_alpha_inf(capsys):
    assert "alpha must be a finite number >= 0, got inf" in fails(capsys, "flops", "--arch", "pyramidnet20",
                                                                   "--alpha", "inf")


def test_widths_file_not_utf8(tmp_path, capsys):
    (tmp_path / "w.json").write_bytes(b"\xff\xfe\x00garbage")
    line = fails(capsys, "flops", "--widths", str(tmp_path / "w.json"))
    assert f"widths file {tmp_path / 'w.json'} is not JSON text (not UTF-8)" in line


@pytest.mark.parametrize("line, message", [
    (b"\x80\x81binary\n", "records.jsonl line 1 is corrupt: not a JSON object"),
    (b"[1, 2]\n", "records.jsonl line 1 is corrupt: expected a JSON object, got list"),
    (None, "records.jsonl line 1 is corrupt: missing 'next_widths'"),
])
def test_damaged_records_on_resume_and_in_report(run, capsys, line, message):
    if line is None:
        record = json.loads((run / "records.jsonl").read_text())
        del record["next_widths"]
        line = (json.dumps(record) + "\n").encode()
    (run / "records.jsonl").write_bytes(line)
    assert message in fails(capsys, "search", "--resume", str(run))
    assert message in fails(capsys, "report", str(run))


def test_config_json_holding_a_list(run, capsys):
    (run / "config.json").write_text("[1, 2]")
    line = fails(capsys, "search", "--resume", str(run))
    assert "config.json is corrupt: expected a JSON object, got list" in line


def test_resume_of_a_file_and_out_naming_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert "is a file; expected a run directory" in fails(capsys, "search", "--resume", str(f))
    for command in ("search", "train"):
        line = fails(capsys, command, "--out", str(f / "run"), *(TINY_FLAGS if command == "search" else []))
        assert f"--out {f / 'run'}: {f} is a file, not a directory" in line
    line = fails(capsys, "train", "--out", str(f), "--epochs", "1")
    assert f"--out {f}: {f} is a file" in line


def test_report_out_naming_a_file(run, capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    assert "is a file" in fails(capsys, "report", str(run), "--out", str(tmp_path / "f"))


def test_loadable_current_checkpoint_that_is_not_a_training_state_restarts_the_round(run, caplog):
    torch.save({"weights": torch.zeros(3)}, run / "checkpoints" / "current.pt")
    result = search(SearchConfig.from_dict({**TINY, "out": str(run), "rounds": 2}), resume=True, allow_changes=True,
                    progress=False)
    assert len(result.records) == 2 and "current.pt is not a training checkpoint" in caplog.text


# -- 7. smaller ----------------------------------------------------------------------------------
def test_atomic_files_get_the_umask_mode(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == FILE_MODE
    old = os.umask(0o022)
    os.umask(old)
    assert FILE_MODE == 0o666 & ~old


def test_stale_temporary_files_are_removed_on_resume(run):
    stale = [run / ".records.jsonl.x1y2.tmp", run / "checkpoints" / ".current.pt.a.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    search(SearchConfig.from_dict({**TINY, "out": str(run)}), resume=True, progress=False)
    assert not any(p.exists() for p in stale)


def test_diverged_but_finite_training_warns(caplog):
    from netadjust.train import warn_if_diverged

    assert warn_if_diverged("round 1: heldout", 5e12, 10) and "training diverged" in caplog.text
    assert not warn_if_diverged("round 1: heldout", 2.5, 10)  # near uniform guessing's 2.30: no warning


def test_flops_defaults_to_each_family_s_natural_geometry(capsys):
    assert main(["flops", "--arch", "resnet18", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["macs"] == 1_814_073_344 and report["arch"]["input_size"] == 224
    assert report["arch"]["num_classes"] == 1000
    assert main(["flops", "--arch", "resnet20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arch"]["input_size"] == 32


def test_help_shows_the_preset_values(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "search rounds T (default 10; demo preset: 5)" in text
    assert "(default 0; demo preset: 20)" in text  # --final-epochs
    assert "digits, fashion-mnist, cifar10, cifar100 or imagefolder" in text
