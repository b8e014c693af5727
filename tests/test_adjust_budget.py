"""The pure core: adjustment rule and budget restore, on exact numbers."""

import pytest

from conftest import random_widths
from netadjust.adjust import AdjustRule, adjust_widths
from netadjust.budget import fit_budget, round_to, scale_widths
from netadjust.errors import ConfigError
from netadjust.models import get_arch


def test_k_decays_with_python_rounding():
    rule = AdjustRule(k=6, k_decay=0.5)
    # round(5.5) = 6 and round(4.5) = 4: halves go to even, as in the official code.
    assert [rule.layers_to_move(t) for t in range(14)] == [6, 6, 5, 4, 4, 4, 3, 2, 2, 2, 1, 0, 0, 0]


def test_rate_decays_by_rank_and_stops_at_zero():
    rule = AdjustRule(arch_lr=0.15, arch_lr_decay=0.05)
    assert [round(rule.rate(r), 10) for r in range(5)] == [0.15, 0.1, 0.05, 0.0, 0.0]


def test_adjust_moves_top_and_bottom_by_initial_width():
    keys = [f"l{i}" for i in range(8)]
    initial = {k: 40 for k in keys}
    widths = {k: 40 + i for i, k in enumerate(keys)}  # current widths differ from initial
    fur = {k: float(i) for i, k in enumerate(keys)}  # l7 highest, l0 lowest
    rule = AdjustRule(k=3, k_decay=0.5, arch_lr=0.15, arch_lr_decay=0.01, min_width=4)
    new, moves = adjust_widths(widths, initial, fur, rule, round_index=1)  # k_1 = round(2.5) = 2
    # rank 0 moves round(0.15 * 40) = 6, rank 1 round(0.14 * 40) = round(5.6) = 6
    assert moves == {"l7": 6, "l6": 6, "l0": -6, "l1": -6}
    assert new["l7"] == 53 and new["l0"] == 34 and new["l3"] == 43


def test_steps_are_relative_to_initial_width_not_current():
    initial = {"a": 100, "b": 10, "c": 50, "d": 50}
    widths = {"a": 20, "b": 80, "c": 50, "d": 50}
    fur = {"a": 1.0, "b": 0.0, "c": 0.5, "d": 0.5}
    new, _ = adjust_widths(widths, initial, fur, AdjustRule(k=1, arch_lr=0.2), 0)
    assert new["a"] == 40 and new["b"] == 78


def test_narrowing_stops_at_min_width_and_never_widens():
    initial = {"a": 64, "b": 64, "c": 3, "d": 64}
    widths = {"a": 64, "b": 5, "c": 3, "d": 64}
    fur = {"a": 9.0, "b": 0.0, "c": 0.1, "d": 5.0}
    new, moves = adjust_widths(widths, initial, fur, AdjustRule(k=2, arch_lr=0.5, min_width=4), 0)
    assert new["b"] == 4  # 5 - 32 stops at the minimum
    assert new["c"] == 3  # already below the minimum: narrowing leaves it alone
    assert "c" not in moves and moves["b"] == -1


def test_k_above_half_the_keys_is_rejected():
    with pytest.raises(ConfigError, match="--k 10 is larger than half the number of searchable layers \\(18\\)"):
        AdjustRule(k=10).check(18)


def test_round_to_multiples():
    assert [round_to(x, 8) for x in (0.2, 3.9, 4.1, 12.0, 13.0, 100.0)] == [8, 8, 8, 16, 16, 96]
    assert scale_widths({"a": 10, "b": 3}, 0.5, min_width=4) == {"a": 5, "b": 4}


@pytest.mark.parametrize("name", ["resnet20", "resnet56", "plain20", "resnet110"])
@pytest.mark.parametrize("fraction", [0.3, 0.64, 1.0, 1.7])
def test_fit_budget_lands_within_tolerance(name, fraction, rng):
    arch = get_arch(name, num_classes=100)
    target = fraction * arch.macs(arch.default_widths())
    for _ in range(3):
        w = random_widths(arch, rng, 4, 80)
        fitted = fit_budget(arch, w, target, tolerance=0.01, min_width=4)
        got = arch.macs(fitted)
        assert abs(got - target) / got <= 0.01
        assert min(fitted.values()) >= 4


def test_fit_budget_is_uniform():
    arch = get_arch("resnet20", num_classes=10)
    w = arch.default_widths()
    fitted = fit_budget(arch, w, 0.25 * arch.macs(w), tolerance=0.001)
    ratios = {fitted[k] / w[k] for k in w}
    assert max(ratios) - min(ratios) < 0.07  # one factor, up to integer rounding
    # MACs ~ width^2, so a quarter needs about half; a bit less, as the stem's cost is fixed.
    assert 0.4 < min(ratios) and max(ratios) <= 0.5


def test_fit_budget_rounds_to_multiples():
    arch = get_arch("resnet56", num_classes=100)
    w = arch.default_widths()
    fitted = fit_budget(arch, w, 0.64 * arch.macs(w), tolerance=0.02, multiple_of=8)
    assert all(v % 8 == 0 for v in fitted.values())
    assert abs(arch.macs(fitted) - 0.64 * arch.macs(w)) / arch.macs(fitted) <= 0.02


def test_unreachable_budgets_are_clear_errors():
    arch = get_arch("resnet20", num_classes=10)
    w = arch.default_widths()
    with pytest.raises(ConfigError, match="unreachable.*minimum width \\(4\\).*raise --budget"):
        fit_budget(arch, w, 0.01 * arch.macs(w), min_width=4)
    with pytest.raises(ConfigError, match="within 0.0%.*raise --tolerance or lower --multiple-of"):
        fit_budget(arch, w, 0.5 * arch.macs(w), tolerance=0.0001, multiple_of=16)
