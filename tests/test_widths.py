import pytest

from netadjust.errors import WidthsError
from netadjust.models import get_arch
from netadjust.widths import load_widths, save_widths


@pytest.fixture
def arch():
    return get_arch("resnet20")


def test_round_trip(arch, tmp_path):
    w = {k: i + 1 for i, k in enumerate(arch.default_widths())}
    save_widths(tmp_path / "w.json", w)
    assert arch.validate(load_widths(tmp_path / "w.json")) == w


def test_all_problems_in_one_error(arch):
    w = arch.default_widths()
    del w["stage3.block2.conv2"]
    w["stage1.block0.conv1"] = 0
    w["stage1.block0.conv2"] = 2.5
    w["stage1.blok0.conv1"] = 3
    with pytest.raises(WidthsError) as err:
        arch.validate(w)
    msg = str(err.value)
    assert "unknown key 'stage1.blok0.conv1' (did you mean stage1.block0.conv1" in msg
    assert "missing 1 key(s): stage3.block2.conv2" in msg
    assert "stage1.block0.conv1 = 0 is not a positive integer" in msg
    assert "stage1.block0.conv2 = 2.5 is not a positive integer" in msg


def test_booleans_are_not_widths(arch):
    with pytest.raises(WidthsError, match="True is not a positive integer"):
        arch.validate({**arch.default_widths(), "stage1.block0.conv1": True})


def test_file_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(WidthsError, match="is not valid JSON"):
        load_widths(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(WidthsError, match="must hold a JSON object"):
        load_widths(tmp_path / "list.json")
    with pytest.raises(WidthsError, match="cannot read widths file"):
        load_widths(tmp_path / "missing.json")


def test_record_with_widths_member_is_accepted(tmp_path, arch):
    import json

    (tmp_path / "r.json").write_text(json.dumps({"round": 3, "widths": arch.default_widths()}))
    assert arch.validate(load_widths(tmp_path / "r.json")) == arch.default_widths()
