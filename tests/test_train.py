"""The trainer: schedule, regulariser, NaN guard, and `netadjust train`."""

import copy
import json

import pytest
import torch

from netadjust.config import TrainConfig
from netadjust.data import load_dataset, synthetic
from netadjust.errors import TrainingError
from netadjust.models import Probes, get_arch
from netadjust.steps import EagerStep, StaticStep, sgd
from netadjust.train import build_and_train, evaluate, lr_at

from test_cli import run_cli


def test_cosine_schedule_with_warmup():
    cfg = TrainConfig(epochs=10, lr=0.1, min_lr=0.001, warmup_epochs=2)
    assert lr_at(cfg, 0) == 0 and lr_at(cfg, 1) == pytest.approx(0.05)
    assert lr_at(cfg, 2) == pytest.approx(0.1)
    assert lr_at(cfg, 6) == pytest.approx(0.001 + 0.5 * 0.099)
    assert lr_at(cfg, 10) == pytest.approx(0.001)


def test_dropout_regulariser_ramps_with_epoch_and_depth():
    model = get_arch("resnet20", input_size=8).build()
    probes = Probes(model)
    probes.set_regulariser(0.05, epoch=5, epochs=10)
    rates = probes.rates()
    assert rates[-1] == pytest.approx(0.025) and rates[0] == pytest.approx(0.025 / 18)
    assert rates == sorted(rates)


class NanOnEpoch:
    """A data source whose training images turn NaN from a given epoch on."""

    def __init__(self, inner, epoch):
        self.inner, self.epoch = inner, epoch
        for name in ("name", "num_classes", "in_channels", "input_size", "size", "num_batches", "to_device"):
            setattr(self, name, getattr(inner, name))

    def batches(self, split, **kw):
        for x, y in self.inner.batches(split, **kw):
            yield (x * float("nan") if kw.get("epoch", 0) >= self.epoch and kw.get("train") else x), y


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_checkpoint():
    data = NanOnEpoch(synthetic(n_train=128), epoch=1)
    arch = get_arch("resnet20", num_classes=4, in_channels=1, input_size=8, width_mult=0.25)
    saved = []
    with pytest.raises(TrainingError, match="loss became nan at epoch 2, step 1"):
        build_and_train(arch, arch.default_widths(), data, TrainConfig(epochs=3, batch_size=32),
                        checkpoint=lambda state: saved.append(copy.deepcopy(state)), progress=False)
    assert [s["epoch"] for s in saved] == [1]
    assert all(torch.isfinite(v).all() for v in saved[0]["model"].values() if v.is_floating_point())


