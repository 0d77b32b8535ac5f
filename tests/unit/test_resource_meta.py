"""Entry identity and validation (agora.core.resource_meta)."""

from __future__ import annotations

import pytest

from agora.core.errors import InvalidResource, ResourceArithmeticError
from agora.core.resource_meta import (
    DiskInfo,
    DiskSource,
    DiskSourceType,
    Reservation,
    ReservationType,
    Resource,
    ResourceMeta,
    Volume,
    canonical_labels,
    dynamic,
    is_atomic,
    static,
    validate_resource,
)
from agora.core.resources import Resources
from agora.core.values import Kind
from tests.unit.resource_strategies import meta, volume_disk

VOLUME = volume_disk("v1")


def entry(m: ResourceMeta, value=1000, copies=1) -> Resource:
    return Resource(m, value, copies)


def test_reservation_helpers():
    assert static("eng") == Reservation(ReservationType.STATIC, "eng")
    assert dynamic("eng", "alice") == Reservation(ReservationType.DYNAMIC, "eng", "alice", ())
    assert dynamic("eng", None, (("b", "1"), ("a", None))).labels == (("a", None), ("b", "1"))
    assert canonical_labels((("k", "v"), ("k", None))) == (("k", None), ("k", "v"))


def test_meta_properties():
    m = meta("cpus", reservations=[static("eng"), dynamic("eng/web")])
    assert m.reservation_role == "eng/web"
    assert meta("cpus").reservation_role is None
    assert not m.is_persistent_volume
    assert meta("disk", reservations=[static("r")], disk=VOLUME).is_persistent_volume


@pytest.mark.parametrize(
    ("m", "atomic"),
    [
        (meta("cpus"), False),
        (meta("disk"), False),
        (meta("disk", disk=DiskInfo(source=DiskSource(DiskSourceType.PATH, "/p"))), False),
        (meta("disk", disk=DiskInfo(source=DiskSource(DiskSourceType.MOUNT, "/m"))), True),
        (meta("disk", disk=DiskInfo(source=DiskSource(DiskSourceType.BLOCK))), True),
        (meta("disk", disk=DiskInfo(source=DiskSource(DiskSourceType.RAW))), False),
        (meta("disk", disk=DiskInfo(source=DiskSource(DiskSourceType.RAW, id="x"))), True),
        (meta("disk", reservations=[static("r")], disk=VOLUME), True),
        (meta("disk", reservations=[static("r")], disk=VOLUME, shared=True), True),
    ],
)
def test_is_atomic(m, atomic):
    assert is_atomic(m) is atomic
    validate_resource(entry(m))


