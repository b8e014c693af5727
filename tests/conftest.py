import random

import pytest

from netadjust.models import get_arch


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
