"""The search loop end to end on tiny settings, its run directory, and its up-front checks."""

import json

import numpy as np
import pytest
import torch

from netadjust.adjust import adjust_widths
from netadjust.budget import fit_budget, within
from netadjust.config import SearchConfig
from netadjust.data import load_dataset
from netadjust.errors import ConfigError, DataError
from netadjust.models import get_arch
from netadjust.records import RoundRecord, Summary
from netadjust.search import search
from netadjust.train import evaluate

TINY = dict(arch="resnet20", width_mult=0.25, dataset="digits", train_subset=256, rounds=2, k=3, epochs=1,
            batch_size=64, fur_batch_size=128, repeats=2, final_epochs=1)


ARCH = get_arch("resnet20", num_classes=10, in_channels=1, input_size=8, width_mult=0.25)


def rebuild(path):
    """The model a round checkpoint holds."""
    state = torch.load(path, weights_only=False)
    settings = dict(state["arch"])
    model = get_arch(settings.pop("arch"), **settings).build(state["widths"])
    model.load_state_dict(state["model"])
    return model.eval()


def tiny(tmp_path, **changes) -> SearchConfig:
    return SearchConfig.from_dict({**TINY, "out": str(tmp_path / "run"), **changes})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    cfg = tiny(tmp_path_factory.mktemp("search"))
    return cfg, search(cfg, progress=False)


def test_records_hold_the_contract(finished):
    cfg, result = finished
    lines = (result.run_dir / "records.jsonl").read_text().splitlines()
    records = [RoundRecord.from_dict(json.loads(line), where="test") for line in lines]
    assert records == result.records
    assert [r.round for r in records] == [0, 1]
    for r in records:
        assert list(r.fur) == list(r.widths) == list(r.drop_rate) == list(r.fur_stderr)
        assert [h["epoch"] for h in r.history] == list(range(1, cfg.train.epochs + 1))
        assert r.seconds >= r.train_seconds + r.fur_seconds >= sum(h["seconds"] for h in r.history)
    # Each round trains what the previous round's adjustment produced.
    assert records[1].widths == records[0].next_widths


def test_accuracies_are_those_of_the_saved_round_models(finished):
    cfg, result = finished
    data = load_dataset("digits", train_subset=cfg.train_subset)
    for r in result.records:
        model = rebuild(result.run_dir / "checkpoints" / f"round{r.round}.pt")
        for split, acc, loss in (("heldout", r.heldout_acc, r.heldout_loss), ("test", r.test_acc, r.test_loss)):
            metrics = evaluate(model, data, split, batch_size=256)
            assert (metrics.top1, metrics.loss) == pytest.approx((acc, loss), rel=1e-6), split


def test_moves_are_the_rule_applied_to_the_recorded_fur(finished):
    cfg, result = finished
    rule = cfg.rule()
    for r in result.records:
        adjusted, moves = adjust_widths(r.widths, result.widths_original, r.fur, rule, r.round)
        assert moves == r.moves
        # k shrinks by round (3, then round(2.5) = 2); every widened layer moves, narrowing may
        # stop at the minimum width.
        widened = [k for k, d in moves.items() if d > 0]
        assert len(widened) == rule.layers_to_move(r.round) == (3, 2)[r.round]
        assert set(widened) == set(sorted(r.fur, key=r.fur.get, reverse=True)[:len(widened)])
        assert len(moves) - len(widened) <= len(widened)
        assert r.next_widths == fit_budget(ARCH, adjusted, result.summary.macs_target, tolerance=cfg.tolerance,
                                           min_width=min(cfg.min_width, *adjusted.values()))


def test_every_round_is_within_the_budget(finished):
    cfg, result = finished
    target = result.summary.macs_target
    assert target == ARCH.macs(ARCH.default_widths())
    for r in result.records:
        assert ARCH.macs(r.widths) == r.macs and ARCH.params(r.widths) == r.params
        assert within(r.macs, target, cfg.tolerance) and within(r.next_macs, target, cfg.tolerance)