def test_valid_entries_pass_unchanged():
    for m in [
        meta("cpus"),
        meta("cpus", reservations=[static("eng"), dynamic("eng/web"), dynamic("eng/web/db")]),
        meta("cpus", reservations=[dynamic("eng"), dynamic("eng/web/db")]),  # may skip levels
        meta("cpus", alloc="eng/web", revocable=True),
        meta("disk", reservations=[dynamic("r", "p")], disk=VOLUME, shared=True),
    ]:
        e = entry(m)
        assert validate_resource(e) is e
    shared = entry(meta("disk", reservations=[static("r")], disk=VOLUME, shared=True), copies=3)
    assert validate_resource(shared) is shared


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        # values
        (entry(meta("cpus"), -1), "resource 'cpus': scalar must be a non-negative number"),
        (entry(meta("cpus"), 1.5), "resource 'cpus': scalar must be a non-negative number"),
        (entry(meta("cpus"), True), "resource 'cpus': scalar must be a non-negative number"),
        (entry(meta("ports", Kind.RANGES), [(1, 2)]), "resource 'ports': RANGES value must be"),
        (entry(meta("zones", Kind.SET), {"a"}), "resource 'zones': SET value must be a set"),
        # names
        (entry(meta("")), "resource name must be a non-empty string"),
        (entry(meta("cp us")), "resource name 'cp us' has a forbidden character"),
        (entry(meta("a;b")), "resource name 'a;b' has a forbidden character"),
        # reservations
        (
            entry(meta("cpus", reservations=[static("*")])),
            "resource 'cpus': cannot reserve to the '\\*' role",
        ),
        (
            entry(meta("cpus", reservations=[dynamic("*")])),
            "resource 'cpus': cannot reserve to the '\\*' role",
        ),
        (
            entry(meta("cpus", reservations=[static("eng"), dynamic("*")])),
            "cannot reserve to the '\\*' role",
        ),
        (entry(meta("cpus", reservations=[static("-eng")])), "resource 'cpus': role '-eng'"),
        (entry(meta("cpus", reservations=[static("")])), "resource 'cpus': role must not be empty"),
        (
            entry(meta("cpus", reservations=[static("eng"), static("eng/web")])),
            "only the first reservation may be STATIC; reservation 1 to 'eng/web' is STATIC",
        ),
        (
            entry(meta("cpus", reservations=[dynamic("eng"), dynamic("ops")])),
            "reservation to 'ops' does not refine the previous reservation to 'eng'",
        ),
        (
            entry(meta("cpus", reservations=[dynamic("eng"), dynamic("eng")])),
            "reservation to 'eng' does not refine",
        ),
        (
            entry(meta("cpus", reservations=[dynamic("eng/web"), dynamic("eng")])),
            "reservation to 'eng' does not refine the previous reservation to 'eng/web'",
        ),
        # allocation role
        (entry(meta("cpus", alloc="my role")), "resource 'cpus': allocation role 'my role'"),
        # disk info / volumes on the wrong resource
        (
            entry(meta("cpus", reservations=[static("r")], disk=VOLUME)),
            "resource 'cpus': disk info is only allowed on 'disk' scalars",
        ),
        (
            entry(meta("mem", disk=DiskInfo(source=DiskSource(DiskSourceType.PATH, "/p")))),
            "resource 'mem': disk info is only allowed on 'disk' scalars",
        ),
        (
            entry(meta("disk", Kind.RANGES, disk=DiskInfo()), ((1, 2),)),
            "resource 'disk': disk info is only allowed on 'disk' scalars",
        ),
        # persistent volumes
        (
            entry(meta("disk", disk=VOLUME)),
            "persistent volume 'v1': cannot be created from unreserved disk",
        ),
        (
            entry(meta("disk", reservations=[static("r")], disk=DiskInfo("v1"))),
            "persistent volume 'v1': a volume \\(container_path\\) is required",
        ),
        (
            entry(meta("disk", reservations=[static("r")], disk=volume_disk(""))),
            "persistence id must not be empty",
        ),
        (
            entry(
                meta("disk", reservations=[static("r")], disk=volume_disk("v", container_path=""))
            ),
            "volume: container_path must not be empty",
        ),
        (
            entry(
                meta(
                    "disk", reservations=[static("r")], disk=volume_disk("v", container_path="/abs")
                )
            ),
            "persistent volume 'v': container_path '/abs' must be relative",
        ),
        (
            entry(
                meta(
                    "disk",
                    reservations=[static("r")],
                    disk=volume_disk("v", container_path="a/../b"),
                )
            ),
            "must not contain '..'",
        ),
        (
            entry(meta("disk", disk=DiskInfo(source=DiskSource(DiskSourceType.MOUNT)))),
            "disk source MOUNT needs a root path",
        ),
        (
            entry(meta("disk", disk=DiskInfo(source=DiskSource(DiskSourceType.PATH, "")))),
            "disk source PATH needs a root path",
        ),
        # revocable
        (
            entry(meta("cpus", reservations=[static("eng")], revocable=True)),
            "resource 'cpus': revocable resources cannot be reserved",
        ),
        (
            entry(meta("cpus", reservations=[dynamic("eng")], revocable=True)),
            "revocable resources cannot be reserved",
        ),
        # shared
        (
            entry(meta("cpus", shared=True)),
            "resource 'cpus': only persistent volumes can be shared",
        ),
        (
            entry(meta("disk", reservations=[static("r")], shared=True)),
            "resource 'disk': only persistent volumes can be shared",
        ),
        # counts
        (entry(meta("cpus"), copies=2), "resource 'cpus': count must be 1"),
        (entry(meta("cpus"), copies=0), "resource 'cpus': count must be 1"),
        (
            entry(meta("disk", reservations=[static("r")], disk=VOLUME, shared=True), copies=0),
            "count must be 1 \\(or >= 1 when shared\\)",
        ),
    ],
)
def test_invalid_entries_are_refused_with_a_clear_message(bad, message):
    with pytest.raises(InvalidResource, match=message):
        validate_resource(bad)
    # Resources validates every entry it is built from.
    with pytest.raises(InvalidResource, match=message):
        Resources([bad])


def test_a_volume_is_refused_when_given_twice():
    v = entry(meta("disk", reservations=[static("r")], disk=VOLUME))
    with pytest.raises(ResourceArithmeticError, match=r"v1:data:RW.*is given twice"):
        Resources([v, v])
    mount = entry(meta("disk", disk=DiskInfo(source=DiskSource(DiskSourceType.MOUNT, "/m"))))
    with pytest.raises(ResourceArithmeticError, match="is given twice"):
        Resources([mount, mount])


def test_shared_volume_copies_add_up():
    shared = entry(meta("disk", reservations=[static("r")], disk=VOLUME, shared=True))
    r = Resources([shared, shared, entry(shared.meta, copies=2)])
    ((_, _, copies),) = list(r)
    assert copies == 4


def test_volume_metadata_is_part_of_identity():
    a = meta("disk", reservations=[static("r")], disk=DiskInfo("v", None, Volume("data")))
    b = meta("disk", reservations=[static("r")], disk=DiskInfo("v", "p", Volume("data")))
    assert a != b
    assert Resources([entry(a)]) != Resources([entry(b)])
