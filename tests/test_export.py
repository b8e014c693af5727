"""`netadjust export`: ONNX, TorchScript and state-dict files of trained networks, checked."""

import json
import warnings

import pytest
import torch

import netadjust.export as export_module
from conftest import small_arch
from netadjust.cli import main
from netadjust.errors import ConfigError
from netadjust.export import ExportError, export, load_trained, trained_file
from netadjust.models import get_arch, list_archs


def _imports(*names):
    try:
        for name in names:
            __import__(name)
        return True
    except ImportError:
        return False


needs_onnx = pytest.mark.skipif(not _imports("onnx", "onnxscript", "onnxruntime"),
                                reason="onnx, onnxscript or onnxruntime missing (the export extra)")


def onnx_logits(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def onnx_metadata(path):
    import onnx

    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["netadjust"])


def relative_error(got, expected):
    return float((got - expected).abs().max() / expected.abs().max())


def trained_like(arch):
    """A network of ``arch`` with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = arch.build()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("name", [*list_archs(), "user_models:shufflenet"])
def test_onnx_logits_match_pytorch_for_every_family(name, tmp_path):
    arch = small_arch(name, input_size=16 if ":" in name else 8)
    model = trained_like(arch)
    meta = {"arch": arch.settings(), "input_shape": [arch.in_channels, arch.input_size, arch.input_size]}
    assert export(model, meta, tmp_path / "m.onnx", "onnx") < 1e-4
    x = torch.randn(7, arch.in_channels, arch.input_size, arch.input_size)  # another batch size: dynamic
    with torch.no_grad():
        expected = model(x)
    assert relative_error(onnx_logits(tmp_path / "m.onnx", x), expected) < 1e-4
    assert onnx_metadata(tmp_path / "m.onnx") == meta


@needs_onnx
def test_export_of_a_search_run_in_every_format(tiny_run_once, tmp_path, capsys):
    run = tiny_run_once
    searched = json.loads((run / "widths_final.json").read_text())
    model, meta = load_trained(trained_file(run))
    assert meta["widths"] == searched and meta["which"] == "searched" and meta["seed"] == 0
    x = torch.randn(3, *meta["input_shape"])
    with torch.no_grad():
        expected = model(x)

    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "logits match PyTorch's" in capsys.readouterr().out
    assert relative_error(onnx_logits(tmp_path / "m.onnx", x), expected) < 1e-4
    assert onnx_metadata(tmp_path / "m.onnx")["widths"] == searched

    assert main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    files = {"netadjust.json": ""}
    with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export, and says so
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(tmp_path / "m.pt"), _extra_files=files)
    assert torch.allclose(scripted(x), expected, rtol=1e-5, atol=1e-6)
    assert json.loads(files["netadjust.json"])["macs"] == meta["macs"]

    assert main(["export", str(run), "--format", "state-dict", "--which", "original", "--out",
                 str(tmp_path / "orig.pt")]) == 0
    original, original_meta = load_trained(tmp_path / "orig.pt")  # a state-dict export loads like the run's file
    assert original_meta["which"] == "original"
    assert original_meta["widths"] == json.loads((run / "records.jsonl").read_text().splitlines()[0])["widths"]


def test_wrong_requests_are_refused_by_name(tiny_run_once, tmp_path):
    with pytest.raises(ConfigError, match=r"has no searched network for --seed 5; it has seed\(s\) 0"):
        trained_file(tiny_run_once, "searched", 5)
    with pytest.raises(ConfigError, match="does not exist or is empty"):
        trained_file(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds no trained searched network"):
        trained_file(tmp_path / "half")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        load_trained(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "bare.pt")
    with pytest.raises(ConfigError, match="missing widths, arch"):
        load_trained(tmp_path / "bare.pt")


def test_a_file_whose_logits_differ_is_not_written(tiny_run_once, tmp_path, monkeypatch):
    model, meta = load_trained(trained_file(tiny_run_once))
    monkeypatch.setattr(export_module, "TOLERANCE", 0.0)  # no error is below 0: the check must fail
    out = tmp_path / "m.pt"
    with pytest.raises(ExportError, match=r"relative error of .* \(allowed 0e\+00\); not written to"):
        export(model, meta, out, "torchscript")
    assert not out.exists() and (tmp_path / "m.pt.unchecked").exists()


def test_export_of_netadjust_train(tmp_path):
    out = tmp_path / "single"
    assert main(["train", "--dataset", "digits", "--width-mult", "0.25", "--train-subset", "128", "--epochs", "1",
                 "--out", str(out), "--quiet"]) == 0
    assert main(["export", str(out), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    model, meta = load_trained(trained_file(out))
    assert meta["widths"] == get_arch("resnet20", width_mult=0.25).default_widths()
