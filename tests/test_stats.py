"""netadjust.stats against closed forms: Student's t has an elementary CDF for 1, 2 and 3 degrees of
freedom, so the paired t test's p-value can be checked exactly rather than against a table."""

import math

import pytest

from netadjust.stats import paired_p_value


def two_sided_p(t: float, df: int) -> float:
    """P(|T| >= t) for Student's t, from its closed-form CDF (df 1, 2 or 3)."""
    if df == 1:
        return 1 - 2 / math.pi * math.atan(t)
    if df == 2:
        return 1 - t / math.sqrt(2 + t * t)
    u = t / math.sqrt(3)
    return 1 - 2 / math.pi * (u / (1 + u * u) + math.atan(u))


@pytest.mark.parametrize("diffs", [(3.0, 1.0), (1.0, 0.0, 2.0), (1.0, 2.0, 3.0, 4.0), (0.5, -0.2, 0.1, 0.9)])
def test_paired_p_value_matches_the_closed_form(diffs):
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    expected = two_sided_p(abs(mean) / (sd / math.sqrt(n)), n - 1)
    base = [10.0 * i for i in range(n)]  # the shared part of each pair cancels
    a = [x + d for x, d in zip(base, diffs)]
    assert paired_p_value(a, base) == pytest.approx(expected, abs=1e-9)
    assert paired_p_value(base, a) == pytest.approx(expected, abs=1e-9)  # two-sided: the order does not matter


def test_paired_p_value_edge_cases_are_exact():
    assert paired_p_value([1.0, 2.0], [1.0, 2.0]) == 1.0  # no difference at all
    assert paired_p_value([2.0, 3.0], [1.0, 2.0]) == 0.0  # the same difference on every pair
    assert paired_p_value([1.0], [0.0]) is None  # one pair has no spread to test against
    with pytest.raises(ValueError, match="equal lengths, got 2 and 3"):
        paired_p_value([1.0, 2.0], [1.0, 2.0, 3.0])