def test_final_files_and_summary(finished):
    cfg, result = finished
    run = result.run_dir
    final = json.loads((run / "widths_final.json").read_text())
    assert final == result.records[-1].next_widths == result.widths_final
    summary = json.loads((run / "summary.json").read_text())
    assert Summary.from_dict(summary, where="test") == result.summary
    assert summary["macs_final"] == result.records[-1].next_macs
    assert summary["macs_original"] == result.records[0].macs
    finals = {name: json.loads((run / "final" / f"{name}_seed0.json").read_text()) for name in ("original", "searched")}
    assert finals["original"]["widths"] == result.widths_original and finals["searched"]["widths"] == final
    assert summary["original_test_accs"] == [finals["original"]["test_acc"]] == [summary["original_test_acc"]]
    assert summary["searched_test_accs"] == [finals["searched"]["test_acc"]] == [summary["searched_test_acc"]]
    assert summary["test_acc_gain"] == summary["searched_test_acc"] - summary["original_test_acc"]
    assert summary["final_seeds"] == [0] and "test_acc_gain_ci95" not in summary  # one seed: no interval
    config = json.loads((run / "config.json").read_text())
    assert config == cfg.to_flat() and config["rounds"] == 2 and config["epochs"] == 1


def test_checkpoints_rebuild_their_round(finished):
    _, result = finished
    state = torch.load(result.run_dir / "checkpoints" / "round1.pt", weights_only=False)
    assert state["widths"] == result.records[1].widths
    rebuild(result.run_dir / "checkpoints" / "round1.pt")  # shapes match exactly


@pytest.mark.parametrize("changes, error, message", [
    ({"budget": 0.001}, ConfigError, "unreachable"),
    ({"k": 10}, ConfigError, "--k 10 is larger than half the number of searchable layers \\(18\\)"),
    ({"base_drop_rate": 1.0}, ConfigError, "--base-drop-rate must be in \\(0, 1\\)"),
    ({"heldout_fraction": 0.0}, ConfigError, "FUR needs a held-out split"),
    ({"batch_size": 100000}, DataError, "--batch-size 100000 is larger than the train split"),
    ({"arch": "resnet21"}, ConfigError, "unknown architecture"),
    ({"device": "cuda:7"}, ConfigError, "--device cuda:7: "),
    ({"device": "mps"}, ConfigError, "--device mps: Apple's MPS is not available here"),
    ({"seed": 99999999999999999999}, ConfigError, "--seed must be an integer in \\[0, "),
    ({"width_mult": float("inf")}, ConfigError, "--width-mult must be a finite number, got inf"),
    ({"warm_widen": "copy"}, ConfigError, "--warm-widen must be one of zero, split, got 'copy'"),
])
def test_bad_settings_fail_before_training(tmp_path, changes, error, message):
    with pytest.raises(error, match=message):
        search(tiny(tmp_path, **changes), progress=False)
    assert not (tmp_path / "run").exists()


