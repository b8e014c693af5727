"""The fast training path on a GPU: CUDA graphs against the eager path, and trainings side by
side. Skipped where CUDA is not available (the CPU suite checks the same step uncaptured)."""

import pytest
import torch

from netadjust.config import TrainConfig
from netadjust.data import synthetic
from netadjust.errors import TrainingError
from netadjust.models import get_arch
from netadjust.train import Training, build_and_train, train_concurrently

from test_train import NanOnEpoch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA = torch.device("cuda", 0)
ARCH = get_arch("resnet20", num_classes=4, in_channels=1, input_size=8, width_mult=0.5)


def train(kind, cfg, data, seed=3):
    return build_and_train(ARCH, ARCH.default_widths(), data, cfg, seed=seed, device=CUDA, stepper=kind,
                           progress=False)


def test_graph_step_trains_like_the_eager_step():
    """Without dropout both paths run the same kernels on the same batches; bfloat16 autocast
    and atomics in cuDNN's backward leave small differences."""
    data = synthetic(n_train=512, n_heldout=64, n_test=128)
    cfg = TrainConfig(epochs=4, batch_size=64, drop_rate=0.0)
    eager, graph = train("eager", cfg, data), train("static", cfg, data)
    for a, b in zip(eager.history, graph.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05, abs=0.02)
    assert graph.history[-1]["train_loss"] < 0.5 * graph.history[0]["train_loss"]  # it learns
    assert abs(graph.metrics["test"].top1 - eager.metrics["test"].top1) <= 0.05


def test_graph_step_with_dropout_learns_and_names_a_non_finite_step():
    data = synthetic(n_train=512, n_heldout=64, n_test=128)
    result = train("auto", TrainConfig(epochs=4, batch_size=64, drop_rate=0.3), data)
    assert result.history[-1]["train_loss"] < 0.7 * result.history[0]["train_loss"]
    with pytest.raises(TrainingError, match="loss became nan at epoch 2, step 1"):
        train("static", TrainConfig(epochs=3, batch_size=64), NanOnEpoch(data, epoch=1))


def test_trainings_side_by_side_on_streams():
    data = synthetic(n_train=512, n_heldout=64, n_test=128)
    cfg = TrainConfig(epochs=3, batch_size=64, drop_rate=0.0)
    alone = [train("static", cfg, data, seed=s) for s in (1, 2, 3)]
    together = []
    for s in (1, 2, 3):
        torch.manual_seed(s)
        together.append(Training(ARCH.build(), data, cfg, seed=s, device=CUDA, progress=False))
    for a, b in zip(alone, train_concurrently(together)):
        assert b.history[-1]["train_loss"] == pytest.approx(a.history[-1]["train_loss"], rel=0.1, abs=0.02)
