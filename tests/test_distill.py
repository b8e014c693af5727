"""Distillation in the final comparison: the loss, the teacher, what is recorded and reused."""

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY
from netadjust.config import SearchConfig, TrainConfig
from netadjust.errors import ConfigError
from netadjust.models import get_arch
from netadjust.search import search
from netadjust.steps import Distillation, training_loss


class Fixed(torch.nn.Module):
    """A 'teacher' that returns given logits."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


def test_the_loss_blends_labels_and_soft_targets():
    torch.manual_seed(0)
    logits, y, x = torch.randn(8, 5), torch.randint(0, 5, (8,)), torch.zeros(8, 1)
    cfg = TrainConfig(label_smoothing=0.0)
    hard = F.cross_entropy(logits, y)
    assert torch.equal(training_loss(logits, x, y, cfg, None), hard)
    # A teacher that agrees with the student adds nothing; alpha weights the labels down.
    same = Distillation(Fixed(logits.clone()), alpha=0.3, temperature=4.0)
    assert torch.allclose(training_loss(logits, x, y, cfg, same), 0.7 * hard, atol=1e-6)
    # Against another teacher: T^2 * KL(teacher_T || student_T), computed here from its definition.
    teacher = torch.randn(8, 5)
    t, s = F.softmax(teacher / 2.0, 1), F.log_softmax(logits / 2.0, 1)
    kl = (t * (t.log() - s)).sum(1).mean()
    got = training_loss(logits, x, y, cfg, Distillation(Fixed(teacher), alpha=1.0, temperature=2.0))
    assert torch.allclose(got, 4.0 * kl, atol=1e-6)


def tiny(tmp_path, **changes):
    return SearchConfig.from_dict({**TINY, "out": str(tmp_path / "run"), **changes})


def finals(run):
    return {p.stem: json.loads(p.read_text()) for p in sorted((run / "final").glob("*.json"))}


def test_searched_widths_learn_from_the_original_network(tmp_path):
    result = search(tiny(tmp_path, distill_from="original", distill_alpha=0.6), progress=False)
    recorded = finals(result.run_dir)
    assert recorded["original_seed0"].get("distill") is None
    assert recorded["searched_seed0"]["distill"] == {"teacher": "original seed 0", "alpha": 0.6, "temperature": 4.0}
    # Another alpha retrains the searched network only; the original (the teacher) is reused.
    before = (result.run_dir / "final" / "original_seed0.weights.pt").read_bytes()
    search(tiny(tmp_path, distill_from="original", distill_alpha=0.9), resume=True, allow_changes=True,
           progress=False)
    again = finals(result.run_dir)
    assert again["original_seed0"] == recorded["original_seed0"]
    assert (result.run_dir / "final" / "original_seed0.weights.pt").read_bytes() == before
    assert again["searched_seed0"]["distill"]["alpha"] == 0.9


def test_a_teacher_file(tiny_run_once, tmp_path):
    teacher = tiny_run_once / "final" / "original_seed0.weights.pt"
    result = search(tiny(tmp_path, distill_from=str(teacher)), progress=False)
    assert finals(result.run_dir)["searched_seed0"]["distill"]["teacher"] == str(teacher)


def test_a_teacher_that_does_not_fit_the_data_is_refused_before_training(tmp_path):
    arch = get_arch("resnet20", num_classes=5, in_channels=1, input_size=8, width_mult=0.25)
    teacher = tmp_path / "five_classes.pt"
    torch.save({"model": arch.build().state_dict(), "widths": arch.default_widths(), "arch": arch.settings()}, teacher)
    with pytest.raises(ConfigError, match=r"the teacher takes 1x8x8 images into 5 classes; digits has 1x8x8 images "
                                          r"and 10 classes"):
        search(tiny(tmp_path, distill_from=str(teacher)), progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("changes, message", [
    ({"distill_from": "original", "final_epochs": 0}, "--distill-from applies to the final comparison"),
    ({"distill_alpha": 1.5}, r"--distill-alpha must be in \[0, 1\], got 1.5"),
    ({"distill_temperature": 0.0}, "--distill-temperature must be a finite number > 0, got 0.0"),
])
def test_bad_distillation_settings(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        tiny(tmp_path, **changes).validate()