def test_existing_run_directory_is_protected(finished, tmp_path):
    cfg, result = finished
    with pytest.raises(ConfigError, match="already exists; pass --resume"):
        search(cfg, progress=False)
    with pytest.raises(ConfigError, match="different configuration: rounds \\(stored 2, now 3\\)"):
        search(cfg.replace(rounds=3), resume=True, progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        search(tiny(tmp_path), resume=True, progress=False)


def test_many_problems_are_reported_together():
    with pytest.raises(ConfigError) as err:
        SearchConfig.from_dict({"rounds": 0, "lr": -1, "repeats": 0, "fur_mode": "slow"}).validate()
    msg = str(err.value)
    for part in ("--rounds must be a positive integer", "--lr must be > 0", "--repeats", "--fur-mode must be one of"):
        assert part in msg


def test_unknown_config_key_suggests_the_flag():
    with pytest.raises(ConfigError, match="unknown key 'round' \\(did you mean rounds"):
        SearchConfig.from_dict({"round": 3})


# One architecture per family module (deeper variants share the code).
@pytest.mark.parametrize("name", ["resnet20", "plain20", "resnet18", "mobilenet_v2", "mnasnet_a1", "densenet40",
                                  "pyramidnet20"])
def test_every_family_goes_through_one_search_step(name):
    """Train briefly, estimate FUR, adjust and restore the budget, on tiny inputs for every family."""
    from netadjust.adjust import AdjustRule, adjust_widths
    from netadjust.budget import fit_budget
    from netadjust.config import TrainConfig
    from netadjust.data import synthetic
    from netadjust.fur import estimate_fur
    from netadjust.train import build_and_train

    data = synthetic(num_classes=3, in_channels=3, input_size=8, n_train=64, n_heldout=32, n_test=16)
    arch = get_arch(name, num_classes=3, in_channels=3, input_size=8, width_mult=0.25)
    w = arch.default_widths()
    trained = build_and_train(arch, w, data, TrainConfig(epochs=1, batch_size=32), progress=False)
    fur = estimate_fur(trained.model, data, arch, w, repeats=2, batch_size=32)
    assert set(fur.fur) == set(w) and all(np.isfinite(v) for v in fur.fur.values())
    k = max(1, min(3, len(w) // 2))
    adjusted, moves = adjust_widths(w, w, fur.fur, AdjustRule(k=k, min_width=1), 0)
    target = arch.macs(w)
    restored = fit_budget(arch, adjusted, target, tolerance=0.05, min_width=1)
    assert within(arch.macs(restored), target, 0.05)
    arch.build(restored)


@pytest.mark.slow
def test_final_comparison_over_three_seeds(tmp_path):
    from netadjust.report import write_report
    from netadjust.stats import mean_std, paired_difference

    result = search(tiny(tmp_path, rounds=1, final_seeds=3), progress=False)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["final_seeds"] == [0, 1, 2]
    finals = {(name, seed): json.loads((result.run_dir / "final" / f"{name}_seed{seed}.json").read_text())
              for name in ("original", "searched") for seed in (0, 1, 2)}
    orig = [finals["original", s]["test_acc"] for s in (0, 1, 2)]
    found = [finals["searched", s]["test_acc"] for s in (0, 1, 2)]
    assert summary["original_test_accs"] == orig and summary["searched_test_accs"] == found
    assert [finals["original", s]["seed"] for s in (0, 1, 2)] == [0, 1, 2]
    assert (summary["original_test_acc"], summary["original_test_acc_std"]) == mean_std(orig)
    gain, (low, high) = paired_difference(found, orig)
    assert summary["test_acc_gain"] == gain and summary["test_acc_gain_ci95"] == [low, high] and low < gain < high
    text = write_report(result.run_dir).read_text()
    assert f"95% CI [{100 * low:+.2f}, {100 * high:+.2f}] over 3 seeds (paired by seed)" in text


@pytest.mark.parametrize("budget", [1.0, 0.64])
def test_random_guide_moves_layers_drawn_at_random(tmp_path, budget):
    from netadjust.fur import random_scores
    from netadjust.search import random_guided_widths, round_seed

    cfg = tiny(tmp_path, guide="random", final_epochs=0, budget=budget)
    result = search(cfg, progress=False)
    for r in result.records:
        assert r.guide == "random" and r.fur_seconds == 0 and set(r.drop_rate.values()) == {0.0}
        assert r.fur == random_scores(r.widths, seed=round_seed(cfg.seed, r.round), base_loss=r.heldout_loss).fur
        _, moves = adjust_widths(r.widths, result.widths_original, r.fur, cfg.rule(), r.round)
        assert moves == r.moves and sum(d > 0 for d in moves.values()) == cfg.rule().layers_to_move(r.round)
    # The control's widths need no training: computed alone, they are the search's, round by round.
    assert random_guided_widths(cfg, ARCH) == [r.widths for r in result.records] + [result.widths_final]


def test_round_seeds_differ_between_every_seed_and_round():
    """Seed s in round t + 1 must not draw what seed s + 1 draws in round t (as ``seed + round``
    did), or the random control's searches of consecutive seeds move the same layers."""
    from netadjust.fur import random_scores
    from netadjust.search import round_seed

    pairs = [(seed, t) for seed in range(50) for t in range(50)]
    assert len({round_seed(seed, t) for seed, t in pairs}) == len(pairs)
    widths = ARCH.default_widths()
    for s, t in pairs[:5]:
        assert random_scores(widths, seed=round_seed(s, t + 1), base_loss=0.0).fur != \
            random_scores(widths, seed=round_seed(s + 1, t), base_loss=0.0).fur


def test_random_guided_widths_refuse_a_latency_budget():
    from netadjust.search import random_guided_widths

    with pytest.raises(ConfigError, match="MACs budget only; got --budget-metric latency"):
        random_guided_widths(SearchConfig.from_dict({**TINY, "budget_metric": "latency"}), ARCH)


def test_searches_run_together_give_what_they_give_alone(tmp_path):
    from netadjust.search import search_many

    def strip(result):
        return [{k: v for k, v in r.to_dict().items() if "seconds" not in k and k != "history"} for r in result.records]

    cfgs = [tiny(tmp_path / name, rounds=1, final_epochs=0, seed=seed) for name, seed in (("a", 0), ("b", 1))]
    ended = []
    together = search_many(cfgs, on_end=lambda i, result: ended.append((i, result)), progress=False)
    assert sorted(ended, key=lambda e: e[0]) == [(0, together[0]), (1, together[1])]  # once each, with its result
    alone = [search(cfg.replace(out=cfg.out + "-alone"), progress=False) for cfg in cfgs]
    assert [strip(r) for r in together] == [strip(r) for r in alone]
    assert strip(together[0]) != strip(together[1])


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    # Warm start is the default for netadjust's families.
    cfg = SearchConfig.from_dict({**TINY, "rounds": 3, "epochs": 4, "final_epochs": 0,
                                  "out": str(tmp_path_factory.mktemp("warm") / "run")})
    return cfg, search(cfg, progress=False)


def test_warm_rounds_start_from_the_previous_network_resized(warm):
    from netadjust.models import top_channels
    from netadjust.search import round_seed, warm_start

    cfg, result = warm
    assert [r.warm for r in result.records] == [False, True, True]
    assert [len(r.history) for r in result.records] == [4, 1, 1]  # --warm-epochs default: epochs // 4
    previous = torch.load(result.run_dir / "checkpoints" / "round0.pt", weights_only=True)
    importance = previous["channel_importance"]
    assert set(importance) == set(ARCH.keys())  # FUR's per-channel scores, saved with the round
    narrowed = [k for k, d in result.records[0].moves.items() if d < 0 and k.endswith("conv1")]
    keep = top_channels({k: torch.tensor(importance[k]) for k in narrowed}, result.records[1].widths)
    for key in narrowed:  # the most important channels by FUR's first-order scores
        scores = torch.tensor(importance[key])
        kept = keep[key]
        assert len(kept) == result.records[1].widths[key]
        assert min(scores[kept]) >= max(scores[[i for i in range(len(scores)) if i not in kept]], default=-1)
    old = ARCH.build(previous["widths"])
    old.load_state_dict(previous["model"])
    start = warm_start(ARCH, previous, result.records[1].widths, seed=round_seed(cfg.seed, 1))
    blocks = {b.probe1.key: b for b in start.segments if hasattr(b, "probe1")}
    old_blocks = {b.probe1.key: b for b in old.segments if hasattr(b, "probe1")}
    for key in narrowed:  # the warm round starts from exactly those channels, in every tensor of theirs
        new_b, old_b = blocks[key], old_blocks[key]
        cin = min(new_b.conv1.in_channels, old_b.conv1.in_channels)  # the stream keeps a prefix
        cout = min(new_b.conv2.out_channels, old_b.conv2.out_channels)
        assert torch.equal(new_b.conv1.weight[:, :cin], old_b.conv1.weight[keep[key], :cin])
        assert torch.equal(new_b.bn1.running_mean, old_b.bn1.running_mean[keep[key]])
        assert torch.equal(new_b.conv2.weight[:cout], old_b.conv2.weight[:cout, keep[key]])


def test_no_warm_start_trains_every_round_from_scratch(tmp_path):
    result = search(tiny(tmp_path, rounds=3, epochs=4, final_epochs=0, warm_start=False), progress=False)
    assert [r.warm for r in result.records] == [False, False, False]
    assert [len(r.history) for r in result.records] == [4, 4, 4]


def test_paper_preset_trains_every_round_from_scratch():
    from netadjust.config import PRESETS

    assert SearchConfig.from_dict(PRESETS["paper"]).warm_start is False
    assert SearchConfig().warm_start is None  # the default: warm where the architecture can be resized


def test_warm_search_resumed_after_a_round_gives_the_same_rounds(warm, tmp_path):
    cfg, result = warm
    first = cfg.replace(rounds=1, out=str(tmp_path / "run"))
    search(first, progress=False)
    resumed = search(first.replace(rounds=3), resume=True, allow_changes=True, progress=False)

    def strip(records):
        return [{k: v for k, v in r.to_dict().items() if "seconds" not in k and k != "history"} for r in records]

    assert strip(resumed.records) == strip(result.records)
