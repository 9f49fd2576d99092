"""The per-field constraints of forgetlab.config: which values they accept, and how they say what is allowed."""

import math

import pytest

from forgetlab.constraints import Interval, ListOf, NonBlank, NonNegativeInt, Options, allowed

INTERVALS = [
    # (interval, accepted, rejected, description)
    (Interval(0, None, closed="neither"), [1e-12, 3, 1e300], [0, -1.0, math.inf, math.nan, True, "1"],
     "a number in the range (0, inf)"),
    (Interval(1, None, closed="left"), [1, 2.5], [0.999, 0], "a number in the range [1, inf)"),
    (Interval(0, 1, closed="neither"), [0.5], [0, 1, 1.5], "a number in the range (0, 1)"),
    (Interval(-360, 360, closed="both"), [-360, 0, 360], [-360.5, 361], "a number in the range [-360, 360]"),
    (Interval(None, 0, closed="right"), [-1e9, 0], [1e-9, -math.inf], "a number in the range (-inf, 0]"),
]


@pytest.mark.parametrize("interval, accepted, rejected, description", INTERVALS, ids=[str(i[0]) for i in INTERVALS])
def test_an_interval_accepts_finite_numbers_within_its_ends(interval, accepted, rejected, description):
    assert all(interval.is_satisfied_by(v) for v in accepted)
    assert not any(interval.is_satisfied_by(v) for v in rejected)
    assert str(interval) == description


def test_an_interval_names_its_ends_by_side():
    with pytest.raises(ValueError, match="closed"):
        Interval(0, 1, closed="open")


def test_choices_lists_and_ints_describe_what_is_allowed():
    assert str(Options("a", "b")) == "one of 'a', 'b'" and str(Options("all")) == "'all'"
    assert Options("a", "b").is_satisfied_by("b") and not Options("a", "b").is_satisfied_by("c")
    positive = ListOf(Interval(1, None, closed="left"), description="a list of positive ints")
    assert positive.is_satisfied_by([1, 64]) and positive.is_satisfied_by([])
    assert not positive.is_satisfied_by([64, 0]) and not positive.is_satisfied_by(3)
    probe = (NonNegativeInt(), Options("all"))
    assert allowed(probe) == "a non-negative int or 'all'"
    assert [any(c.is_satisfied_by(v) for c in probe) for v in (0, 20, "all", -1, 2.5, True, "some")] == [
        True, True, True, False, False, False, False]
    assert not NonBlank("experiment name").is_satisfied_by("  ") and str(NonBlank("name")) == "a non-empty name"

