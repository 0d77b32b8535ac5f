"""Scalars as milli-units, canonical ranges and sets (agora.core.values)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.core.errors import InvalidResource, ResourceArithmeticError
from agora.core.values import (
    MILLI,
    Kind,
    format_millis,
    format_ranges,
    format_set,
    format_value,
    make_ranges,
    make_set,
    millis_to_float,
    ranges_add,
    ranges_contains,
    ranges_count,
    ranges_subtract,
    ranges_take,
    scalar_to_millis,
    sets_add,
    value_quantity,
)
from tests.unit.resource_strategies import LAWS, ranges_from_points

# ------------------------------------------------------------------------------ scalars


@pytest.mark.parametrize(
    ("given_value", "millis"),
    [
        (0, 0),
        (1, 1000),
        (1.5, 1500),
        ("2.25", 2250),
        (0.1, 100),
        (0.001, 1),
        ("0.0001", 0),
        (1024, 1_024_000),
        ("  3 ", 3000),
        ("1e3", 1_000_000),
    ],
)
def test_scalar_to_millis(given_value, millis):
    assert scalar_to_millis(given_value) == millis


def test_scalar_arithmetic_is_exact():
    assert scalar_to_millis(0.1) + scalar_to_millis(0.2) == scalar_to_millis(0.3)
    assert scalar_to_millis("0.1") + scalar_to_millis("0.2") == scalar_to_millis("0.3")
    assert millis_to_float(scalar_to_millis(0.3)) == 0.3


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (-1, "must not be negative"),
        ("-0.5", "must not be negative"),
        (math.nan, "must be finite"),
        ("nan", "must be finite"),
        (math.inf, "must be finite"),
        ("-inf", "must be finite"),
        ("1e400", "must be finite"),
        (1e306, "too large"),
        ("abc", "expected a number"),
        ("", "expected a number"),
        (None, "expected a number"),
        (True, "expected a number"),
        ([1], "expected a number"),
    ],
)
def test_scalar_to_millis_refuses(bad, message):
    with pytest.raises(InvalidResource, match=message) as info:
        scalar_to_millis(bad, what="resource 'cpus'")
    assert "resource 'cpus'" in str(info.value)


@pytest.mark.parametrize(
    ("millis", "text"),
    [(0, "0"), (4000, "4"), (1500, "1.5"), (1250, "1.25"), (1, "0.001"), (10, "0.01"),
     (1_024_000, "1024"), (123_456, "123.456")],
)  # fmt: skip
def test_format_millis(millis, text):
    assert format_millis(millis) == text


@given(st.integers(0, 10**12))
def test_format_millis_round_trips(millis):
    assert scalar_to_millis(format_millis(millis)) == millis


# ------------------------------------------------------------------------------- ranges


def test_make_ranges_sorts_and_merges_adjacent():
    assert make_ranges([(6, 9), (1, 5)]) == ((1, 9),)
    assert make_ranges([(10, 12), (1, 2), (4, 4)]) == ((1, 2), (4, 4), (10, 12))
    assert make_ranges([]) == ()
    assert make_ranges([(0, 0)]) == ((0, 0),)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([(5, 1)], r"range \[5-1\] is reversed"),
        ([(1, 5), (3, 7)], r"ranges \[1-5\] and \[3-7\] overlap"),
        ([(1, 5), (5, 7)], "overlap"),
        ([(1, 5), (1, 5)], "overlap"),
        ([(-1, 5)], "must not be negative"),
        ([(1.5, 5)], "must be integers"),
        ([("1", 5)], "must be integers"),
        ([(True, 5)], "must be integers"),
    ],
)
def test_make_ranges_refuses(pairs, message):
    with pytest.raises(InvalidResource, match=message) as info:
        make_ranges(pairs, what="resource 'ports'")
    assert "resource 'ports'" in str(info.value)


def test_ranges_add_is_a_disjoint_union():
    assert ranges_add(((1, 5),), ((6, 9),)) == ((1, 9),)
    assert ranges_add(((1, 2),), ((8, 9),)) == ((1, 2), (8, 9))
    assert ranges_add((), ((1, 2),)) == ((1, 2),)
    with pytest.raises(ResourceArithmeticError, match=r"overlap at \[3-5\]"):
        ranges_add(((1, 5),), ((3, 7),))


def test_ranges_subtract_and_contains():
    a = ((1, 10), (20, 30))
    assert ranges_subtract(a, ((3, 4), (6, 7))) == ((1, 2), (5, 5), (8, 10), (20, 30))
    assert ranges_subtract(a, ((5, 25),)) == ((1, 4), (26, 30))
    assert ranges_subtract(a, ((0, 100),)) == ()
    assert ranges_subtract(a, ((11, 19),)) == a
    assert ranges_contains(a, ((2, 3), (25, 30)))
    assert not ranges_contains(a, ((9, 11),))
    assert not ranges_contains(a, ((31, 31),))
    assert ranges_contains(a, ())
    assert not ranges_contains((), ((1, 1),))


def test_ranges_count_take_and_format():
    assert ranges_count(((1, 5),)) == 5
    assert ranges_count(((31000, 32000),)) == 1001
    assert ranges_take(((1, 3), (10, 20)), 5) == ((1, 3), (10, 11))
    assert ranges_take(((1, 3),), 0) == ()
    assert ranges_take(((1, 3),), 9) == ((1, 3),)
    assert format_ranges(((1, 5), (7, 7))) == "[1-5, 7-7]"
    assert format_ranges(()) == "[]"


point_sets = st.sets(st.integers(0, 200), max_size=60)


@LAWS
@given(point_sets, point_sets)
def test_range_operations_match_a_set_model(xs, ys):
    a, b = ranges_from_points(xs), ranges_from_points(ys)

    def points(rs: tuple[tuple[int, int], ...]) -> set[int]:
        return {p for lo, hi in rs for p in range(lo, hi + 1)}

    assert points(a) == xs
    assert ranges_count(a) == len(xs)
    assert ranges_subtract(a, b) == ranges_from_points(xs - ys)
    assert ranges_contains(a, b) == (ys <= xs)
    if xs & ys:
        with pytest.raises(ResourceArithmeticError):
            ranges_add(a, b)
    else:
        assert ranges_add(a, b) == ranges_from_points(xs | ys)
    # canonical: sorted, non-overlapping, non-adjacent
    for (_, end), (begin, _) in itertools.pairwise(a):
        assert begin > end + 1


# --------------------------------------------------------------------------------- sets


def test_make_set():
    assert make_set(["b", "a"]) == frozenset({"a", "b"})
    assert make_set([]) == frozenset()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["a", "a"], "duplicate set item 'a'"),
        (["a", ""], "non-empty strings"),
        (["a", 3], "non-empty strings"),
    ],
)
def test_make_set_refuses(values, message):
    with pytest.raises(InvalidResource, match=message) as info:
        make_set(values, what="resource 'zones'")
    assert "resource 'zones'" in str(info.value)


def test_sets_add_refuses_double_counting():
    assert sets_add(frozenset("ab"), frozenset("c")) == frozenset("abc")
    with pytest.raises(ResourceArithmeticError, match=r"\['b'\] would be counted twice"):
        sets_add(frozenset("ab"), frozenset("bc"))


def test_value_quantity_and_format():
    assert value_quantity(Kind.SCALAR, 1500) == 1500
    assert value_quantity(Kind.RANGES, ((1, 5), (7, 8))) == 7 * MILLI
    assert value_quantity(Kind.SET, frozenset("abc")) == 3 * MILLI
    assert format_value(Kind.SCALAR, 2500) == "2.5"
    assert format_value(Kind.RANGES, ((1, 5),)) == "[1-5]"
    assert format_value(Kind.SET, frozenset({"b", "a"})) == "{a, b}"
    assert format_set(frozenset()) == "{}"
