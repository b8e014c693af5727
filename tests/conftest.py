import random
import shutil

import pytest

from netadjust.models import get_arch

# A complete search of one round in a few seconds (digits, ResNet-20 at a quarter width).
TINY = dict(width_mult=0.25, train_subset=128, rounds=1, k=2, epochs=1, batch_size=64, fur_batch_size=128,
            repeats=2, final_epochs=1)


@pytest.fixture
def rng():
    return random.Random(1234)


def random_widths(arch, rng, low=1, high=40):
    return {k: rng.randint(low, high) for k in arch.default_widths()}


def small_arch(name, **kw):
    """An arch of the family `name` at a small input size, for fast tests."""
    kw.setdefault("num_classes", 7)
    kw.setdefault("in_channels", 2)
    kw.setdefault("input_size", 8)
    return get_arch(name, **kw)


@pytest.fixture(scope="session")
def tiny_run_once(tmp_path_factory):
    from netadjust.config import SearchConfig
    from netadjust.search import search

    run = tmp_path_factory.mktemp("tiny") / "run"
    search(SearchConfig.from_dict({**TINY, "out": str(run)}), progress=False)
    return run


@pytest.fixture
def tiny_run(tiny_run_once, tmp_path):
    """A private copy of one finished TINY search (tests may damage or continue it)."""
    shutil.copytree(tiny_run_once, tmp_path / "run")
    return tmp_path / "run"