def test_same_seed_same_model():
    data = synthetic(n_train=128)
    arch = get_arch("resnet20", num_classes=4, in_channels=1, input_size=8, width_mult=0.25)
    runs = [build_and_train(arch, arch.default_widths(), data, TrainConfig(epochs=2, batch_size=32), seed=5,
                            progress=False) for _ in range(2)]
    a, b = (r.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_command_writes_summary_and_checkpoint(tmp_path):
    out = tmp_path / "t"
    code, stdout, err = run_cli("train", "--dataset", "digits", "--epochs", "1", "--width-mult", "0.25",
                                "--train-subset", "200", "--batch-size", "50", "--out", str(out), "--quiet")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    arch = get_arch("resnet20", num_classes=10, in_channels=1, input_size=8, width_mult=0.25)
    assert summary["widths"] == arch.default_widths() and summary["arch"] == arch.settings()
    assert (summary["macs"], summary["params"]) == (arch.macs(arch.default_widths()), arch.params(arch.default_widths()))
    assert (summary["macs"], summary["params"]) == (159_136, 17_254)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1 and state["widths"] == summary["widths"]
    assert summary["seconds"] >= state["history"][0]["seconds"]
    # The accuracies are those of the saved weights on the held-out and test splits.
    model = arch.build(state["widths"])
    model.load_state_dict(state["model"])
    data = load_dataset("digits", train_subset=200)
    for split in ("test", "heldout"):
        metrics = evaluate(model.eval(), data, split, batch_size=256)
        assert (metrics.top1, metrics.loss) == pytest.approx((summary[f"{split}_acc"], summary[f"{split}_loss"]),
                                                             rel=1e-6)
    code, _, err = run_cli("train", "--dataset", "digits", "--out", str(out), "--epochs", "1")
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize("args, message", [
    (["--in-channels", "3"], "does not match digits, whose images have 1 channel"),
    (["--batch-size", "5000"], "--batch-size 5000 is larger than the train split"),
    (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent"], "fashion-mnist"),
    (["--lr", "-1", "--epochs", "0"], "--epochs must be a positive integer"),
])
def test_train_command_errors(tmp_path, args, message):
    code, _, err = run_cli("train", "--out", str(tmp_path / "x"), *args)
    assert code == 2 and message in err and "Traceback" not in err, err


def test_static_step_computes_the_eager_training():
    """The fast path (no host sync, SGD as foreach kernels with a device learning rate; on CPU
    it runs uncaptured) trains the same network as torch.optim.SGD's eager path: the same data
    order, channel-dropout masks and learning rates, equal up to float rounding. This setting
    damps rounding differences (a 1e-6 change of the learning rate moves the epochs' losses by
    less than 1e-6); with Nesterov momentum the same 3 epochs turn such a change into 0.2% and
    the two paths' rounding into up to 5% on some CPUs, so the update itself is checked step by
    step below instead."""
    data = synthetic(n_train=128)
    arch = get_arch("resnet20", num_classes=4, in_channels=1, input_size=8, width_mult=0.25)
    cfg = TrainConfig(epochs=3, batch_size=32, nesterov=False, weight_decay=3e-4, drop_rate=0.2)
    runs = {kind: build_and_train(arch, arch.default_widths(), data, cfg, seed=5, stepper=kind, progress=False)
            for kind in ("eager", "static")}
    eager, static = runs["eager"], runs["static"]
    for a, b in zip(eager.history, static.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert abs(b["train_acc"] - a["train_acc"]) <= 1 / 96  # a near-tie may flip one of 96 images
        assert b["lr"] == a["lr"]
    wa, wb = eager.model.state_dict(), static.model.state_dict()
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), rtol=1e-3, atol=1e-5), k
    assert eager.metrics["test"].loss == pytest.approx(static.metrics["test"].loss, rel=1e-3)


@pytest.mark.parametrize("nesterov, weight_decay", [(False, 3e-4), (True, 0.0), (True, 3e-4)])
def test_static_step_makes_torch_sgd_s_update(nesterov, weight_decay):
    """Each static step, started from the eager network's weights, running statistics and
    momentum buffers, leaves what torch.optim.SGD's eager step leaves, up to the rounding of
    one update (a few float32 ulps of the weights and the update): the steps are compared one
    at a time, so rounding cannot compound as it does over a training."""
    data = synthetic(n_train=128)
    arch = get_arch("resnet20", num_classes=4, in_channels=1, input_size=8, width_mult=0.25)
    cfg = TrainConfig(batch_size=32, nesterov=nesterov, weight_decay=weight_decay)
    torch.manual_seed(0)
    eager_net = arch.build(arch.default_widths())
    static_net = copy.deepcopy(eager_net)
    eager_opt = sgd(eager_net, cfg)
    cpu = torch.device("cpu")
    eager = EagerStep(eager_net, eager_opt, cfg, cpu, False, "eager")
    # StaticStep starts from zero momentum buffers, which torch.optim.SGD's first step matches.
    static = StaticStep(static_net, sgd(static_net, cfg), cfg, cpu, False, "static", batch_shape=(32, 1, 8, 8),
                        max_steps=4, graph=False)
    lrs = [0.15, 0.12, 0.08, 0.03]
    eager.begin_epoch(0, lrs)
    static.begin_epoch(0, lrs)

    def assert_within_rounding(expected: torch.Tensor, got: torch.Tensor, scale: torch.Tensor) -> None:
        assert (expected - got).abs().max() <= 1e-6 * scale + 1e-12

    for x, y in data.batches("train", batch_size=32, train=True):
        before = copy.deepcopy(eager_net.state_dict())
        eager.step(x, y)
        static.step(x, y)
        after_e, after_s = eager_net.state_dict(), static_net.state_dict()
        for k, old in before.items():
            if old.is_floating_point():
                assert_within_rounding(after_e[k], after_s[k], old.abs().max() + (after_e[k] - old).abs().max())
            else:
                assert torch.equal(after_e[k], after_s[k]), k
        momenta = [eager_opt.state[p]["momentum_buffer"] for p in eager_net.parameters()]
        for momentum, buf in zip(momenta, static.bufs):
            assert_within_rounding(momentum, buf, momentum.abs().max())
        static_net.load_state_dict(after_e)  # the next step starts from the same state again
        for momentum, buf in zip(momenta, static.bufs):
            buf.copy_(momentum)
    loss_e, correct_e, count = eager.end_epoch()
    loss_s, correct_s, count_s = static.end_epoch()
    assert (loss_s, correct_s, count_s) == (pytest.approx(loss_e, rel=1e-6), correct_e, count)


def test_static_step_finds_a_non_finite_loss_at_the_epoch_end_and_names_its_step():
    data = NanOnEpoch(synthetic(n_train=128), epoch=1)
    arch = get_arch("resnet20", num_classes=4, in_channels=1, input_size=8, width_mult=0.25)
    saved = []
    with pytest.raises(TrainingError, match="loss became nan at epoch 2, step 1"):
        build_and_train(arch, arch.default_widths(), data, TrainConfig(epochs=3, batch_size=32), stepper="static",
                        checkpoint=lambda state: saved.append(state["epoch"]), progress=False)
    assert saved == [1]


def test_trainings_run_together_give_the_results_they_give_alone():
    from netadjust.train import Training, train_concurrently

    data = synthetic(n_train=128)
    arch = get_arch("resnet20", num_classes=4, in_channels=1, input_size=8, width_mult=0.25)
    cfg = TrainConfig(epochs=2, batch_size=32)
    alone = [build_and_train(arch, arch.default_widths(), data, cfg, seed=s, progress=False) for s in (1, 2)]
    together = []
    for s in (1, 2):
        torch.manual_seed(s)
        together.append(Training(arch.build(), data, cfg, seed=s, progress=False))
    for a, b in zip(alone, train_concurrently(together)):
        assert a.history == [dict(h, seconds=g["seconds"]) for h, g in zip(b.history, a.history)]
        assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())


def test_run_together_reports_each_training_as_it_ends_with_its_result():
    from netadjust.train import Training, run_together

    data = synthetic(n_train=64)
    arch = get_arch("resnet20", num_classes=4, in_channels=1, input_size=8, width_mult=0.25)
    trainings = [Training(arch.build(), data, TrainConfig(epochs=e, batch_size=32), progress=False) for e in (1, 2)]
    ended = []
    steps = 0
    for _ in run_together(trainings, on_end=lambda t: ended.append((t, t.result is not None, steps))):
        steps += 1
    assert [(t, has) for t, has, _ in ended] == [(trainings[0], True), (trainings[1], True)]
    assert ended[0][2] < ended[1][2] == steps  # the first is reported before the second one's steps
