"""The model zoo beyond CIFAR ResNets: paper MAC counts, width rules, tiny inputs, the CLI.

MACs follow the library convention (convs and linears, stem and classifier included, SE FCs
included; BN, pooling, activations nothing). The paper numbers are checked to within 1% from
the layer list alone (no model built); exact counts against PyTorch's own counter on random
widths are in test_models.py, which runs over every registered family.
"""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import random_widths, small_arch
from netadjust.cli import main
from netadjust.errors import ConfigError
from netadjust.models import Probes, get_arch, list_archs
from netadjust.models.mobilenet import make_divisible

ZOO = ["resnet18", "resnet34", "mobilenet_v2", "mnasnet_a1", "densenet40", "pyramidnet20"]

# The paper's searched ResNet-18 0.8x, per block conv1, conv2 (docs/method.md#reference-numbers).
SEARCHED_R18 = [26, 53, 16, 62, 103, 96, 84, 89, 366, 162, 184, 174, 673, 283, 637, 833]

IMAGENET = {"num_classes": 1000, "input_size": 224}
CIFAR100 = {"num_classes": 100, "input_size": 32}


def test_zoo_is_registered_and_listed(capsys):
    assert set(ZOO) <= set(list_archs())
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert set(ZOO) <= set(listed)
    assert "or a model of your own: --arch torchvision:NAME, timm:NAME or package.module:factory" in out


def resnet18_searched(arch):
    keys = arch.keys()
    assert len(keys) == len(SEARCHED_R18)
    return dict(zip(keys, SEARCHED_R18))


def close(value, reference, rel=0.01):
    return abs(value - reference) <= rel * reference


@pytest.mark.parametrize("name, settings, widths, paper_macs, paper_params", [
    # torchvision's ResNet-18: 1,814,073,344 MACs, 11,689,512 params; paper 1.81 GFLOPs.
    ("resnet18", IMAGENET, None, 1.81e9, 11.7e6),
    ("resnet18", {**IMAGENET, "width_mult": 0.8}, None, 1.17e9, None),
    ("resnet18", {**IMAGENET, "width_mult": 0.8}, resnet18_searched, 1.18e9, 11.8e6),
    ("resnet34", IMAGENET, None, 3.66e9, 21.8e6),
    ("mobilenet_v2", IMAGENET, None, 300e6, 3.5e6),
    ("mnasnet_a1", IMAGENET, None, 312e6, 3.9e6),
    ("densenet40", CIFAR100, None, 282e6, None),
    ("pyramidnet20", CIFAR100, None, 40.4e6, None),  # the stem (0.44M MACs) included
])
def test_macs_and_params_match_the_papers(name, settings, widths, paper_macs, paper_params):
    arch = get_arch(name, **settings)
    w = arch.default_widths() if widths is None else widths(arch)
    assert close(arch.macs(w), paper_macs), arch.macs(w)
    if paper_params is not None:
        assert close(arch.params(w), paper_params), arch.params(w)


def test_exact_counts_of_the_reference_networks():
    # Equal to torchvision's resnet18 / resnet34 / mobilenet_v2 and timm's semnasnet_100.
    for name, params in (("resnet18", 11_689_512), ("resnet34", 21_797_672), ("mobilenet_v2", 3_504_872),
                         ("mnasnet_a1", 3_887_038)):
        arch = get_arch(name, **IMAGENET)
        assert arch.params(arch.default_widths()) == params, name
    r18 = get_arch("resnet18", **IMAGENET)
    assert r18.macs(r18.default_widths()) == 1_814_073_344
    dn = get_arch("densenet40", **CIFAR100)
    w = dn.default_widths()
    assert dn.macs(w) == 282_958_368 and dn.params(w) == 1_100_428  # the paper's "about 1.0M"
    pyr = get_arch("pyramidnet20", **CIFAR100)
    w = pyr.default_widths()
    stem = pyr.layers(w)[0]
    assert stem.name == "stem" and pyr.macs(w) == 40_340_704 and pyr.macs(w) - stem.macs == 39_898_336


