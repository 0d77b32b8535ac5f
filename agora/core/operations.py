"""Speculative offer operations on resources: RESERVE, UNRESERVE, CREATE, DESTROY.

Each operation is a conversion `consumed -> converted`; `apply_operation` checks the
operation's own rules, then returns `resources - consumed + converted` or raises a
typed OperationError that says what is wrong.
"""

from __future__ import annotations

from typing import NamedTuple

from agora.core.errors import InsufficientResources, OperationError, ResourceArithmeticError
from agora.core.resource_meta import DiskInfo, ReservationType, ResourceMeta
from agora.core.resources import Resources


class Reserve(NamedTuple):
    """Push a dynamic reservation; `resources` carry the target reservation stack."""

    resources: Resources
    source: Resources | None = None


class Unreserve(NamedTuple):
    """Pop the innermost dynamic reservation of `resources`."""

    resources: Resources


class Create(NamedTuple):
    """Turn reserved disk into persistent volumes."""

    volumes: Resources


class Destroy(NamedTuple):
    """Turn persistent volumes back into plain reserved disk."""

    volumes: Resources


Operation = Reserve | Unreserve | Create | Destroy


class Conversion(NamedTuple):
    consumed: Resources
    converted: Resources


def _strip_volume(meta: ResourceMeta) -> ResourceMeta:
    disk = meta.disk
    bare = None if disk is None or disk.source is None else DiskInfo(source=disk.source)
    return meta._replace(disk=bare, shared=False)


def _check_reserve(op: Reserve) -> None:
    if not op.resources:
        raise OperationError("RESERVE: no resources given")
    for entry in op.resources:
        meta = entry.meta
        if not meta.reservations:
            raise OperationError(f"RESERVE: resource {meta.name!r} carries no reservation")
        if meta.reservations[-1].type is not ReservationType.DYNAMIC:
            raise OperationError(
                f"RESERVE: resource {meta.name!r} must carry a DYNAMIC reservation on top"
            )
        if meta.revocable:
            raise OperationError(f"RESERVE: revocable resource {meta.name!r} cannot be reserved")
        if meta.is_persistent_volume:
            raise OperationError("RESERVE: a persistent volume cannot be reserved again")
    roles = {entry.meta.reservations[-1].role for entry in op.resources}
    if len(roles) > 1:
        raise OperationError(
            f"RESERVE: all resources must be reserved to one role, got {sorted(roles)}"
        )


def _check_unreserve(op: Unreserve) -> None:
    if not op.resources:
        raise OperationError("UNRESERVE: no resources given")
    for entry in op.resources:
        meta = entry.meta
        if not meta.reservations:
            raise OperationError(f"UNRESERVE: resource {meta.name!r} is not reserved")
        if meta.reservations[-1].type is not ReservationType.DYNAMIC:
            raise OperationError(
                f"UNRESERVE: static reservation of {meta.name!r} cannot be unreserved"
            )
        if meta.is_persistent_volume:
            raise OperationError(
                f"UNRESERVE: disk holds persistent volume {meta.disk.persistence_id!r}; "  # type: ignore[union-attr]
                "destroy it first"
            )


def _check_volumes(kind: str, volumes: Resources) -> None:
    if not volumes:
        raise OperationError(f"{kind}: no volumes given")
    seen: set[tuple[str | None, str | None]] = set()
    for entry in volumes:
        meta = entry.meta
        if not meta.is_persistent_volume:
            raise OperationError(f"{kind}: resource {meta.name!r} is not a persistent volume")
        key = (meta.reservation_role, meta.disk.persistence_id)  # type: ignore[union-attr]
        if key in seen or entry.copies > 1:
            raise OperationError(f"{kind}: persistence id {key[1]!r} is given twice")
        seen.add(key)


def conversion(op: Operation) -> Conversion:
    """The resources an operation consumes and what it turns them into."""
    if isinstance(op, Reserve):
        _check_reserve(op)
        consumed = op.source if op.source is not None else op.resources.pop_reservation()
        return Conversion(consumed, op.resources)
    if isinstance(op, Unreserve):
        _check_unreserve(op)
        return Conversion(op.resources, op.resources.pop_reservation())
    if isinstance(op, Create):
        _check_volumes("CREATE", op.volumes)
        return Conversion(op.volumes.map_meta(_strip_volume), op.volumes)
    _check_volumes("DESTROY", op.volumes)
    return Conversion(op.volumes, op.volumes.map_meta(_strip_volume))


def operation_name(op: Operation) -> str:
    return type(op).__name__.upper()


def apply_operation(resources: Resources, op: Operation) -> Resources:
    """Apply one speculative operation; raise OperationError if it cannot apply."""
    consumed, converted = conversion(op)
    if isinstance(op, Create):
        existing = {
            (e.meta.reservation_role, e.meta.disk.persistence_id)  # type: ignore[union-attr]
            for e in resources.persistent_volumes()
        }
        for entry in op.volumes:
            key = (entry.meta.reservation_role, entry.meta.disk.persistence_id)  # type: ignore[union-attr]
            if key in existing:
                raise OperationError(f"CREATE: persistence id {key[1]!r} is already in use")
    if not resources.contains(consumed):
        raise InsufficientResources(
            f"{operation_name(op)}: needs {consumed} but only {resources} is available"
        )
    try:
        return resources - consumed + converted
    except ResourceArithmeticError as error:  # pragma: no cover - contains() checked above
        raise OperationError(f"{operation_name(op)}: {error}") from None
