"""Latency as the budget: the lookup table, its interpolation, and a latency-budget search.

Real timings depend on the machine and its load, so these tests replace the clock with a
deterministic one: a block "takes" 2 ns per FLOP that FlopCounterMode counts. The table's
prediction must then equal that "timing" of whole networks at any widths, which checks the
layer kinds, the grids, the interpolation and the calibration exactly. How close the table
comes to real timings is measured by bench/bench_latency.py, not asserted here.
"""

import json
import random
import weakref

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import netadjust.latency as latency
from conftest import TINY
from netadjust.config import SearchConfig
from netadjust.errors import ConfigError
from netadjust.fur import drop_rates
from netadjust.latency import LatencyTable
from netadjust.models import get_arch
from netadjust.report import write_report
from netadjust.search import search


_COUNTED = weakref.WeakKeyDictionary()  # module -> {input shape: FLOPs}: the reference is timed often


def flop_clock(module, x):
    """A deterministic stand-in for time_module: 2 ns per FLOP of module(x)."""
    seen = _COUNTED.setdefault(module, {})
    if x.shape not in seen:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(x)
        seen[x.shape] = counter.get_total_flops()
    return 2e-9 * seen[x.shape]


@pytest.mark.parametrize("name, settings", [
    ("resnet20", {"num_classes": 10, "in_channels": 1, "input_size": 8, "width_mult": 0.5}),
    ("mobilenet_v2", {"num_classes": 10, "input_size": 32, "width_mult": 0.35}),  # depthwise kinds
    ("user_models:resnext", {"num_classes": 10, "input_size": 16}),  # grouped convs, width steps
])
def test_the_table_predicts_a_clock_it_can_represent_exactly(name, settings):
    arch = get_arch(name, **settings)
    table = LatencyTable.measure(arch, torch.device("cpu"), batch=2, measure=flop_clock, progress=False)
    assert table.calibration == pytest.approx(1.0, rel=1e-9)
    rng = random.Random(name)
    steps = arch.width_steps()
    for _ in range(4):  # inside the grid and beyond it (extrapolated)
        widths = {k: max(steps[k], steps[k] * round(w * rng.uniform(0.2, 3.0) / steps[k]))
                  for k, w in arch.default_widths().items()}
        expected = flop_clock(arch.build(widths).eval(), torch.randn(2, arch.in_channels, arch.input_size,
                                                                    arch.input_size))
        assert table.predict(widths, arch) == pytest.approx(expected, rel=1e-9)
    # Round trip through the run directory's JSON.
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.predict(widths, arch) == table.predict(widths, arch)


def test_fur_drop_rates_normalised_by_a_latency_proportional_to_macs_equal_the_macs_ones():
    arch = get_arch("resnet20", num_classes=10, in_channels=1, input_size=8, width_mult=0.5)
    table = LatencyTable.measure(arch, torch.device("cpu"), measure=flop_clock, progress=False)
    widths = arch.default_widths()
    by_macs, _ = drop_rates(arch, widths, 0.05)
    by_latency, _ = drop_rates(arch, widths, 0.05, derivative=table.derivative(widths, arch))
    assert by_latency == pytest.approx(by_macs, rel=1e-9)


def tiny(tmp_path, **changes):
    return SearchConfig.from_dict({**TINY, "rounds": 2, "final_epochs": 0, "out": str(tmp_path / "run"),
                                   "budget_metric": "latency", "budget": 0.8, **changes})


def test_a_latency_budget_search_ends_on_the_target(tmp_path, monkeypatch):
    monkeypatch.setattr(latency, "time_module", flop_clock)
    result = search(tiny(tmp_path), progress=False)
    s = result.summary
    lat = s.latency
    assert s.budget_metric == "latency" and s.within_tolerance
    table = json.loads((result.run_dir / "latency.json").read_text())
    assert lat["target"] == pytest.approx(0.8 * table["measured"], rel=1e-12)  # 0.8 x the family's network
    for name in ("original", "final"):  # both at the budget, as predicted and as "timed"
        assert abs(lat[f"{name}_predicted"] - lat["target"]) / lat[f"{name}_predicted"] <= 0.01
    assert lat["final_measured"] == pytest.approx(lat["final_predicted"], rel=1e-9)  # this clock is exact
    assert abs(lat["prediction_error"]) < 1e-9
    records = [json.loads(line) for line in (result.run_dir / "records.jsonl").read_text().splitlines()]
    assert all(abs(r["next_latency"] - lat["target"]) / r["next_latency"] <= 0.01 for r in records)
    # This clock is proportional to MACs, so the MACs went down with it.
    assert s.macs_final < 0.81 * arch_macs(result)
    report = write_report(result.run_dir).read_text()
    assert (f"| searched | {1e3 * lat['final_measured']:.3f} | {1e3 * lat['final_predicted']:.3f} | +0.0% |"
            in report)
    assert "(not held: the budget was latency, see Latency)" in report


def arch_macs(result):
    """MACs of the family's starting network of a run."""
    settings = dict(result.summary.arch)
    arch = get_arch(settings.pop("arch"), **settings)
    return arch.macs(arch.default_widths())


def test_a_resumed_latency_search_keeps_its_table(tmp_path, monkeypatch):
    monkeypatch.setattr(latency, "time_module", flop_clock)
    first = search(tiny(tmp_path, rounds=1), progress=False)
    stored = json.loads((first.run_dir / "latency.json").read_text())
    monkeypatch.setattr(latency, "time_module", lambda m, x: 3 * flop_clock(m, x))  # another machine's clock
    search(tiny(tmp_path, rounds=2), resume=True, allow_changes=True, progress=False)
    assert json.loads((first.run_dir / "latency.json").read_text()) == stored


@pytest.mark.parametrize("changes, message", [
    ({"budget_metric": "fps"}, "--budget-metric must be one of macs, latency, got 'fps'"),
    ({"fur_cost": "time"}, "--fur-cost must be one of macs, latency, got 'time'"),
    ({"latency_batch": 0}, "--latency-batch must be a positive integer, got 0"),
])
def test_bad_latency_settings(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        tiny(tmp_path, **changes).validate()