def test_resnet18_width_mult_truncates_like_the_paper():
    arch = get_arch("resnet18", width_mult=0.8)
    w = arch.default_widths()
    assert [w[f"layer{s}.block0.conv1"] for s in range(1, 5)] == [51, 102, 204, 409]
    assert arch.layers(w)[0].cout == 51  # the stem scales too
    assert get_arch("resnet18", width_mult=0.75).default_widths()["layer1.block0.conv1"] == 48


def test_resnet_projection_follows_conv2_and_identity_keeps_the_widest_stream():
    arch = get_arch("resnet18", **IMAGENET, width_mult=0.8)
    w = resnet18_searched(arch)
    layers = {layer.name: layer for layer in arch.layers(w)}
    assert "layer1.block0.downsample" not in layers and "layer2.block1.downsample" not in layers
    for s in (2, 3, 4):
        proj = layers[f"layer{s}.block0.downsample"]
        assert proj.kernel == 1 and proj.cout == w[f"layer{s}.block0.conv2"]
        assert proj.cin == layers[f"layer{s}.block0.conv1"].cin
    # Stage 1: stem 51, conv2 widths 53 then 62 -> block1 reads 53, layer2 reads 62.
    assert layers["layer1.block1.conv1"].cin == 53 and layers["layer2.block0.conv1"].cin == 62
    # Stage 4: projection to 283, then conv2 = 833 widens the stream; the classifier reads 833.
    assert layers["layer4.block1.conv1"].cin == 283 and layers["fc"].cin == 833
    assert [k for k in arch.keys()][:4] == ["layer1.block0.conv1", "layer1.block0.conv2",
                                           "layer1.block1.conv1", "layer1.block1.conv2"]


def test_make_divisible_is_the_mobilenet_rule():
    assert [make_divisible(v) for v in (12, 18, 24, 48, 72, 120, 240, 960)] == [16, 24, 24, 48, 72, 120, 240, 960]
    assert make_divisible(4) == 8 and make_divisible(27) == 32 and make_divisible(36.8) == 40
    arch = get_arch("mobilenet_v2", width_mult=0.75)
    w = arch.default_widths()
    assert [w[f"stage{s}.out"] for s in range(1, 8)] == [16, 24, 24, 48, 72, 120, 240]
    assert w["blocks.1.expand"] == 16 * 6  # input width times the expansion ratio
    head = [layer for layer in arch.layers(w) if layer.name == "head"][0]
    assert head.cout == 1280 and arch.layers(w)[0].cout == 24
    wide = get_arch("mobilenet_v2", width_mult=1.4)
    assert [layer.cout for layer in wide.layers(wide.default_widths()) if layer.name == "head"] == [1792]


def test_mobilenet_keys_and_residuals():
    arch = get_arch("mobilenet_v2")
    keys = arch.keys()
    assert keys[:4] == ["stage1.out", "blocks.1.expand", "blocks.2.expand", "stage2.out"]
    assert len(keys) == 7 + 16  # one per stage, one per block with expansion
    model = arch.build()
    blocks = model.segments[1:-1]
    assert [b.residual for b in blocks[:4]] == [False, False, True, False]
    # The stage key is probed once, on the output of the stage's last block.
    assert blocks[2].out_probe.key == "stage2.out" and blocks[1].out_probe is None


