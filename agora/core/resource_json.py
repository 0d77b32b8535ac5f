"""Resources to and from the Mesos JSON form (proto `mesos.v1.Resource` as rendered).

Both reservation formats are read: the post-refinement `reservations` list and the
legacy `role` + `reservation` pair (and the operator "endpoint" mix of the two, which
must agree). Output picks the format a client asked for (`ResourceFormat`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from agora.core.errors import InvalidResource, ResourceArithmeticError
from agora.core.resource_meta import (
    DiskInfo,
    DiskSource,
    DiskSourceType,
    Labels,
    Reservation,
    ReservationType,
    Resource,
    ResourceMeta,
    Volume,
    VolumeMode,
    canonical_labels,
)
from agora.core.resources import Resources
from agora.core.roles import DEFAULT_ROLE
from agora.core.values import Kind, make_ranges, make_set, scalar_to_millis

Json = dict[str, Any]


class ResourceFormat(StrEnum):
    POST_REFINEMENT = "post"  # `reservations` list (RESERVATION_REFINEMENT frameworks)
    PRE_REFINEMENT = "pre"  # legacy `role` + `reservation`
    ENDPOINT = "endpoint"  # list plus legacy fields where expressible (operator views)


def _obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidResource(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidResource(f"{what} must be a string, got {value!r}")
    return value


def _int(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise InvalidResource(f"{what} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InvalidResource(f"{what} must be an integer, got {value!r}")


def labels_from_json(data: object, what: str) -> Labels:
    if data is None:
        return ()
    items = _obj(data, what).get("labels", [])
    if not isinstance(items, list):
        raise InvalidResource(f"{what}.labels must be a list")
    out = []
    for i, item in enumerate(items):
        label = _obj(item, f"{what}.labels[{i}]")
        key = _str(label.get("key"), f"{what}.labels[{i}].key")
        value = label.get("value")
        out.append((key, None if value is None else _str(value, f"{what}.labels[{i}].value")))
    return canonical_labels(tuple(out))


def labels_to_json(labels: Labels) -> Json:
    return {"labels": [{"key": k} if v is None else {"key": k, "value": v} for k, v in labels]}


def _reservation_from_json(data: object, what: str) -> Reservation:
    obj = _obj(data, what)
    type_name = obj.get("type")
    try:
        kind = ReservationType(type_name) if type_name is not None else None
    except ValueError:
        raise InvalidResource(f"{what}.type must be STATIC or DYNAMIC, got {type_name!r}") from None
    role = _str(obj.get("role"), f"{what}.role")
    principal = obj.get("principal")
    if principal is not None:
        principal = _str(principal, f"{what}.principal")
    labels = labels_from_json(obj.get("labels"), f"{what}.labels")
    if kind is None:
        kind = (
            ReservationType.DYNAMIC if principal is not None or labels else ReservationType.STATIC
        )
    return Reservation(kind, role, principal, labels)


def _reservations_from_json(obj: Mapping[str, Any], what: str) -> tuple[Reservation, ...]:
    stack_json = obj.get("reservations") or []
    if not isinstance(stack_json, list):
        raise InvalidResource(f"{what}.reservations must be a list")
    stack = tuple(
        _reservation_from_json(r, f"{what}.reservations[{i}]") for i, r in enumerate(stack_json)
    )
    role = obj.get("role")
    legacy = obj.get("reservation")
    if role is None and legacy is None:
        return stack
    role = _str(role if role is not None else DEFAULT_ROLE, f"{what}.role")
    if legacy is not None and role == DEFAULT_ROLE:
        raise InvalidResource(f"{what}: a reservation needs a role other than '*'")
    if role == DEFAULT_ROLE:
        legacy_stack: tuple[Reservation, ...] = ()
    elif legacy is None:
        legacy_stack = (Reservation(ReservationType.STATIC, role),)
    else:
        info = _obj(legacy, f"{what}.reservation")
        principal = info.get("principal")
        legacy_stack = (
            Reservation(
                ReservationType.DYNAMIC,
                role,
                None if principal is None else _str(principal, f"{what}.reservation.principal"),
                labels_from_json(info.get("labels"), f"{what}.reservation.labels"),
            ),
        )
    if not stack_json:
        return legacy_stack
    # Endpoint format: both given. They must describe the same reservation.
    if role == DEFAULT_ROLE and len(stack) <= 1 and stack:
        raise InvalidResource(f"{what}: role '*' contradicts reservations {stack_json!r}")
    if len(stack) == 1 and stack[-1].role != role:
        raise InvalidResource(
            f"{what}: role {role!r} contradicts the reservation to {stack[-1].role!r}"
        )
    return stack


def _disk_from_json(data: object, what: str) -> DiskInfo:
    obj = _obj(data, what)
    persistence_id = principal = None
    if obj.get("persistence") is not None:
        persistence = _obj(obj["persistence"], f"{what}.persistence")
        persistence_id = _str(persistence.get("id"), f"{what}.persistence.id")
        if persistence.get("principal") is not None:
            principal = _str(persistence["principal"], f"{what}.persistence.principal")
    volume = None
    if obj.get("volume") is not None:
        v = _obj(obj["volume"], f"{what}.volume")
        mode_name = v.get("mode", "RW")
        try:
            mode = VolumeMode(mode_name)
        except ValueError:
            raise InvalidResource(
                f"{what}.volume.mode must be RW or RO, got {mode_name!r}"
            ) from None
        host_path = v.get("host_path")
        volume = Volume(
            _str(v.get("container_path"), f"{what}.volume.container_path"),
            mode,
            None if host_path is None else _str(host_path, f"{what}.volume.host_path"),
        )
    source = None
    if obj.get("source") is not None:
        source = _source_from_json(obj["source"], f"{what}.source")
    return DiskInfo(persistence_id, principal, volume, source)


def _source_from_json(data: object, what: str) -> DiskSource:
    s = _obj(data, what)
    try:
        kind = DiskSourceType(str(s.get("type")))
    except ValueError:
        raise InvalidResource(f"{what}.type must be PATH, MOUNT, BLOCK or RAW") from None
    root = None
    holder = s.get("path") if kind is DiskSourceType.PATH else s.get("mount")
    if holder is not None:
        root_value = _obj(holder, f"{what}.root").get("root")
        root = None if root_value is None else _str(root_value, f"{what}.root")
    return DiskSource(
        kind,
        root,
        None if s.get("id") is None else _str(s["id"], f"{what}.id"),
        None if s.get("profile") is None else _str(s["profile"], f"{what}.profile"),
        None if s.get("vendor") is None else _str(s["vendor"], f"{what}.vendor"),
        labels_from_json(s.get("metadata"), f"{what}.metadata"),
    )


def resource_from_json(data: object, what: str = "resource") -> Resource:
    obj = _obj(data, what)
    name = _str(obj.get("name"), f"{what}.name")
    what = f"{what} {name!r}"
    type_name = obj.get("type")
    try:
        kind = Kind(str(type_name))
    except ValueError:
        raise InvalidResource(
            f"{what}: type must be SCALAR, RANGES or SET, got {type_name!r}"
        ) from None
    value: int | tuple[tuple[int, int], ...] | frozenset[str]
    if kind is Kind.SCALAR:
        scalar = _obj(obj.get("scalar"), f"{what}.scalar")
        value = scalar_to_millis(scalar.get("value"), what)
    elif kind is Kind.RANGES:
        ranges = _obj(obj.get("ranges"), f"{what}.ranges").get("range", [])
        if not isinstance(ranges, list):
            raise InvalidResource(f"{what}.ranges.range must be a list")
        pairs = []
        for i, r in enumerate(ranges):
            bounds = _obj(r, f"{what}.ranges.range[{i}]")
            pairs.append(
                (
                    _int(bounds.get("begin"), f"{what} range begin"),
                    _int(bounds.get("end"), f"{what} range end"),
                )
            )
        value = make_ranges(pairs, what)
    else:
        items = _obj(obj.get("set"), f"{what}.set").get("item", [])
        if not isinstance(items, list):
            raise InvalidResource(f"{what}.set.item must be a list")
        value = make_set(items, what)
    allocation_role = None
    if obj.get("allocation_info") is not None:
        info = _obj(obj["allocation_info"], f"{what}.allocation_info")
        if info.get("role") is not None:
            allocation_role = _str(info["role"], f"{what}.allocation_info.role")
    provider_id = None
    if obj.get("provider_id") is not None:
        provider_id = _str(
            _obj(obj["provider_id"], f"{what}.provider_id").get("value"),
            f"{what}.provider_id.value",
        )
    meta = ResourceMeta(
        name=name,
        kind=kind,
        reservations=_reservations_from_json(obj, what),
        allocation_role=allocation_role,
        disk=None if obj.get("disk") is None else _disk_from_json(obj["disk"], f"{what}.disk"),
        revocable=obj.get("revocable") is not None,
        shared=obj.get("shared") is not None,
        provider_id=provider_id,
    )
    return Resource(meta, value)


def resources_from_json(data: object, what: str = "resources") -> Resources:
    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        raise InvalidResource(f"{what} must be a JSON list")
    entries = [resource_from_json(item, f"{what}[{i}]") for i, item in enumerate(data)]
    try:
        return Resources(entries)
    except ResourceArithmeticError as error:  # overlapping ports, a volume given twice...
        raise InvalidResource(f"{what}: {error}") from None


# ------------------------------------------------------------------------------ output


def _reservation_to_json(r: Reservation) -> Json:
    out: Json = {"type": r.type.value, "role": r.role}
    if r.principal is not None:
        out["principal"] = r.principal
    if r.labels:
        out["labels"] = labels_to_json(r.labels)
    return out


def _disk_to_json(disk: DiskInfo) -> Json:
    out: Json = {}
    if disk.persistence_id is not None:
        persistence: Json = {"id": disk.persistence_id}
        if disk.persistence_principal is not None:
            persistence["principal"] = disk.persistence_principal
        out["persistence"] = persistence
    if disk.volume is not None:
        volume: Json = {
            "container_path": disk.volume.container_path,
            "mode": disk.volume.mode.value,
        }
        if disk.volume.host_path is not None:
            volume["host_path"] = disk.volume.host_path
        out["volume"] = volume
    if disk.source is not None:
        s = disk.source
        source: Json = {"type": s.type.value}
        if s.root is not None:
            source["path" if s.type is DiskSourceType.PATH else "mount"] = {"root": s.root}
        for key in ("id", "profile", "vendor"):
            if getattr(s, key) is not None:
                source[key] = getattr(s, key)
        if s.metadata:
            source["metadata"] = labels_to_json(s.metadata)
        out["source"] = source
    return out


def resource_to_json(entry: Resource, fmt: ResourceFormat = ResourceFormat.POST_REFINEMENT) -> Json:
    meta, value = entry.meta, entry.value
    out: Json = {"name": meta.name, "type": meta.kind.value}
    if isinstance(value, int):
        out["scalar"] = {"value": value / 1000}
    elif isinstance(value, tuple):
        out["ranges"] = {"range": [{"begin": b, "end": e} for b, e in value]}
    else:
        out["set"] = {"item": sorted(value)}
    stack = meta.reservations
    if fmt is not ResourceFormat.PRE_REFINEMENT and stack:
        out["reservations"] = [_reservation_to_json(r) for r in stack]
    if fmt is not ResourceFormat.POST_REFINEMENT and len(stack) <= 1:
        out["role"] = stack[0].role if stack else DEFAULT_ROLE
        if stack and stack[0].type is ReservationType.DYNAMIC:
            legacy: Json = {}
            if stack[0].principal is not None:
                legacy["principal"] = stack[0].principal
            if stack[0].labels:
                legacy["labels"] = labels_to_json(stack[0].labels)
            out["reservation"] = legacy
    elif fmt is ResourceFormat.PRE_REFINEMENT:
        raise InvalidResource(
            f"resource {meta.name!r} has a refined reservation, which the pre-refinement "
            "format cannot express"
        )
    if meta.allocation_role is not None:
        out["allocation_info"] = {"role": meta.allocation_role}
    if meta.disk is not None:
        out["disk"] = _disk_to_json(meta.disk)
    if meta.revocable:
        out["revocable"] = {}
    if meta.shared:
        out["shared"] = {}
    if meta.provider_id is not None:
        out["provider_id"] = {"value": meta.provider_id}
    return out


def resources_to_json(
    resources: Resources, fmt: ResourceFormat = ResourceFormat.POST_REFINEMENT
) -> list[Json]:
    out = []
    for entry in resources.sorted_entries():
        encoded = resource_to_json(entry, fmt)
        out.extend([encoded] * entry.copies)
    return out
