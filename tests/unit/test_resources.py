"""`Resources`: merging rules, strict arithmetic, filters and transformations."""

from __future__ import annotations

import pytest

from agora.core.errors import ResourceArithmeticError
from agora.core.quantities import Quantities
from agora.core.resource_meta import DiskInfo, DiskSource, DiskSourceType, dynamic, static
from agora.core.resource_text import parse_resources
from agora.core.resources import EMPTY, Resources
from tests.unit.resource_strategies import items, ranges, scalar, volume

MOUNT_A = DiskInfo(source=DiskSource(DiskSourceType.MOUNT, "/mnt/a"))
PATH_A = DiskInfo(source=DiskSource(DiskSourceType.PATH, "/p/a"))
PATH_B = DiskInfo(source=DiskSource(DiskSourceType.PATH, "/p/b"))


def P(text: str) -> Resources:
    return parse_resources(text)


# ------------------------------------------------------------------------------ merging


def test_equal_metadata_merges():
    assert P("cpus:1") + P("cpus:2") == P("cpus:3")
    assert len(P("cpus:1") + P("cpus:2")) == 1
    two = scalar("cpus", 2, reservations=[dynamic("eng", "p")])
    assert two + two == scalar("cpus", 4, reservations=[dynamic("eng", "p")])
    assert P("ports:[1-5]") + P("ports:[6-10]") == P("ports:[1-10]")
    assert P("zones:{a}") + P("zones:{b}") == P("zones:{a,b}")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (P("cpus:1"), P("cpus(eng):1")),
        (P("cpus(eng):1"), scalar("cpus", 1, reservations=[dynamic("eng")])),
        (
            scalar("cpus", 1, reservations=[dynamic("eng", "alice")]),
            scalar("cpus", 1, reservations=[dynamic("eng", "bob")]),
        ),
        (
            scalar("cpus", 1, reservations=[dynamic("eng", None, (("k", "v"),))]),
            scalar("cpus", 1, reservations=[dynamic("eng", None, (("k", "w"),))]),
        ),
        (
            scalar("cpus", 1, reservations=[dynamic("eng")]),
            scalar("cpus", 1, reservations=[dynamic("eng"), dynamic("eng/web")]),
        ),
        (P("cpus:1"), scalar("cpus", 1, alloc="eng")),
        (scalar("cpus", 1, alloc="eng"), scalar("cpus", 1, alloc="ops")),
        (P("cpus:1"), scalar("cpus", 1, revocable=True)),
        (P("cpus:1"), scalar("cpus", 1, provider="rp1")),
        (P("disk:1"), scalar("disk", 1, disk=PATH_A)),
        (scalar("disk", 1, disk=PATH_A), scalar("disk", 1, disk=PATH_B)),
        (P("foo:1"), P("foo:{a}")),
    ],
)
def test_different_metadata_stays_apart(a, b):
    total = a + b
    assert len(total) == 2
    assert total - a == b
    assert total - b == a
    assert not a.contains(b)
    assert not b.contains(a)


def test_path_disks_with_equal_source_merge_but_mount_disks_never_do():
    assert scalar("disk", 1, disk=PATH_A) + scalar("disk", 2, disk=PATH_A) == scalar(
        "disk", 3, disk=PATH_A
    )
    a = scalar("disk", 100, disk=MOUNT_A)
    b = scalar("disk", 50, disk=MOUNT_A)
    whole = a + b  # two different disks that happen to have the same root
    assert len(whole) == 2
    assert whole.quantities() == Quantities({"disk": 150_000})
    with pytest.raises(ResourceArithmeticError, match="would be counted twice"):
        a + a


def test_raw_disks_merge_only_without_an_id():
    raw = DiskInfo(source=DiskSource(DiskSourceType.RAW))
    raw_id = DiskInfo(source=DiskSource(DiskSourceType.RAW, id="d1"))
    assert len(scalar("disk", 1, disk=raw) + scalar("disk", 2, disk=raw)) == 1
    with pytest.raises(ResourceArithmeticError):
        scalar("disk", 1, disk=raw_id) + scalar("disk", 1, disk=raw_id)


