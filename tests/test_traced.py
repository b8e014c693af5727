"""Any model: channel groups traced from a user's module, exact MACs, resized copies, search.

The small models of ``user_models.py`` carry each structural pattern (bottleneck residual with
projection, grouped conv, inverted residual with depthwise conv and squeeze-excite, dense
concatenation, channel split and shuffle, flattened classifier input, a literal width) and run
everywhere; torchvision and timm models run where those packages import.
"""

import json
import random
import warnings

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import user_models
from netadjust.budget import fit_budget
from netadjust.cli import main
from netadjust.config import SearchConfig
from netadjust.errors import ConfigError, WidthsError
from netadjust.models import Probes, get_arch
from netadjust.search import search


def user_arch(name, **kw):
    kw = {"num_classes": 7, "in_channels": 3, "input_size": 16, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_arch(f"user_models:{name}", **kw)


def random_valid_widths(arch, rng, high=24):
    steps = arch.width_steps()
    return {k: steps[k] * rng.randint(1, max(1, high // steps[k])) for k in arch.keys()}


def counted_macs(model, x):
    with FlopCounterMode(display=False) as counter:
        out = model(x)
    return counter.get_total_flops() // 2, out


def check_exact(arch, widths, size):
    """MACs and parameters of ``widths`` equal what FlopCounterMode and the built model give."""
    model = arch.build(widths).eval()
    macs, out = counted_macs(model, torch.randn(1, arch.in_channels, size, size))
    assert macs == arch.macs(widths)
    assert sum(p.numel() for p in model.parameters()) == arch.params(widths)
    assert out.shape == (1, arch.num_classes)


@pytest.mark.parametrize("name", user_models.PATTERNS)
def test_macs_and_params_are_exact_at_default_and_random_widths(name):
    arch = user_arch(name)
    rng = random.Random(name)
    for widths in [arch.default_widths()] + [random_valid_widths(arch, rng) for _ in range(3)]:
        check_exact(arch, widths, 16)


def widened(arch, key, by=None):
    """The built model with ``key`` widened by its step (or ``by``), and the default one."""
    w = arch.default_widths()
    w[key] += by or arch.width_steps()[key]
    return arch.build(arch.default_widths()).segments[0].net, arch.build(w).segments[0].net


def test_bottleneck_groups_the_residual_stream_with_its_projection():
    arch = user_arch("bottleneck_resnet")
    assert arch.keys() == ["stem.0", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3", "layer1.1.conv1",
                           "layer1.1.conv2", "layer2.0.conv1", "layer2.0.conv2", "layer2.0.conv3", "layer2.1.conv1",
                           "layer2.1.conv2"]
    before, after = widened(arch, "layer1.0.conv3", 3)
    grown = {name for name, m in after.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))
             and str(m) != str(before.get_submodule(name))}
    # The stream of stage 1: both blocks' last convs and the projection write it; it is read by
    # block 1.1's first conv, stage 2's first conv and its projection.
    assert grown == {"layer1.0.conv3", "layer1.0.bn3", "layer1.0.downsample.0", "layer1.0.downsample.1",
                     "layer1.1.conv1", "layer1.1.conv3", "layer1.1.bn3", "layer2.0.conv1", "layer2.0.downsample.0"}
    assert after.layer1[1].conv3.out_channels == after.layer1[0].downsample[0].out_channels == 35


def test_grouped_conv_widths_stay_multiples_of_the_groups():
    arch = user_arch("resnext")
    steps = arch.width_steps()
    assert steps["layer1.0.conv1"] == steps["layer1.0.conv2"] == 4 and steps["layer1.0.conv3"] == 1
    w = arch.default_widths()
    w["layer1.0.conv2"] = 10
    with pytest.raises(WidthsError, match=r"layer1.0.conv2 = 10 \(a multiple of 4\)"):
        arch.build(w)
    fitted = fit_budget(arch, arch.default_widths(), 0.6 * arch.macs(arch.default_widths()), tolerance=0.02)
    assert all(width % steps[k] == 0 for k, width in fitted.items())
    assert abs(arch.macs(fitted) / (0.6 * arch.macs(arch.default_widths())) - 1) <= 0.02
    check_exact(arch, fitted, 16)


def test_flops_lists_keys_with_their_steps(capsys):
    assert main(["flops", "--arch", "user_models:resnext", "--input-size", "16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    arch = user_arch("resnext", num_classes=10)
    assert report["macs"] == arch.macs(arch.default_widths()) and report["params"] == arch.params(arch.default_widths())
    assert {row["key"]: row["step"] for row in report["keys"]} == arch.width_steps()
    assert main(["flops", "--arch", "user_models:resnext", "--input-size", "16"]) == 0
    assert "widths that move in steps (grouped convs keep their groups, channel splits stay even): layer1.0.conv1 x4" \
        in capsys.readouterr().out


def test_depthwise_follows_its_expansion_and_excite_scales_its_input():
    arch = user_arch("mobilenet")
    assert "features.1.block.1.0" not in arch.keys()  # the depthwise conv has no width of its own
    _, after = widened(arch, "features.2.block.0.0", 5)
    block = after.features[2].block
    assert block[1][0].in_channels == block[1][0].out_channels == block[1][0].groups == 53
    assert block[2].fc1.in_channels == block[2].fc2.out_channels == block[3].in_channels == 53
    assert "features.2.block.2.fc1" in arch.keys()  # the squeeze width is searchable
    # The residual blocks' projections write the stream of the block they add to.
    _, after = widened(arch, "features.0.0", 2)
    assert after.features[1].block[2].out_channels == 18


def test_dense_concatenation_adds_each_growth_to_every_later_reader():
    arch = user_arch("densenet")
    _, after = widened(arch, "block1.0.conv2", 4)
    assert [layer.conv1.in_channels for layer in after.block1] == [12, 22, 28]
    assert after.transition[2].in_channels == after.transition[0].num_features == 34
    assert [layer.norm1.num_features for layer in after.block2] == [16, 22]


def test_channel_split_and_shuffle():
    arch = user_arch("shufflenet")
    # Shuffling two concatenated halves makes them one width: the stage's branches share a key
    # (the stream is twice it), while each branch's inner width is its own.
    assert arch.keys() == ["conv1.0", "stage2.0.branch1.2", "stage2.0.branch2.0", "stage2.1.branch2.0", "conv5.0"]
    assert set(arch.width_steps().values()) == {1}
    _, after = widened(arch, "stage2.0.branch1.2", 3)
    unit0, unit1 = after.stage2
    assert unit0.branch1[2].out_channels == unit0.branch2[5].out_channels == 15
    assert unit1.branch2[0].in_channels == unit1.branch2[5].out_channels == 15
    assert after.conv5[0].in_channels == 30
    check_exact(arch, {**arch.default_widths(), "stage2.0.branch1.2": 7}, 16)


def test_flattened_map_scales_the_classifier_input():
    arch = user_arch("flatten_head")
    _, after = widened(arch, "features.2.0", 4)
    assert after.classifier[0].in_features == 20 * 4


def test_literal_channel_count_fixes_those_widths_with_a_warning():
    with pytest.warns(UserWarning, match=r"`reshape` .* reshapes the channel dimension; the widths of its inputs "
                                         r"are fixed"):
        arch = get_arch("user_models:literal_width", num_classes=7, input_size=16)
    assert arch.keys() == ["conv2.0"]


def test_grey_data_is_repeated_for_an_rgb_stem():
    arch = user_arch("rgb_only", in_channels=1)
    assert arch.repeat_input == 3
    model = arch.build().eval()
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(model(x), model.segments[0].net(x.repeat(1, 3, 1, 1)))
    with pytest.raises(ConfigError, match="takes 3 input channels and the data has 2"):
        user_arch("rgb_only", in_channels=2)


@pytest.mark.parametrize("spec, message", [
    ("user_models:functional_conv", r"cannot count the MACs of `conv2d`"),
    ("user_models:branchy", r"torch.fx cannot trace Branchy: TraceError"),
    ("user_models:nothing_here", r"module user_models has no callable 'nothing_here'"),
    ("no_such_package.models:f", r"cannot import no_such_package.models: ModuleNotFoundError"),
    (":f", r"expected torchvision:NAME, timm:NAME or package.module:factory"),
])
def test_models_it_cannot_handle_are_refused_by_name(spec, message):
    with pytest.raises(ConfigError, match=message):
        get_arch(spec)


def test_family_options_are_refused_for_a_user_model():
    with pytest.raises(ConfigError, match="does not take option.s. residual"):
        get_arch("user_models:mobilenet", residual="max")


def test_warm_start_is_refused_for_a_user_model(tmp_path):
    cfg = SearchConfig.from_dict({"arch": "user_models:bottleneck_resnet", "dataset": "digits", "warm_start": True,
                                  "train_subset": 128, "rounds": 1, "k": 2, "epochs": 1, "out": str(tmp_path / "r")})
    with pytest.raises(ConfigError, match="--warm-start is not available for user_models:bottleneck_resnet"):
        search(cfg, progress=False)


def test_one_mask_per_pass_drops_a_channel_from_every_producer_of_its_group():
    arch = user_arch("bottleneck_resnet")
    model = arch.build().eval()
    probes = Probes(model)
    assert probes.keys() == arch.keys()
    net, seen = model.segments[0].net, {}
    sites = ["layer1.0.bn3", "layer1.0.downsample.1", "layer1.1.bn3"]
    for site in sites:  # registered after the probe's hook: sees what the probe let through
        net.get_submodule(site).register_forward_hook(lambda m, i, out, site=site: seen.__setitem__(site, out))
    with probes.active("layer1.0.conv3", 0.5):
        model(torch.randn(4, 3, 16, 16))
    dropped = {site: (out == 0).flatten(2).all(2) for site, out in seen.items()}  # (N, C): channel zeroed
    assert dropped[sites[0]].any() and not dropped[sites[0]].all()
    for site in sites[1:]:
        assert torch.equal(dropped[site], dropped[sites[0]])


def test_search_of_a_user_model_changes_widths_both_ways_within_budget(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(user_models.__file__.rsplit("/", 1)[0])  # `package.module:factory` imports from here
    out = tmp_path / "run"
    code = main(["search", "--arch", "user_models:bottleneck_resnet", "--dataset", "digits", "--train-subset", "256",
                 "--rounds", "2", "--k", "2", "--epochs", "1", "--repeats", "2", "--final-epochs", "1",
                 "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    original = json.loads((out / "records.jsonl").read_text().splitlines()[0])["widths"]
    searched = json.loads((out / "widths_final.json").read_text())
    assert any(searched[k] > original[k] for k in original) and any(searched[k] < original[k] for k in original)
    arch = get_arch("user_models:bottleneck_resnet", num_classes=10, in_channels=1, input_size=8)
    assert summary["macs_final"] == arch.macs(searched) and summary["within_tolerance"]
    assert abs(arch.macs(searched) - summary["macs_target"]) / arch.macs(searched) <= 0.01


# -- torchvision and timm, where they import ----------------------------------------------------
# torchvision's published GFLOPS (its model documentation) at 224 px, 1000 classes.
TORCHVISION_GMACS = {"resnet18": 1.81, "resnet50": 4.09, "mobilenet_v2": 0.30, "mobilenet_v3_small": 0.06,
                     "efficientnet_b0": 0.39, "regnet_x_400mf": 0.41, "densenet121": 2.83,
                     "shufflenet_v2_x1_0": 0.14, "resnext50_32x4d": 4.23}
TIMM_MODELS = ("resnet18", "mobilenetv3_small_100", "efficientnet_b0", "regnetx_002")


def _imports(name):
    try:
        __import__(name)
        return True
    except Exception:  # torchvision built for another torch fails with RuntimeError, not ImportError
        return False


needs_torchvision = pytest.mark.skipif(not _imports("torchvision"), reason="torchvision does not import here")
needs_timm = pytest.mark.skipif(not _imports("timm"), reason="timm does not import here")


@pytest.mark.slow
@pytest.mark.parametrize("spec", [pytest.param(f"torchvision:{name}", marks=needs_torchvision) for name in TORCHVISION_GMACS]
                         + [pytest.param(f"timm:{name}", marks=needs_timm) for name in TIMM_MODELS])
def test_library_models_count_exactly(spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arch = get_arch(spec, num_classes=10, input_size=64)
        name = spec.partition(":")[2]
        if name in TORCHVISION_GMACS and spec.startswith("torchvision"):
            full = get_arch(spec, num_classes=1000, input_size=224)
            assert round(full.macs(full.default_widths()) / 1e9, 2) == TORCHVISION_GMACS[name]
    check_exact(arch, arch.default_widths(), 64)
    check_exact(arch, random_valid_widths(arch, random.Random(spec), high=96), 64)


@needs_torchvision
@pytest.mark.slow
def test_search_of_torchvision_resnet18(tmp_path):
    cfg = SearchConfig.from_dict({"arch": "torchvision:resnet18", "dataset": "digits", "train_subset": 256,
                                  "rounds": 2, "k": 2, "epochs": 1, "repeats": 2, "final_epochs": 1,
                                  "out": str(tmp_path / "r")})
    result = search(cfg, progress=False)
    original, searched = result.widths_original, result.widths_final
    assert any(searched[k] > original[k] for k in original) and any(searched[k] < original[k] for k in original)
