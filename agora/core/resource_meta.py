"""What makes one resource entry distinct from another: its identity (`ResourceMeta`).

Two entries merge under `+` only when their metadata is equal: same name and kind,
the same reservation stack (type, role, principal, labels), allocation role, disk
info, revocable and shared flags and provider. These are immutable `NamedTuple`s so
that they hash and compare at C speed in the allocator's hot loop.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

from agora.core.errors import InvalidResource, InvalidRole
from agora.core.roles import DEFAULT_ROLE, is_strict_descendant, validate_role
from agora.core.values import Kind, Value

Labels = tuple[tuple[str, str | None], ...]


class ReservationType(StrEnum):
    STATIC = "STATIC"
    DYNAMIC = "DYNAMIC"


class Reservation(NamedTuple):
    type: ReservationType
    role: str
    principal: str | None = None
    labels: Labels = ()


def static(role: str) -> Reservation:
    return Reservation(ReservationType.STATIC, role)


def dynamic(role: str, principal: str | None = None, labels: Labels = ()) -> Reservation:
    return Reservation(ReservationType.DYNAMIC, role, principal, canonical_labels(labels))


def canonical_labels(labels: Labels) -> Labels:
    """Labels compare as a multiset in Mesos; sorting makes equal labels equal tuples."""
    return tuple(sorted(labels, key=lambda kv: (kv[0], kv[1] or "")))


class DiskSourceType(StrEnum):
    PATH = "PATH"
    MOUNT = "MOUNT"
    BLOCK = "BLOCK"
    RAW = "RAW"


class DiskSource(NamedTuple):
    type: DiskSourceType
    root: str | None = None
    id: str | None = None
    profile: str | None = None
    vendor: str | None = None
    metadata: Labels = ()


class VolumeMode(StrEnum):
    RW = "RW"
    RO = "RO"


class Volume(NamedTuple):
    container_path: str
    mode: VolumeMode = VolumeMode.RW
    host_path: str | None = None


class DiskInfo(NamedTuple):
    persistence_id: str | None = None
    persistence_principal: str | None = None
    volume: Volume | None = None
    source: DiskSource | None = None


class ResourceMeta(NamedTuple):
    """Everything about a resource entry except its quantity."""

    name: str
    kind: Kind
    reservations: tuple[Reservation, ...] = ()
    allocation_role: str | None = None
    disk: DiskInfo | None = None
    revocable: bool = False
    shared: bool = False
    provider_id: str | None = None

    @property
    def reservation_role(self) -> str | None:
        """The current (innermost) reservation role, or None when unreserved."""
        return self.reservations[-1].role if self.reservations else None

    @property
    def is_persistent_volume(self) -> bool:
        return self.disk is not None and self.disk.persistence_id is not None


class Resource(NamedTuple):
    """One resource entry: identity, value and (for indivisible entries) a count.

    `copies` is the share count of a shared volume, and 1 for everything else.
    """

    meta: ResourceMeta
    value: Value
    copies: int = 1


def is_atomic(meta: ResourceMeta) -> bool:
    """Indivisible entries never merge and are only subtracted whole (Mesos rules).

    Shared resources, persistent volumes, MOUNT and BLOCK disks and RAW disks with an
    id are atomic; they are kept with a count instead of being summed.
    """
    if meta.shared:
        return True
    disk = meta.disk
    if disk is None:
        return False
    if disk.persistence_id is not None:
        return True
    source = disk.source
    if source is None:
        return False
    if source.type in (DiskSourceType.MOUNT, DiskSourceType.BLOCK):
        return True
    return source.type is DiskSourceType.RAW and source.id is not None


_NAME_FORBIDDEN = re.compile(r"[\s;:()\[\]{}<>,]")


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidResource(f"resource name must be a non-empty string, got {name!r}")
    if _NAME_FORBIDDEN.search(name):
        raise InvalidResource(f"resource name {name!r} has a forbidden character")
    return name


def validate_reservations(name: str, reservations: tuple[Reservation, ...]) -> None:
    previous: str | None = None
    for index, reservation in enumerate(reservations):
        role = reservation.role
        if role == DEFAULT_ROLE:
            raise InvalidResource(f"resource {name!r}: cannot reserve to the '*' role")
        try:
            validate_role(role)
        except InvalidRole as error:
            raise InvalidResource(f"resource {name!r}: {error}") from None
        if index > 0:
            if reservation.type is not ReservationType.DYNAMIC:
                raise InvalidResource(
                    f"resource {name!r}: only the first reservation may be STATIC; "
                    f"reservation {index} to {role!r} is {reservation.type.value}"
                )
            if previous is not None and not is_strict_descendant(role, previous):
                raise InvalidResource(
                    f"resource {name!r}: reservation to {role!r} does not refine the "
                    f"previous reservation to {previous!r} (must be a strict descendant)"
                )
        previous = role


def validate_disk(name: str, meta: ResourceMeta) -> None:
    disk = meta.disk
    if disk is None:
        return
    if name != "disk" or meta.kind is not Kind.SCALAR:
        raise InvalidResource(f"resource {name!r}: disk info is only allowed on 'disk' scalars")
    if disk.persistence_id is not None:
        if not disk.persistence_id:
            raise InvalidResource("persistent volume: persistence id must not be empty")
        if not meta.reservations:
            raise InvalidResource(
                f"persistent volume {disk.persistence_id!r}: cannot be created from unreserved disk"
            )
        if disk.volume is None:
            raise InvalidResource(
                f"persistent volume {disk.persistence_id!r}: a volume (container_path) is required"
            )
    if disk.volume is not None:
        path = disk.volume.container_path
        if not path:
            raise InvalidResource("volume: container_path must not be empty")
        if disk.persistence_id is not None and (path.startswith("/") or ".." in path.split("/")):
            raise InvalidResource(
                f"persistent volume {disk.persistence_id!r}: container_path {path!r} must be "
                "relative and must not contain '..'"
            )
    source = disk.source
    if (
        source is not None
        and source.type in (DiskSourceType.PATH, DiskSourceType.MOUNT)
        and not source.root
    ):
        raise InvalidResource(f"disk source {source.type.value} needs a root path")


def validate_resource(resource: Resource) -> Resource:
    """Check an entry against Mesos's rules; raise InvalidResource naming the problem."""
    meta, value, count = resource
    name = validate_name(meta.name)
    kind = meta.kind
    if kind is Kind.SCALAR:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidResource(f"resource {name!r}: scalar must be a non-negative number")
    elif kind is Kind.RANGES:
        if not isinstance(value, tuple):
            raise InvalidResource(f"resource {name!r}: RANGES value must be ranges")
    elif kind is Kind.SET:
        if not isinstance(value, frozenset):
            raise InvalidResource(f"resource {name!r}: SET value must be a set")
    else:  # pragma: no cover - Kind is exhaustive
        raise InvalidResource(f"resource {name!r}: unknown type {kind!r}")
    validate_reservations(name, meta.reservations)
    if meta.allocation_role is not None:
        try:
            validate_role(meta.allocation_role)
        except InvalidRole as error:
            raise InvalidResource(f"resource {name!r}: allocation {error}") from None
    validate_disk(name, meta)
    if meta.revocable and meta.reservations:
        raise InvalidResource(f"resource {name!r}: revocable resources cannot be reserved")
    if meta.revocable and meta.is_persistent_volume:
        raise InvalidResource(f"resource {name!r}: revocable resources cannot hold volumes")
    if meta.shared and not meta.is_persistent_volume:
        raise InvalidResource(f"resource {name!r}: only persistent volumes can be shared")
    if count < 1 or (count != 1 and not meta.shared):
        raise InvalidResource(f"resource {name!r}: count must be 1 (or >= 1 when shared)")
    return resource