def test_volumes_never_merge_and_shared_volumes_count_copies():
    v1 = volume(10, "v1", [static("r")])
    v2 = volume(10, "v2", [static("r")])
    assert len(v1 + v2) == 2
    with pytest.raises(ResourceArithmeticError, match=r"v1.*would be counted twice"):
        v1 + v1
    s = volume(10, "s", [static("r")], shared=True)
    assert s + s == volume(10, "s", [static("r")], shared=True, copies=2)
    assert (s + s).quantities() == Quantities({"disk": 10_000})  # counted once
    assert (s + s) - s == s
    assert (s + s).contains(s)
    assert not s.contains(s + s)
    with pytest.raises(ResourceArithmeticError):
        s - (s + s)


# --------------------------------------------------------------------------- arithmetic


def test_addition_refuses_double_counting():
    with pytest.raises(ResourceArithmeticError, match=r"overlap at \[5-5\]"):
        P("ports:[1-5]") + P("ports:[5-9]")
    with pytest.raises(ResourceArithmeticError, match=r"\['b'\] would be counted twice"):
        P("zones:{a,b}") + P("zones:{b}")


def test_subtraction_is_strict():
    have = P("cpus:4;mem:1024;ports:[1-10];zones:{a,b}")
    assert have - P("cpus:1.5;ports:[3-4];zones:{a}") == P(
        "cpus:2.5;mem:1024;ports:[1-2,5-10];zones:{b}"
    )
    assert have - have == EMPTY
    for missing in ["cpus:5", "gpus:1", "ports:[10-11]", "zones:{c}", "cpus(eng):1"]:
        with pytest.raises(ResourceArithmeticError, match="cannot subtract"):
            have - P(missing)
        assert not have.contains(P(missing))


def test_subtraction_error_names_what_was_missing():
    with pytest.raises(ResourceArithmeticError) as info:
        P("cpus:1") - P("cpus:2")
    assert str(info.value) == "cannot subtract cpus:2 from cpus:1"


def test_saturating_sub_is_forgiving():
    have = P("cpus:4;ports:[1-10];zones:{a,b}")
    assert have.saturating_sub(P("cpus:5;gpus:1;ports:[5-20];zones:{b,c}")) == P(
        "ports:[1-4];zones:{a}"
    )
    s = volume(10, "s", [static("r")], shared=True, copies=2)
    assert s.saturating_sub(s + s) == EMPTY
    assert (s + s).saturating_sub(s) == s


def test_comparison_operators():
    small, big = P("cpus:1"), P("cpus:2;mem:1")
    assert small <= big
    assert big >= small
    assert not big <= small
    assert (small == 1) is False
    assert small != "cpus:1"


def test_sum():
    parts = [P("cpus:1"), P("cpus:2"), P("mem:3")]
    assert Resources.sum(parts) == P("cpus:3;mem:3")
    assert Resources.sum([]) == EMPTY


def test_empty():
    assert not EMPTY
    assert EMPTY.is_empty()
    assert len(EMPTY) == 0
    assert Resources() == EMPTY
    assert P("cpus:1") - P("cpus:1") == EMPTY
    assert hash(P("cpus:1") - P("cpus:1")) == hash(EMPTY)


def test_hash_and_eq_do_not_depend_on_history():
    a = P("cpus:1") + P("mem:2") + P("cpus:1")
    b = P("mem:2;cpus:2")
    assert a == b
    assert hash(a) == hash(b)
    assert {a: 1}[b] == 1
    c = P("cpus:3;mem:2") - P("cpus:1")
    assert c == a
    assert hash(c) == hash(a)


# ------------------------------------------------------------------------------ queries