def test_mnasnet_squeeze_excite_rule():
    arch = get_arch("mnasnet_a1", **IMAGENET)
    w = arch.default_widths()
    layers = arch.layers(w)
    reduce = {layer.name.split(".")[1]: layer for layer in layers if layer.name.endswith("se.reduce")}
    # SE in stages 3 (blocks 3-5), 5 (10-11) and 6 (12-14), squeeze = a quarter of the block input.
    assert sorted(map(int, reduce)) == [3, 4, 5, 10, 11, 12, 13, 14]
    block_inputs = {3: 24, 4: 40, 5: 40, 10: 80, 11: 112, 12: 112, 13: 160, 14: 160}
    assert {int(i): layer.cout for i, layer in reduce.items()} == {i: c // 4 for i, c in block_inputs.items()}
    assert all(layer.bias and not layer.norm and layer.out_hw == (1, 1) for layer in reduce.values())
    # The squeeze width follows the searched expansion width: 72 // 12 = 6 -> 144 // 12 = 12.
    wider = {**w, "blocks.3.expand": 144}
    assert [layer.cout for layer in arch.layers(wider) if layer.name == "blocks.3.se.reduce"] == [12]
    v2 = get_arch("mobilenet_v2")
    assert not any(".se." in layer.name for layer in v2.layers(v2.default_widths()))


def test_densenet_transitions_keep_their_input_width():
    arch = get_arch("densenet40", num_classes=100)
    w = arch.default_widths()
    assert len(w) == 36 and set(w.values()) == {12} and list(w)[12] == "dense2.layer0.growth"
    w["dense1.layer4.growth"] = 20
    layers = {layer.name: layer for layer in arch.layers(w)}
    assert layers["transition1"].cin == layers["transition1"].cout == 24 + 12 * 12 + 8
    assert layers["transition2"].cout == 24 + 24 * 12 + 8 and layers["fc"].cin == 24 + 36 * 12 + 8
    assert layers["transition2"].out_hw == (16, 16)  # the 1x1 conv runs before the pool
    # The BN before each conv belongs to it: 2 * cin parameters.
    assert layers["dense1.layer0.growth"].params == 9 * 24 * 12 + 2 * 24


def test_pyramidnet_widths_grow_linearly_with_alpha():
    w = get_arch("pyramidnet20").default_widths()
    assert list(w.values())[::2] == [19, 21, 24, 27, 29, 32, 35, 37, 40]  # round(16 + 24 k / 9)
    assert all(w[k] == w[k.replace("conv1", "conv2")] for k in w if k.endswith("conv1"))
    assert set(get_arch("pyramidnet20", alpha=0).default_widths().values()) == {16}
    assert get_arch("pyramidnet20", alpha=48).default_widths()["stage3.block2.conv2"] == 64
    assert get_arch("pyramidnet20", alpha=48).settings()["alpha"] == 48
    for bad in (-1, float("inf"), "wide"):
        with pytest.raises(ConfigError, match="alpha must be a"):
            get_arch("pyramidnet20", alpha=bad)
    with pytest.raises(ConfigError, match="does not take option"):
        get_arch("resnet18", residual="max")


def _torch_flops(model, x):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(x)
    return out, counter.get_total_flops()


@pytest.mark.parametrize("name", ZOO)
def test_any_input_size_works(name, rng):
    # Strides and poolings must leave at least one pixel, and the MAC count must still be exact.
    for size in (1, 2, 5):
        arch = small_arch(name, input_size=size)
        w = random_widths(arch, rng, 1, 8)
        model = arch.build(w).eval()
        out, flops = _torch_flops(model, torch.randn(1, arch.in_channels, size, size))
        assert out.shape == (1, arch.num_classes) and torch.isfinite(out).all()
        assert flops == 2 * arch.macs(w)


@pytest.mark.parametrize("name", ["resnet20", "plain20", *ZOO])
def test_every_probe_sees_its_keys_width(name, rng):
    arch = small_arch(name)
    w = random_widths(arch, rng, 1, 9)
    model = arch.build(w).eval()
    seen = {}

    def record(probe, inputs, output):
        seen.setdefault(probe.key, inputs[0].shape[1])  # returns None: the output is kept

    for probe in Probes(model).by_key.values():
        probe.register_forward_hook(record)
    model(torch.randn(1, arch.in_channels, arch.input_size, arch.input_size))
    assert seen == w


def test_cli_flops_resnet18_imagenet(capsys):
    assert main(["flops", "--arch", "resnet18", "--input-size", "224", "--num-classes", "1000"]) == 0
    out = capsys.readouterr().out
    assert "layer4.block1.conv2" in out and "layer2.block0.downsample" in out
    assert out.strip().splitlines()[-1].startswith("total: 1,814,073,344 MACs")
    assert main(["flops", "--arch", "resnet18", "--input-size", "224", "--num-classes", "1000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["macs"] == 1_814_073_344 and report["params"] == 11_689_512
    assert sum(row["searchable"] for row in report["layers"]) == 16
