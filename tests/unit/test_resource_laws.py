"""Algebraic laws of `Resources`, checked on generated collections of every shape:
scalars, ranges, sets, static/dynamic/refined reservations, allocation roles,
revocable entries, MOUNT and PATH disks, persistent and shared volumes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.core.errors import InvalidResource, ResourceArithmeticError
from agora.core.quantities import Quantities
from agora.core.resource_json import ResourceFormat, resources_from_json, resources_to_json
from agora.core.resource_meta import Resource, dynamic, is_atomic
from agora.core.resource_text import format_resources, parse_resources
from agora.core.resources import EMPTY, Resources
from agora.core.roles import ancestors
from agora.core.values import Kind, value_quantity
from tests.unit.resource_strategies import (
    LAWS,
    ROLES,
    disjoint_groups,
    entry_lists,
    parts_of,
    resources,
)


def common_shared(a: Resources, b: Resources) -> Resources:
    """Shared volumes present in both (each counted once in `quantities`)."""
    keys = {(e.meta, e.value) for e in a.shared()}
    return Resources(Resource(e.meta, e.value) for e in b.shared() if (e.meta, e.value) in keys)


# ----------------------------------------------------------------------------- addition


@LAWS
@given(disjoint_groups(3))
def test_addition_laws(groups):
    a, b, c = groups
    # a + b - b == a (the sum is defined: only shared volumes repeat across groups)
    assert a + b - b == a
    assert a + b - a == b
    # commutative, associative, with EMPTY as the neutral element
    assert a + b == b + a
    assert hash(a + b) == hash(b + a)
    assert (a + b) + c == a + (b + c)
    assert a + EMPTY == a == EMPTY + a
    assert Resources.sum([a, b, c]) == a + b + c
    # the sum contains each part
    assert (a + b).contains(b)
    assert (a + b).contains(a)
    assert b <= a + b
    assert a + b >= a
    # quantities are additive; a shared volume counts once however many copies
    common = common_shared(a, b)
    assert (a + b).quantities() + common.quantities() == a.quantities() + b.quantities()
    assert (a + b).non_shared().quantities() == (
        a.non_shared().quantities() + b.non_shared().quantities()
    )
    assert (a + b).scalar_quantities() + common.scalar_quantities() == (
        a.scalar_quantities() + b.scalar_quantities()
    )


@LAWS
@given(resources(min_size=1))
def test_adding_a_collection_to_itself_counts_no_port_item_or_volume_twice(r):
    exclusive = r.non_shared().filter(lambda m: m.kind is not Kind.SCALAR or is_atomic(m))
    if exclusive:
        with pytest.raises(ResourceArithmeticError):
            r + r
        with pytest.raises(ResourceArithmeticError):
            r + exclusive
    else:
        doubled = r + r
        assert doubled.contains(r)
        assert doubled - r == r
        assert doubled.quantities() == r.quantities() + r.non_shared().quantities()


# --------------------------------------------------------------------- containment


@LAWS
@given(st.data())
def test_contains_agrees_with_subtraction(data):
    a, extra = data.draw(disjoint_groups(2), label="a, extra")
    # Unrelated, wholly inside, or partly inside and partly outside `a`.
    b = data.draw(st.one_of(resources(), parts_of(a), parts_of(a + extra)), label="b")
    try:
        difference = a - b
    except ResourceArithmeticError:
        assert not a.contains(b)
        assert not b <= a
    else:
        assert a.contains(b)
        assert difference + b == a
        assert a.saturating_sub(b) == difference
        assert a.quantities().covers(b.quantities())
    # Mesos's forgiving subtraction always stays inside `a`.
    assert a.contains(a.saturating_sub(b))
    # Equality is mutual containment, and equal values hash alike.
    if a == b:
        assert hash(a) == hash(b)
    assert (a == b) == (a.contains(b) and b.contains(a))


@LAWS
@given(entry_lists(), st.randoms(use_true_random=False))
def test_identity_and_hash(entries, rnd):
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    r, same = Resources(entries), Resources(shuffled)
    # The order entries are given in does not matter.
    assert r == same
    assert hash(r) == hash(same)
    assert len({r, same}) == 1
    assert r.sorted_entries() == same.sorted_entries()
    assert format_resources(r) == format_resources(same)
    # Rebuilding from its own entries gives the same value.
    assert Resources(r) == r
    assert len(list(r)) == len(r)
    assert bool(r) == (len(r) > 0) == (not r.is_empty())
    # Containment is reflexive; subtraction of oneself empties.
    assert r.contains(r)
    assert r.contains(EMPTY)
    assert r >= same
    assert r - same == EMPTY
    assert r - EMPTY == r
    # Quantities are the sum of the entries' amounts (shared volumes once).
    expected: dict[str, int] = {}
    for m, value, _copies in r:
        expected[m.name] = expected.get(m.name, 0) + value_quantity(m.kind, value)
    assert r.quantities() == Quantities(expected)
    for name in r.scalars().names():
        assert r.scalar(name) == r.quantities()[name]
    assert r.scalar_quantities() == r.scalars().quantities()
    assert r.scalar_quantities(unreserved_only=True) == r.scalars().unreserved().quantities()
    assert r.scalar_quantities(include_revocable=False) == r.scalars().non_revocable().quantities()


# --------------------------------------------------------------------- round trips


@LAWS
@given(resources(simple=True))
def test_text_round_trip(r):
    text = format_resources(r)
    assert parse_resources(text) == r
    assert format_resources(parse_resources(text)) == text


@LAWS
@given(resources())
def test_json_round_trip_in_every_format_that_can_express_it(r):
    refined = any(len(e.meta.reservations) > 1 for e in r)
    for fmt in ResourceFormat:
        if fmt is ResourceFormat.PRE_REFINEMENT and refined:
            with pytest.raises(InvalidResource, match="refined reservation"):
                resources_to_json(r, fmt)
            continue
        encoded = json.loads(json.dumps(resources_to_json(r, fmt)))
        assert resources_from_json(encoded) == r
    # The text parser also takes the JSON form (like --resources).
    assert parse_resources(json.dumps(resources_to_json(r))) == r
    # Endpoint format = post-refinement format plus the legacy fields where expressible.
    post = resources_to_json(r, ResourceFormat.POST_REFINEMENT)
    endpoint = resources_to_json(r, ResourceFormat.ENDPOINT)
    assert len(post) == len(endpoint) == sum(e.copies for e in r)
    for p, e in zip(post, endpoint, strict=True):
        assert {k: v for k, v in e.items() if k not in ("role", "reservation")} == p
        if len(p.get("reservations", [])) <= 1:
            assert "role" in e
        else:
            assert "role" not in e
            assert "reservation" not in e


# ------------------------------------------------------------------------- filters


@LAWS
@given(resources(), st.sampled_from(ROLES))
def test_filters(r, role):
    assert r.reserved() + r.unreserved() == r
    assert r.revocable() + r.non_revocable() == r
    assert r.shared() + r.non_shared() == r
    assert r.scalars() + r.non_scalars() == r
    assert all(e.meta.is_persistent_volume for e in r.persistent_volumes())
    assert all(e.meta.shared for e in r.shared())
    assert all(e.meta.revocable for e in r.revocable())
    assert all(len(e.meta.reservations) > 1 for e in r.refined())
    assert Resources.sum(r.named(n) for n in r.names()) == r
    assert Resources.sum(r.reserved(x) for x in r.roles()) == r.reserved()
    # allocatable_to: unreserved, own and ancestors' reservations; never others'.
    allowed = {role, *ancestors(role)}
    got = r.allocatable_to(role)
    assert r.contains(got)
    for e in r:
        keep = not e.meta.reservations or e.meta.reservations[-1].role in allowed
        assert got.contains(Resources([e])) == keep
    assert got.contains(r.unreserved())
    assert got.contains(r.reserved(role))


# ---------------------------------------------------------------------- allocation


@LAWS
@given(resources(), st.sampled_from(ROLES))
def test_allocation_and_reservation_round_trips(r, role):
    # unallocate keeps every amount, whatever mix of allocation roles there was
    plain = r.unallocate()
    assert all(e.meta.allocation_role is None for e in plain)
    assert plain.non_shared().quantities() == r.non_shared().quantities()
    parts = r.allocations()
    assert Resources.sum(parts.values()) == r
    assert Resources.sum(p.unallocate() for p in parts.values()) == plain
    for part_role, part in parts.items():
        assert all(e.meta.allocation_role == part_role for e in part)
    # allocate / unallocate round trip
    tagged = plain.allocate(role)
    assert all(e.meta.allocation_role == role for e in tagged)
    assert tagged.allocation_role() == (role if tagged else None)
    assert tagged.allocations() == ({role: tagged} if tagged else {})
    assert tagged.unallocate() == plain
    assert tagged.quantities() == plain.quantities()
    # push / pop reservation round trip
    base = r.unreserved().non_revocable()
    pushed = base.push_reservation(dynamic(role, "alice"))
    assert all(e.meta.reservation_role == role for e in pushed)
    assert pushed.pop_reservation() == base
    assert pushed.to_unreserved() == base


# --------------------------------------------------------------------------- shrink


@LAWS
@given(
    resources(),
    st.dictionaries(
        st.sampled_from(["cpus", "mem", "disk", "ports", "zones"]), st.integers(0, 5_000_000)
    ),
)
def test_shrink_to_stays_within_target(r, target):
    small = r.shrink_to(target)
    assert r.contains(small)
    assert set(small.names()) <= set(target)
    for name, amount in small.quantities().items():
        assert amount <= target[name]
    assert all(e.value for e in small)  # no empty entries left behind
    loose = r.shrink_to(target, absent_unlimited=True)
    assert r.contains(loose)
    assert loose.contains(small)
    for name in r.names() - set(target):
        assert loose.named(name) == r.named(name)
    assert r.shrink_to(r.quantities()) == r
