"""Speculative offer operations: RESERVE, UNRESERVE, CREATE, DESTROY."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.core.errors import InsufficientResources, InvalidResource, OperationError
from agora.core.operations import (
    Conversion,
    Create,
    Destroy,
    Reserve,
    Unreserve,
    apply_operation,
    conversion,
    operation_name,
)
from agora.core.resource_meta import (
    DiskInfo,
    DiskSource,
    DiskSourceType,
    Resource,
    dynamic,
    static,
)
from agora.core.resource_text import parse_resources
from agora.core.resources import EMPTY, Resources
from tests.unit.resource_strategies import (
    LAWS,
    ROLES,
    meta,
    parts_of,
    reservation_stacks,
    resources,
    scalar,
    volume,
    volume_disk,
)

ENG = dynamic("eng", "alice")
WEB = dynamic("eng/web", "bob")


def P(text: str) -> Resources:
    return parse_resources(text)


AGENT = P("cpus:8;mem:4096;disk:1000;ports:[31000-32000]")


# ------------------------------------------------------------------ RESERVE / UNRESERVE


def test_reserve_then_unreserve_gives_back_the_original():
    want = P("cpus:2;mem:512;ports:[31000-31009]").push_reservation(ENG)
    reserved = apply_operation(AGENT, Reserve(want))
    assert reserved == P("cpus:6;mem:3584;disk:1000;ports:[31010-32000]") + want
    assert reserved.reserved("eng") == want
    assert apply_operation(reserved, Unreserve(want)) == AGENT


def test_reserving_twice_merges_and_partial_unreserve_is_allowed():
    one = P("cpus:1").push_reservation(ENG)
    twice = apply_operation(apply_operation(AGENT, Reserve(one)), Reserve(one))
    assert twice.reserved("eng") == P("cpus:2").push_reservation(ENG)
    partial = apply_operation(twice, Unreserve(one))
    assert partial == apply_operation(AGENT, Reserve(one))


def test_refinement_pushes_and_unreserve_pops_back():
    eng_total = apply_operation(AGENT, Reserve(P("cpus:4;mem:1024").push_reservation(ENG)))
    refined = P("cpus:1;mem:256").push_reservation(ENG).push_reservation(WEB)
    after = apply_operation(eng_total, Reserve(refined))
    assert after.reserved("eng/web") == refined
    assert after.reserved("eng") == P("cpus:3;mem:768").push_reservation(ENG)
    assert after.refined() == refined
    assert apply_operation(after, Unreserve(refined)) == eng_total
    # Refinement may skip levels.
    deep = P("cpus:1").push_reservation(ENG).push_reservation(dynamic("eng/web/db"))
    assert apply_operation(eng_total, Reserve(deep)).reserved("eng/web/db") == deep


def test_refining_a_static_reservation():
    total = P("cpus(eng):2")
    refined = P("cpus(eng):1").push_reservation(WEB)
    after = apply_operation(total, Reserve(refined))
    assert after == P("cpus(eng):1") + refined
    assert apply_operation(after, Unreserve(refined)) == total


def test_reserve_keeps_the_allocation_role():
    offered = AGENT.allocate("eng")
    want = P("cpus:1").push_reservation(ENG).allocate("eng")
    after = apply_operation(offered, Reserve(want))
    assert after.allocation_role() == "eng"
    assert after.unallocate() == apply_operation(AGENT, Reserve(want.unallocate()))


def test_reserve_with_an_explicit_source():
    want = P("cpus:1").push_reservation(ENG)
    op = Reserve(want, source=P("cpus:1"))
    assert conversion(op) == Conversion(P("cpus:1"), want)
    assert apply_operation(AGENT, op) == AGENT - P("cpus:1") + want


def test_reserve_refusals():
    with pytest.raises(OperationError, match="RESERVE: no resources given"):
        apply_operation(AGENT, Reserve(EMPTY))
    with pytest.raises(OperationError, match="RESERVE: resource 'cpus' carries no reservation"):
        apply_operation(AGENT, Reserve(P("cpus:1")))
    with pytest.raises(OperationError, match="'cpus' must carry a DYNAMIC reservation on top"):
        apply_operation(AGENT, Reserve(P("cpus(eng):1")))
    with pytest.raises(OperationError, match="all resources must be reserved to one role"):
        apply_operation(
            AGENT,
            Reserve(
                P("cpus:1").push_reservation(ENG) + P("mem:1").push_reservation(dynamic("ops"))
            ),
        )
    vol = volume(10, "v", [ENG])
    with pytest.raises(OperationError, match="a persistent volume cannot be reserved again"):
        apply_operation(vol, Reserve(vol))


def test_reserve_revocable_is_refused():
    rev = scalar("cpus", 1, revocable=True)
    with pytest.raises(OperationError, match="revocable resource 'cpus' cannot be reserved"):
        apply_operation(rev, Reserve(rev.push_reservation(ENG)))
    # ...and a revocable reserved entry cannot even be written down.
    with pytest.raises(InvalidResource, match="revocable resources cannot be reserved"):
        scalar("cpus", 1, revocable=True, reservations=[ENG])


def test_reserve_more_than_available_is_insufficient():
    with pytest.raises(InsufficientResources, match="RESERVE: needs cpus") as info:
        apply_operation(AGENT, Reserve(P("cpus:9").push_reservation(ENG)))
    assert isinstance(info.value, OperationError)
    with pytest.raises(InsufficientResources):
        apply_operation(AGENT, Reserve(P("gpus:1").push_reservation(ENG)))
    # A refinement needs the parent's reservation, not unreserved resources.
    with pytest.raises(InsufficientResources):
        apply_operation(AGENT, Reserve(P("cpus:1").push_reservation(ENG).push_reservation(WEB)))


def test_unreserve_refusals():
    with pytest.raises(OperationError, match="UNRESERVE: no resources given"):
        apply_operation(AGENT, Unreserve(EMPTY))
    with pytest.raises(OperationError, match="UNRESERVE: resource 'cpus' is not reserved"):
        apply_operation(AGENT, Unreserve(P("cpus:1")))
    static_cpus = P("cpus(eng):4")
    with pytest.raises(
        OperationError, match="UNRESERVE: static reservation of 'cpus' cannot be unreserved"
    ):
        apply_operation(static_cpus, Unreserve(P("cpus(eng):1")))
    reserved = apply_operation(AGENT, Reserve(P("cpus:1").push_reservation(ENG)))
    with pytest.raises(InsufficientResources, match="UNRESERVE"):
        apply_operation(reserved, Unreserve(P("cpus:2").push_reservation(ENG)))
    with pytest.raises(InsufficientResources):  # other principal: a different reservation
        apply_operation(reserved, Unreserve(P("cpus:1").push_reservation(dynamic("eng", "eve"))))


def test_unreserve_a_disk_holding_a_volume_is_refused():
    disk = P("disk:100").push_reservation(ENG)
    with_volume = apply_operation(disk, Create(volume(100, "v1", [ENG])))
    # Unreserving the volume itself: destroy it first.
    with pytest.raises(OperationError, match="disk holds persistent volume 'v1'; destroy it first"):
        apply_operation(with_volume, Unreserve(volume(100, "v1", [ENG])))
    # Unreserving the disk under it: that disk is no longer plain reserved disk.
    with pytest.raises(InsufficientResources):
        apply_operation(with_volume, Unreserve(disk))
    # After DESTROY it can be unreserved.
    destroyed = apply_operation(with_volume, Destroy(volume(100, "v1", [ENG])))
    assert apply_operation(destroyed, Unreserve(disk)) == P("disk:100")


# ---------------------------------------------------------------------- CREATE / DESTROY


def test_create_then_destroy_gives_back_the_original():
    total = AGENT + P("disk(eng):500")
    vol = volume(200, "v1", [static("eng")], principal="alice")
    created = apply_operation(total, Create(vol))
    assert created == AGENT + P("disk(eng):300") + vol
    assert created.persistent_volumes() == vol
    assert apply_operation(created, Destroy(vol)) == total


def test_create_on_a_path_disk_keeps_the_source():
    source = DiskSource(DiskSourceType.PATH, "/data")
    plain = scalar("disk", 100, reservations=[ENG], disk=DiskInfo(source=source))
    vol = scalar(
        "disk",
        100,
        reservations=[ENG],
        disk=volume_disk("v1", source=source),
    )
    created = apply_operation(plain, Create(vol))
    assert created == vol
    assert apply_operation(created, Destroy(vol)) == plain


def test_create_a_shared_volume():
    total = P("disk(eng):100")
    shared = volume(60, "s1", [static("eng")], shared=True)
    created = apply_operation(total, Create(shared))
    assert created == P("disk(eng):40") + shared
    assert created.shared() == shared
    assert apply_operation(created, Destroy(shared)) == total


def test_create_refusals():
    total = P("disk(eng):100;disk:100;cpus(eng):1")
    with pytest.raises(OperationError, match="CREATE: no volumes given"):
        apply_operation(total, Create(EMPTY))
    with pytest.raises(OperationError, match="CREATE: resource 'disk' is not a persistent volume"):
        apply_operation(total, Create(P("disk(eng):10")))
    # A volume on unreserved disk cannot even be written down...
    with pytest.raises(InvalidResource, match="cannot be created from unreserved disk"):
        volume(10, "v", [])
    # ...and a reserved volume cannot be carved out of unreserved disk.
    with pytest.raises(InsufficientResources, match="CREATE: needs disk"):
        apply_operation(P("disk:100"), Create(volume(10, "v", [static("eng")])))
    with pytest.raises(InsufficientResources):
        apply_operation(total, Create(volume(101, "v", [static("eng")])))
    with pytest.raises(InsufficientResources):  # reserved to another role
        apply_operation(total, Create(volume(10, "v", [static("ops")])))


def test_create_with_a_persistence_id_in_use():
    total = P("disk(eng):100")
    created = apply_operation(total, Create(volume(10, "v1", [static("eng")])))
    with pytest.raises(OperationError, match="CREATE: persistence id 'v1' is already in use"):
        apply_operation(created, Create(volume(20, "v1", [static("eng")])))
    # The same id in another role is a different volume.
    other = apply_operation(created + P("disk(ops):50"), Create(volume(20, "v1", [static("ops")])))
    assert len(other.persistent_volumes()) == 2


def test_create_the_same_id_twice_in_one_operation():
    two = volume(10, "v1", [static("eng")]) + scalar(
        "disk",
        5,
        reservations=[static("eng")],
        disk=volume_disk("v1", principal="p"),
    )
    with pytest.raises(OperationError, match="CREATE: persistence id 'v1' is given twice"):
        apply_operation(P("disk(eng):100"), Create(two))
    shared = volume(10, "s", [static("eng")], shared=True, copies=2)
    with pytest.raises(OperationError, match="persistence id 's' is given twice"):
        apply_operation(P("disk(eng):100"), Create(shared))


def test_destroy_refusals():
    with pytest.raises(OperationError, match="DESTROY: no volumes given"):
        apply_operation(AGENT, Destroy(EMPTY))
    with pytest.raises(OperationError, match="DESTROY: resource 'disk' is not a persistent volume"):
        apply_operation(AGENT, Destroy(P("disk:1")))
    with pytest.raises(InsufficientResources, match="DESTROY"):
        apply_operation(P("disk(eng):10"), Destroy(volume(10, "v1", [static("eng")])))


def test_operation_names():
    assert operation_name(Reserve(EMPTY)) == "RESERVE"
    assert operation_name(Unreserve(EMPTY)) == "UNRESERVE"
    assert operation_name(Create(EMPTY)) == "CREATE"
    assert operation_name(Destroy(EMPTY)) == "DESTROY"


def test_operations_do_not_change_their_input():
    before = P("cpus:2")
    apply_operation(before, Reserve(P("cpus:1").push_reservation(ENG)))
    assert before == P("cpus:2")


# -------------------------------------------------------------------------------- laws


@LAWS
@given(st.data(), st.sampled_from(ROLES), st.sampled_from([None, "alice"]))
def test_reserve_unreserve_round_trip_law(data, role, principal):
    total = data.draw(resources(), label="total")
    part = data.draw(parts_of(total.unreserved().non_revocable()), label="part")
    if not part:
        return
    want = part.push_reservation(dynamic(role, principal))
    after = apply_operation(total, Reserve(want))
    assert after.contains(want)
    assert after.quantities() == total.quantities()
    assert apply_operation(after, Unreserve(want)) == total


@LAWS
@given(
    resources(),
    reservation_stacks().filter(bool),
    st.sampled_from([None, "eng", "eng/web"]),
    st.integers(1, 10**6),
    st.data(),
    st.booleans(),
)
def test_create_destroy_round_trip_law(others, stack, alloc, millis, data, shared):
    disk = Resource(meta("disk", reservations=stack, alloc=alloc), millis)
    total = others + Resources([disk])
    amount = data.draw(
        st.integers(
            1, total.reserved().named("disk").filter(lambda m: m == disk.meta).scalar("disk")
        ),
        label="amount",
    )
    vol = Resources(
        [Resource(disk.meta._replace(disk=volume_disk("fresh"), shared=shared), amount)]
    )
    created = apply_operation(total, Create(vol))
    assert created.contains(vol)
    assert created.quantities() == total.quantities()
    assert apply_operation(created, Destroy(vol)) == total
    with pytest.raises(OperationError, match="already in use"):
        apply_operation(created, Create(vol))
