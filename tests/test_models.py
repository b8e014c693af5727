"""Model families: exact FLOPs against PyTorch's own counter, params, builders, probes."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import random_widths, small_arch
from netadjust.errors import ConfigError
from netadjust.models import ChannelDrop, Probes, get_arch, list_archs

ARCHS = list(list_archs())


def torch_macs(model, arch) -> int:
    model.eval()
    x = torch.randn(1, arch.in_channels, arch.input_size, arch.input_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    total = counter.get_total_flops()
    assert total % 2 == 0
    return total // 2


def test_resnet20_cifar100_matches_paper():
    arch = get_arch("resnet20", num_classes=100, in_channels=3, input_size=32)
    w = arch.default_widths()
    assert arch.macs(w) == 40_556_800
    stem = arch.layers(w)[0]
    assert stem.name == "stem" and arch.macs(w) - stem.macs == 40_114_432


@pytest.mark.parametrize("name, mult, paper_millions", [
    ("resnet32", 1, 68.4), ("resnet56", 1, 125), ("resnet110", 1, 252), ("resnet20", 2, 160), ("resnet20", 4, 642),
])
def test_resnet_family_matches_paper_column(name, mult, paper_millions):
    arch = get_arch(name, num_classes=100, width_mult=mult)
    w = arch.default_widths()
    without_stem = arch.macs(w) - arch.layers(w)[0].macs
    # The paper rounds to three significant figures.
    assert abs(without_stem / 1e6 - paper_millions) <= 0.5 * 10 ** (len(str(int(paper_millions))) - 3) + 1e-9


def test_plain20_costs_as_much_as_resnet20():
    for mult in (1, 2):
        r = get_arch("resnet20", num_classes=100, width_mult=mult)
        p = get_arch("plain20", num_classes=100, width_mult=mult)
        assert r.macs(r.default_widths()) == p.macs(p.default_widths())


@pytest.mark.parametrize("name", ARCHS)
def test_macs_and_params_equal_torch_on_random_widths(name, rng):
    for i in range(20):
        arch = small_arch(name, input_size=rng.choice([5, 8, 13, 32]) if i % 2 else 8)
        w = random_widths(arch, rng)
        model = arch.build(w)
        assert arch.macs(w) == torch_macs(model, arch), w
        assert arch.params(w) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("residual", ["max", "local"])
def test_residual_policies_match_torch(residual, rng):
    for _ in range(20):
        arch = small_arch("resnet20", residual=residual)
        w = random_widths(arch, rng)
        model = arch.build(w)
        assert arch.macs(w) == torch_macs(model, arch)
        assert arch.params(w) == sum(p.numel() for p in model.parameters())


def test_residual_policies_differ_when_a_block_narrows():
    w = get_arch("resnet20").default_widths()
    w["stage1.block0.conv2"] = 4  # narrower than the 16-channel stream
    wide, local = get_arch("resnet20", residual="max"), get_arch("resnet20", residual="local")
    # "max" keeps 16 channels for the next conv to read; "local" passes on only 4.
    assert wide.layers(w)[3].cin == 16 and local.layers(w)[3].cin == 4
    assert wide.macs(w) > local.macs(w)


# Families whose MACs are not bilinear in the widths: the "max" residual stream (CIFAR and
# ImageNet ResNets, PyramidNet), DenseNet's transitions (width = their input width, quadratic in
# the growths) and MnasNet's squeeze-excite (squeeze width follows the expansion width).
NOT_BILINEAR = ("resnet", "pyramidnet", "densenet", "mnasnet")


@pytest.mark.parametrize("name", ARCHS)
def test_derivative_is_exact_and_macs_increase_with_every_key(name, rng):
    arch = small_arch(name)
    w = random_widths(arch, rng, 2, 20)
    deriv = arch.macs_derivative(w)
    base = arch.macs(w)
    for key in w:
        assert deriv[key] > 0
        two_more = arch.macs({**w, key: w[key] + 2}) - base
        if name.startswith(NOT_BILINEAR):
            assert two_more > deriv[key]  # still strictly increasing
        else:
            # Bilinear: two more channels cost twice one more.
            assert two_more == 2 * deriv[key]


def test_derivative_is_layer_plus_readers_for_uniform_resnet():
    arch = get_arch("resnet20", num_classes=100)
    w = arch.default_widths()
    d = arch.macs_derivative(w)
    layers = {layer.name: layer for layer in arch.layers(w)}
    # conv1's channels are read by conv2 of the same block only.
    assert w["stage2.block1.conv1"] * d["stage2.block1.conv1"] == layers["stage2.block1.conv1"].macs + layers["stage2.block1.conv2"].macs


@pytest.mark.parametrize("name", ARCHS)
def test_forward_backward_every_param_gets_a_gradient(name, rng):
    arch = small_arch(name)
    model = arch.build(random_widths(arch, rng, 1, 6))
    out = model(torch.randn(3, arch.in_channels, arch.input_size, arch.input_size))
    assert out.shape == (3, arch.num_classes)
    out.logsumexp(1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ARCHS)
def test_probes_cover_every_key_in_forward_order(name):
    arch = small_arch(name)
    model = arch.build()
    assert Probes(model).keys() == arch.keys()
    segs = model.probe_segments()
    assert list(segs) == arch.keys() and list(segs.values()) == sorted(segs.values())


def test_probe_drops_whole_channels_in_eval_mode():
    torch.manual_seed(0)
    drop = ChannelDrop("k").eval()
    x = torch.ones(4096, 64, 2, 2)
    assert drop(x) is x
    drop.p = 0.25
    y = drop(x)
    per_channel = y.flatten(2)
    assert torch.all(per_channel.amax(2) == per_channel.amin(2))  # whole channels
    assert set(y.unique().tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
    # 262,144 Bernoulli(0.25) draws: the dropped share has standard deviation 0.00085, so a
    # 0.005 bound is 5.9 of them: it fails by chance with probability below 1e-8, whatever
    # stream of random numbers the machine's kernels draw.
    assert abs((per_channel[..., 0] == 0).float().mean().item() - 0.25) < 0.005


@pytest.mark.parametrize("name", ARCHS)
def test_rebuild_from_saved_widths_is_identical(name, rng, tmp_path):
    from netadjust.widths import load_widths, save_widths

    arch = small_arch(name)
    w = random_widths(arch, rng, 1, 9)
    save_widths(tmp_path / "w.json", w)
    torch.manual_seed(3)
    a = arch.build(w)
    torch.manual_seed(3)
    b = small_arch(name).build(load_widths(tmp_path / "w.json"))
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_unknown_arch_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown architecture 'resnet21' \(did you mean .*resnet20"):
        get_arch("resnet21")


def test_bad_settings_are_collected():
    with pytest.raises(ConfigError, match=r"num_classes must be a positive integer.*width_mult must be a finite number > 0"):
        get_arch("resnet20", num_classes=0, width_mult=-1)
    for bad in (float("inf"), float("nan"), True):
        with pytest.raises(ConfigError, match="width_mult must be a finite number > 0"):
            get_arch("resnet20", width_mult=bad)
    with pytest.raises(ConfigError, match="residual must be one of max, local, got 'min'"):
        get_arch("resnet20", residual="min")
    with pytest.raises(ConfigError, match="does not take option"):
        get_arch("plain20", residual="max")
