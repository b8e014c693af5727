"""FUR estimation: drop rates, planted answers, and the fast mode against the reference scheme."""

import pytest
import torch
from torch import nn

from netadjust.config import TrainConfig
from netadjust.data import synthetic
from netadjust.fur import MAX_DROP_RATE, drop_rates, estimate_fur
from netadjust.models import ChannelDrop, Layer, Probes, SegmentedNet, get_arch
from netadjust.models.base import Arch
from netadjust.train import build_and_train


class ToyArch(Arch):
    """Two parallel 3x3 convs on the input; the classifier reads only ``used``."""

    def __init__(self, **kw):
        super().__init__(name="toy", num_classes=4, in_channels=1, input_size=8, **kw)

    def default_widths(self):
        return {"used": 8, "ignored": 8}

    def layers(self, w):
        hw = (self.input_size, self.input_size)
        return [Layer("used", 1, w["used"], 3, hw), Layer("ignored", 1, w["ignored"], 3, hw),
                Layer("fc", w["used"], 4, bias=True, norm=False)]

    def _build(self, w):
        class Body(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Sequential(nn.Conv2d(1, w["used"], 3, padding=1, bias=False), nn.BatchNorm2d(w["used"]),
                                       ChannelDrop("used"), nn.ReLU())
                self.b = nn.Sequential(nn.Conv2d(1, w["ignored"], 3, padding=1, bias=False),
                                       nn.BatchNorm2d(w["ignored"]), ChannelDrop("ignored"))

            def forward(self, x):
                self.b(x)  # computed, never read
                return self.a(x)

        return SegmentedNet([Body(), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w["used"], 4))])


def test_drop_rates_remove_equal_expected_macs():
    arch = get_arch("resnet20", num_classes=10)
    w = arch.default_widths()
    w["stage2.block1.conv1"] = 48
    rates, clipped = drop_rates(arch, w, 0.05)
    d = arch.macs_derivative(w)
    removed = {k: rates[k] * w[k] * d[k] for k in w}
    mean_cost = sum(w[k] * d[k] for k in w) / len(w)
    assert not clipped
    for value in removed.values():
        assert value == pytest.approx(0.05 * mean_cost)


def test_drop_rates_are_clipped_below_one(caplog):
    arch = get_arch("resnet20", num_classes=10)
    w = arch.default_widths()
    w["stage1.block0.conv1"] = 1  # costs ~1/16 of its neighbours: its rate would exceed 1
    rates, clipped = drop_rates(arch, w, 0.3)
    assert clipped == ["stage1.block0.conv1"] and rates["stage1.block0.conv1"] == MAX_DROP_RATE
    assert all(p < 1 for p in rates.values())
    assert "clipped" in caplog.text and "stage1.block0.conv1" in caplog.text


def test_ignored_layer_has_zero_fur():
    """A planted answer. "ignored" is exactly zero by construction. "used" was measured at FUR
    0.39 (fast) and 0.43 (reference) with standard errors 0.033 and 0.048 on 1 and 2 threads
    alike: 5.8 and 4.5 times the bound below, so the trained weights' variation across
    machines leaves a wide margin."""
    torch.manual_seed(0)
    arch = ToyArch()
    data = synthetic(num_classes=4, n_train=256, n_heldout=96)
    trained = build_and_train(arch, arch.default_widths(), data, TrainConfig(epochs=10, batch_size=32, lr=0.1),
                              progress=False)
    for mode in ("fast", "reference"):
        result = estimate_fur(trained.model, data, arch, arch.default_widths(), repeats=3, mode=mode,
                              base_drop_rate=0.5, batch_size=32)
        # Exactly zero in reference mode; the fast mode's stacked batch differs in the last bits.
        assert abs(result.fur["ignored"]) < 1e-6 and result.stderr["ignored"] < 1e-6
        assert result.fur["used"] > 100 * abs(result.fur["ignored"]) and result.fur["used"] > 2 * result.stderr["used"]


@pytest.fixture(scope="module")
def starved():
    """A Plain-20 with one 2-channel layer among 8-channel neighbours, trained on synthetic data."""
    arch = get_arch("plain20", num_classes=4, in_channels=1, input_size=8, width_mult=0.5)
    w = arch.default_widths()
    w["stage2.block1.conv1"] = 2
    data = synthetic(num_classes=4, n_train=512, n_heldout=128, seed=1)
    trained = build_and_train(arch, w, data, TrainConfig(epochs=6, batch_size=64, lr=0.05, drop_rate=0.0),
                              seed=1, progress=False)
    return arch, w, data, trained.model


def test_starved_layer_gets_the_highest_fur_and_is_widened(starved):
    """A planted answer: the 2-channel layer's FUR was measured at 0.31 (1 thread) and 0.24
    (2 threads: the trained weights differ) against at most 0.062 for any other layer, with a
    standard error of 0.023: the ranking holds by ~8 standard errors on either machine."""
    from netadjust.adjust import AdjustRule, adjust_widths

    arch, w, data, model = starved
    result = estimate_fur(model, data, arch, w, repeats=5, batch_size=64)
    assert max(result.fur, key=result.fur.get) == "stage2.block1.conv1"
    new, moves = adjust_widths(w, arch.default_widths(), result.fur, AdjustRule(k=3), 0)
    assert moves["stage2.block1.conv1"] > 0 and new["stage2.block1.conv1"] > 2