def test_queries():
    r = (
        P("cpus:1;cpus(eng):2;ports:[1-5];zones:{a}")
        + ranges("ports", [(7, 8)], reservations=[dynamic("eng/web")])
        + items("zones", ["b"], alloc="ops")
    )
    assert r.scalar("cpus") == 3000
    assert r.scalar("gpus") == 0
    assert r.names() == {"cpus", "ports", "zones"}
    assert r.ranges("ports") == ((1, 5), (7, 8))
    assert r.ranges("vlans") == ()
    assert r.set_items("zones") == frozenset("ab")
    assert r.roles() == {"eng", "eng/web"}
    assert r.allocation_role() is None  # mixed
    assert scalar("cpus", 1, alloc="eng").allocation_role() == "eng"
    assert not r.has_atomic()
    assert (r + volume(1, "v", [static("r")])).has_atomic()
    assert r.has_any(lambda m: m.name == "zones")
    assert not r.has_any(lambda m: m.name == "gpus")


# ------------------------------------------------------------------------------ filters

ENG = dynamic("eng", "alice")


def cpus_reserved_to(role: str, amount: float = 1) -> Resources:
    return scalar("cpus", amount, reservations=[dynamic(role)])


def test_allocatable_to_includes_own_and_ancestor_reservations_only():
    unreserved = P("cpus:1")
    eng = cpus_reserved_to("eng", 2)
    eng_web = scalar("cpus", 3, reservations=[dynamic("eng"), dynamic("eng/web")])
    eng_web_db = scalar("cpus", 4, reservations=[dynamic("eng"), dynamic("eng/web/db")])
    eng_api = cpus_reserved_to("eng/api", 5)
    ops = P("cpus(ops):6")
    engineering = cpus_reserved_to("engineering", 7)
    everything = unreserved + eng + eng_web + eng_web_db + eng_api + ops + engineering

    assert everything.allocatable_to("eng/web") == unreserved + eng + eng_web
    assert everything.allocatable_to("eng") == unreserved + eng
    assert everything.allocatable_to("eng/web/db") == unreserved + eng + eng_web + eng_web_db
    assert everything.allocatable_to("ops") == unreserved + ops
    assert everything.allocatable_to("ops/ci") == unreserved + ops
    assert everything.allocatable_to("eng/web/db/x") == unreserved + eng + eng_web + eng_web_db
    assert everything.allocatable_to("eng/api") == unreserved + eng + eng_api
    assert everything.allocatable_to("other") == unreserved
    assert everything.allocatable_to("*") == unreserved
    # cached and stable
    assert everything.allocatable_to("eng") is everything.allocatable_to("eng")


def test_reserved_filters_by_innermost_role():
    refined = scalar("cpus", 3, reservations=[static("eng"), dynamic("eng/web")])
    r = P("cpus:1;mem(eng):2") + refined + cpus_reserved_to("ops")
    assert r.reserved() == r - P("cpus:1")
    assert r.reserved("eng") == P("mem(eng):2")
    assert r.reserved("eng/web") == refined
    assert r.reserved("nobody") == EMPTY
    assert r.unreserved() == P("cpus:1")
    assert r.refined() == refined


def test_volume_revocable_shared_and_scalar_filters():
    plain = P("cpus:1;ports:[1-2]")
    rev = scalar("cpus", 1, revocable=True)
    vol = volume(10, "v1", [static("r")])
    shared = volume(10, "v2", [static("r")], shared=True, copies=2)
    disk = P("disk(r):5")
    r = plain + rev + vol + shared + disk
    assert r.persistent_volumes() == vol + shared
    assert r.revocable() == rev
    assert r.non_revocable() == r - rev
    assert r.shared() == shared
    assert r.non_shared() == plain + rev + vol + disk
    assert r.scalars() == r - P("ports:[1-2]")
    assert r.non_scalars() == P("ports:[1-2]")
    assert r.named("disk") == vol + shared + disk
    assert plain.shared() == EMPTY
    assert plain.non_shared() is plain
    assert r.filter(lambda m: True) is r


# ---------------------------------------------------------------------------- allocation


