"""The three Mesos value kinds as canonical, hashable Python values.

* scalar: an `int` of milli-units, so `0.1 + 0.2 == 0.3` holds exactly (Mesos keeps
  three decimals too);
* ranges: a tuple of inclusive `(begin, end)` pairs, sorted, with neither overlaps nor
  adjacency (`[1-5, 6-9]` is stored as `[1-9]`);
* set: a `frozenset` of strings.

Canonical forms make equality and hashing structural, which the allocator relies on
to compare refused and offered resources cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum

from agora.core.errors import InvalidResource, ResourceArithmeticError

MILLI = 1000

Range = tuple[int, int]
Ranges = tuple[Range, ...]
SetItems = frozenset[str]
Value = int | Ranges | SetItems


class Kind(StrEnum):
    SCALAR = "SCALAR"
    RANGES = "RANGES"
    SET = "SET"


# ----------------------------------------------------------------------------- scalars


def scalar_to_millis(value: object, what: str = "scalar") -> int:
    """Convert a user-supplied number to milli-units, refusing what Mesos would strip."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidResource(f"{what}: expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise InvalidResource(f"{what}: expected a number, got {value!r}") from None
    if math.isnan(number) or math.isinf(number):
        raise InvalidResource(f"{what}: value must be finite, got {value!r}")
    if number < 0:
        raise InvalidResource(f"{what}: value must not be negative, got {value!r}")
    millis = number * MILLI
    if math.isinf(millis):
        raise InvalidResource(f"{what}: value is too large, got {value!r}")
    return round(millis)


def millis_to_float(millis: int) -> float:
    return millis / MILLI


def format_millis(millis: int) -> str:
    """Shortest decimal text for a milli value: 4000 -> '4', 1500 -> '1.5'."""
    whole, frac = divmod(millis, MILLI)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:03d}".rstrip("0")


# ------------------------------------------------------------------------------ ranges


def make_ranges(pairs: Iterable[tuple[int, int]], what: str = "ranges") -> Ranges:
    """Validate user-supplied ranges and return their canonical form.

    Reversed, negative or overlapping input ranges are refused; adjacent ones merge.
    """
    checked: list[Range] = []
    for begin, end in pairs:
        if isinstance(begin, bool) or isinstance(end, bool):
            raise InvalidResource(f"{what}: range bounds must be integers")
        if not isinstance(begin, int) or not isinstance(end, int):
            raise InvalidResource(f"{what}: range bounds must be integers, got [{begin}-{end}]")
        if begin < 0 or end < 0:
            raise InvalidResource(f"{what}: range [{begin}-{end}] must not be negative")
        if begin > end:
            raise InvalidResource(f"{what}: range [{begin}-{end}] is reversed (begin > end)")
        checked.append((begin, end))
    checked.sort()
    merged: list[Range] = []
    for begin, end in checked:
        if merged and begin <= merged[-1][1]:
            last = merged[-1]
            raise InvalidResource(
                f"{what}: ranges [{last[0]}-{last[1]}] and [{begin}-{end}] overlap"
            )
        if merged and begin == merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    return tuple(merged)


def ranges_count(ranges: Ranges) -> int:
    return sum(end - begin + 1 for begin, end in ranges)


def ranges_add(a: Ranges, b: Ranges) -> Ranges:
    """Disjoint union; overlapping ranges would count a port twice and are refused."""
    if not a:
        return b
    if not b:
        return a
    merged: list[Range] = []
    for begin, end in sorted(a + b):
        if merged and begin <= merged[-1][1]:
            raise ResourceArithmeticError(
                f"ranges overlap at [{max(begin, merged[-1][0])}-{min(end, merged[-1][1])}]"
            )
        if merged and begin == merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    return tuple(merged)


def ranges_contains(a: Ranges, b: Ranges) -> bool:
    """True when every item of `b` is in `a` (both canonical)."""
    if not b:
        return True
    i = 0
    n = len(a)
    for begin, end in b:
        while i < n and a[i][1] < begin:
            i += 1
        if i == n or a[i][0] > begin or a[i][1] < end:
            return False
    return True


def ranges_subtract(a: Ranges, b: Ranges) -> Ranges:
    """Items of `a` not in `b` (`b` need not be contained in `a`)."""
    if not b:
        return a
    out: list[Range] = []
    j = 0
    m = len(b)
    for begin, end in a:
        cur = begin
        while j < m and b[j][1] < cur:
            j += 1
        k = j
        while k < m and b[k][0] <= end:
            if b[k][0] > cur:
                out.append((cur, b[k][0] - 1))
            cur = max(cur, b[k][1] + 1)
            if cur > end:
                break
            k += 1
        if cur <= end:
            out.append((cur, end))
    return tuple(out)


def ranges_take(ranges: Ranges, count: int) -> Ranges:
    """The first `count` items of `ranges`, in order (used to shrink a range resource)."""
    out: list[Range] = []
    left = count
    for begin, end in ranges:
        if left <= 0:
            break
        size = end - begin + 1
        if size <= left:
            out.append((begin, end))
            left -= size
        else:
            out.append((begin, begin + left - 1))
            left = 0
    return tuple(out)


def format_ranges(ranges: Ranges) -> str:
    return "[" + ", ".join(f"{b}-{e}" for b, e in ranges) + "]"


# -------------------------------------------------------------------------------- sets


def make_set(items: Iterable[object], what: str = "set") -> SetItems:
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str) or not item:
            raise InvalidResource(f"{what}: set items must be non-empty strings, got {item!r}")
        if item in seen:
            raise InvalidResource(f"{what}: duplicate set item {item!r}")
        seen.add(item)
    return frozenset(seen)


def sets_add(a: SetItems, b: SetItems) -> SetItems:
    common = a & b
    if common:
        raise ResourceArithmeticError(f"set items {sorted(common)} would be counted twice")
    return a | b


def format_set(items: SetItems) -> str:
    return "{" + ", ".join(sorted(items)) + "}"


# ------------------------------------------------------------------------- generic ops


def value_quantity(kind: Kind, value: Value) -> int:
    """The quantity of a value in milli-units (ranges and sets count items)."""
    if kind is Kind.SCALAR:
        return value  # type: ignore[return-value]
    if kind is Kind.RANGES:
        return ranges_count(value) * MILLI  # type: ignore[arg-type]
    return len(value) * MILLI  # type: ignore[arg-type]


def format_value(kind: Kind, value: Value) -> str:
    if kind is Kind.SCALAR:
        return format_millis(value)  # type: ignore[arg-type]
    if kind is Kind.RANGES:
        return format_ranges(value)  # type: ignore[arg-type]
    return format_set(value)  # type: ignore[arg-type]