def enumerating_masks(monkeypatch, repeats, n_batches, batch_size):
    """Replace random masks by all 2**C keep/drop patterns of a probe's C channels, one per
    repeat, for every sample. With rate 0.5 every pattern is equally likely, so the mean over
    the repeats is the exact expectation over the mask: estimates become exact, not sampled.

    Fast mode draws the repeats stacked (repeat-major, more rows than a batch); the reference
    mode draws one batch of one repeat per call, n_batches calls per repeat.
    """
    calls = {}

    def sample_mask(self, x):
        n, c = x.shape[:2]
        assert 2**c == repeats and self.p == 0.5
        if n > batch_size:
            pattern = torch.arange(n) // (n // repeats)
        else:
            pattern = torch.full((n,), calls.get(self.key, 0) // n_batches)
            calls[self.key] = calls.get(self.key, 0) + 1
        bits = (pattern[:, None] >> torch.arange(c)) & 1
        return (2.0 * bits).to(x.dtype).view(n, c, *(1,) * (x.dim() - 2))

    monkeypatch.setattr(ChannelDrop, "sample_mask", sample_mask)
    monkeypatch.setattr("netadjust.fur.drop_rates", lambda arch, widths, base, **_: ({k: 0.5 for k in widths}, []))


@pytest.fixture
def exact(monkeypatch):
    """A ResNet-20 with 3 channels in every searchable layer, on a held-out split of 25 images
    in batches of 10, 10 and 5, with enumerated masks (8 repeats = every pattern)."""
    torch.manual_seed(0)
    arch = get_arch("resnet20", num_classes=4, in_channels=1, input_size=8)
    w = {k: 3 for k in arch.keys()}
    data = synthetic(num_classes=4, n_train=128, n_heldout=25, seed=2)
    model = build_and_train(arch, w, data, TrainConfig(epochs=3, batch_size=32, lr=0.05), progress=False).model
    enumerating_masks(monkeypatch, repeats=8, n_batches=3, batch_size=10)
    return arch, w, data, model


def fur_of(exact, **kw):
    arch, w, data, model = exact
    return estimate_fur(model, data, arch, w, repeats=8, batch_size=10, **kw)


def test_fast_mode_equals_reference_exactly(exact):
    """Same masks for the same samples: the two modes compute the same numbers (the fast mode
    runs the repeats as one stacked batch, so equal up to float rounding)."""
    ref = fur_of(exact, mode="reference")
    fast = fur_of(exact, mode="fast", control_variate=False)
    assert fast.base_loss == pytest.approx(ref.base_loss, rel=1e-6)
    for key in ref.fur:
        assert fast.fur[key] == pytest.approx(ref.fur[key], rel=1e-4, abs=1e-6), key
        assert fast.stderr[key] == pytest.approx(ref.stderr[key], rel=1e-3, abs=1e-6), key


def test_control_variate_keeps_the_mean_exactly_and_reduces_noise(exact):
    """Over every mask pattern the first-order term sum_c (m_c / (1 - p) - 1) * s_c averages to
    exactly zero, so the estimate with the control variate equals the one without (to float
    rounding), while its spread over the patterns is smaller. Both are exact expectations over
    the enumerated masks, not samples: nothing here is left to chance. (Measured: the summed
    standard error shrinks to 0.35 of its value, and for 17 of 18 layers, on 1 and 2 threads.)"""
    plain = fur_of(exact, mode="fast", control_variate=False)
    cv = fur_of(exact, mode="fast", control_variate=True)
    for key in plain.fur:
        assert cv.fur[key] == pytest.approx(plain.fur[key], rel=1e-4, abs=1e-6), key
    assert sum(cv.stderr.values()) < 0.8 * sum(plain.stderr.values())
    assert sum(cv.stderr[k] < plain.stderr[k] for k in plain.fur) > len(plain.fur) / 2


def test_channel_importance_is_the_first_order_loss_change_of_removing_a_channel(starved):
    """Per channel, the mean over held-out samples of (activation * gradient, summed over
    space)^2: checked against autograd on the held-out samples one at a time."""
    arch, w, data, model = starved
    result = estimate_fur(model, data, arch, w, repeats=2, batch_size=64)
    assert set(result.channel_importance) == set(w)
    assert all(len(result.channel_importance[k]) == w[k] for k in w)
    key = "stage2.block1.conv1"
    probe = Probes(model).by_key[key]
    seen = {}
    handle = probe.register_forward_hook(lambda m, inputs, out: seen.setdefault("a", out))
    x, y = next(iter(data.batches("heldout", batch_size=1000, train=False)))
    expected = torch.zeros(w[key], dtype=torch.float64)
    model.eval()
    for i in range(len(y)):
        seen.clear()
        loss = torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        (grad,) = torch.autograd.grad(loss, seen["a"])
        expected += (seen["a"] * grad).sum((2, 3))[0].double().square()
    handle.remove()
    got = torch.tensor(result.channel_importance[key], dtype=torch.float64)
    assert torch.allclose(got, expected / len(y), rtol=1e-4, atol=1e-12)
    assert estimate_fur(model, data, arch, w, repeats=2, mode="reference").channel_importance is None