def test_allocate_and_unallocate_round_trip():
    r = P("cpus:1;mem(eng):2;ports:[1-3]") + volume(1, "s", [static("eng")], shared=True)
    tagged = r.allocate("eng/web")
    assert all(e.meta.allocation_role == "eng/web" for e in tagged)
    assert tagged != r
    assert tagged.unallocate() == r
    assert tagged.unallocate() is r  # remembered
    assert tagged.allocate(None) == r
    assert tagged.allocations() == {"eng/web": tagged}
    assert r.allocations() == {None: r}
    assert r.unallocate() == r


def test_allocations_split_by_role():
    a = P("cpus:1;ports:[1-2]").allocate("a")
    b = P("cpus:2;ports:[3-4]").allocate("b")
    assert (a + b).allocations() == {"a": a, "b": b}
    assert EMPTY.allocations() == {}


def test_unallocate_merges_entries_that_differed_only_by_role():
    # Regression: unallocating used to keep one of the colliding entries and drop the rest.
    a = P("cpus:1;ports:[1-2]").allocate("a")
    b = P("cpus:2;ports:[3-4]").allocate("b")
    assert (a + b).unallocate() == P("cpus:3;ports:[1-4]")
    assert (a + b).allocate("c") == P("cpus:3;ports:[1-4]").allocate("c")
    s = volume(1, "s", [static("r")], shared=True)
    both = s.allocate("r") + s.allocate("r/x")
    assert both.unallocate() == s + s


# ----------------------------------------------------------------------- reservations


def test_push_pop_and_to_unreserved():
    r = P("cpus:1;ports:[1-2]")
    pushed = r.push_reservation(ENG)
    assert pushed == scalar("cpus", 1, reservations=[ENG]) + ranges(
        "ports", [(1, 2)], reservations=[ENG]
    )
    refined = pushed.push_reservation(dynamic("eng/web"))
    assert refined.roles() == {"eng/web"}
    assert refined.pop_reservation() == pushed
    assert refined.to_unreserved() == r
    assert pushed.pop_reservation() == r


def test_map_meta_merges_entries_that_become_equal():
    r = scalar("cpus", 1, reservations=[ENG]) + P("cpus:2")
    assert r.to_unreserved() == P("cpus:3")


# -------------------------------------------------------------------------------- shrink


def test_shrink_to_chops_scalars_ranges_and_sets():
    r = P("cpus:4;mem:100;ports:[1-10];zones:{a,b,c}")
    assert r.shrink_to({"cpus": 1500, "ports": 3000, "zones": 2000}) == P(
        "cpus:1.5;ports:[1-3];zones:{a,b}"
    )
    assert r.shrink_to({"cpus": 1500}, absent_unlimited=True) == P(
        "cpus:1.5;mem:100;ports:[1-10];zones:{a,b,c}"
    )
    assert r.shrink_to(r.quantities()) is r
    assert r.shrink_to({}) == EMPTY


def test_shrink_to_less_than_one_item_keeps_nothing():
    # Regression: a budget under one port used to leave an empty `ports` entry behind.
    shrunk = P("ports:[1-10];zones:{a}").shrink_to({"ports": 500, "zones": 999})
    assert shrunk == EMPTY
    assert not shrunk


def test_shrink_to_keeps_atomic_entries_whole_or_not_at_all():
    mount = scalar("disk", 100, disk=MOUNT_A)
    vol = volume(10, "v", [static("r")])
    r = mount + vol + P("disk:50")
    assert r.shrink_to({"disk": 60_000}) == vol + P("disk:50")
    assert r.shrink_to({"disk": 5_000}) == P("disk:5")
    assert r.shrink_to({"disk": 160_000}) == r


def test_sorted_entries_order():
    r = P("zones:{a};ports:[1-2];disk:1;mem:1;gpus:1;cpus:1;aaa:1;cpus(eng):1")
    names = [e.meta.name for e in r.sorted_entries()]
    assert names == ["cpus", "cpus", "gpus", "mem", "disk", "ports", "aaa", "zones"]


def test_cached_memoises():
    r = P("cpus:1")
    calls = []

    def compute():
        calls.append(1)
        return P("mem:1")

    assert r.cached("k", compute) == P("mem:1")
    assert r.cached("k", compute) == P("mem:1")
    assert calls == [1]
