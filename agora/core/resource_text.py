"""The Mesos text form of resources: `cpus:4;mem:1024;ports:[31000-32000];disk(r1):100`.

`parse_resources` reads the form agents take in `--resources` (a JSON array is also
accepted, as Mesos does); `format_resources` prints it back. Entries the simple form
cannot express (dynamic or refined reservations, volumes, revocable, allocation
roles) print in Mesos's log form, e.g. `cpus(allocated: eng)(reservations:
[(DYNAMIC,eng,alice)]):2`, which reads well but is not parsed back.
"""

from __future__ import annotations

import json
import re

from agora.core.errors import InvalidResource, InvalidRole, ResourceArithmeticError
from agora.core.resource_meta import (
    DiskInfo,
    Reservation,
    ReservationType,
    Resource,
    ResourceMeta,
    static,
    validate_name,
)
from agora.core.resources import Resources
from agora.core.roles import DEFAULT_ROLE, validate_role
from agora.core.values import (
    Kind,
    format_value,
    make_ranges,
    make_set,
    scalar_to_millis,
)

_TOKEN = re.compile(r"^\s*([^():;\s]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*:\s*(.+?)\s*$", re.DOTALL)
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def parse_resources(text: str, default_role: str = DEFAULT_ROLE) -> Resources:
    """Parse the Mesos text (or JSON) form; raise InvalidResource naming the bad token."""
    stripped = text.strip()
    if stripped.startswith("["):
        from agora.core.resource_json import resources_from_json

        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise InvalidResource(f"resources JSON is malformed: {error}") from None
        return resources_from_json(data)
    entries = [parse_entry(token, default_role) for token in stripped.split(";") if token.strip()]
    try:
        return Resources(entries)
    except ResourceArithmeticError as error:  # e.g. `ports:[1-5];ports:[3-7]`
        raise InvalidResource(f"resources {stripped!r}: {error}") from None


def parse_entry(token: str, default_role: str = DEFAULT_ROLE) -> Resource:
    match = _TOKEN.match(token)
    if match is None:
        raise InvalidResource(f"cannot parse resource {token.strip()!r}: expected name(role):value")
    name, role, raw_value = match.groups()
    validate_name(name)
    role = role if role is not None else default_role
    try:
        validate_role(role)
    except InvalidRole as error:
        raise InvalidResource(f"resource {name!r}: {error}") from None
    reservations: tuple[Reservation, ...] = () if role == DEFAULT_ROLE else (static(role),)
    kind, value = _parse_value(name, raw_value)
    return Resource(ResourceMeta(name, kind, reservations), value)


def _parse_value(
    name: str, raw: str
) -> tuple[Kind, int | tuple[tuple[int, int], ...] | frozenset[str]]:
    what = f"resource {name!r}"
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise InvalidResource(f"{what}: ranges {raw!r} must end with ']'")
        body = raw[1:-1].strip()
        pairs = []
        for part in filter(None, (p.strip() for p in body.split(","))):
            match = _RANGE.match(part)
            if match is None:
                raise InvalidResource(f"{what}: cannot parse range {part!r} (want begin-end)")
            pairs.append((int(match.group(1)), int(match.group(2))))
        return Kind.RANGES, make_ranges(pairs, what)
    if raw.startswith("{"):
        if not raw.endswith("}"):
            raise InvalidResource(f"{what}: set {raw!r} must end with '}}'")
        items = [p.strip() for p in raw[1:-1].split(",") if p.strip()]
        return Kind.SET, make_set(items, what)
    return Kind.SCALAR, scalar_to_millis(raw, what)


# ------------------------------------------------------------------------------ output


def _is_simple(meta: ResourceMeta) -> bool:
    if meta.allocation_role is not None or meta.disk is not None:
        return False
    if meta.revocable or meta.shared or meta.provider_id is not None:
        return False
    reservations = meta.reservations
    return not reservations or (
        len(reservations) == 1 and reservations[0].type is ReservationType.STATIC
    )


def _format_reservation(r: Reservation) -> str:
    parts = [r.type.value, r.role]
    if r.principal is not None:
        parts.append(r.principal)
    if r.labels:
        parts.append(
            "{" + ", ".join(f"{k}: {v}" if v is not None else k for k, v in r.labels) + "}"
        )
    return "(" + ",".join(parts) + ")"


def _format_disk(disk: DiskInfo) -> str:
    parts = []
    if disk.source is not None:
        source = disk.source
        detail = ",".join(x for x in (source.root, source.id, source.profile) if x)
        parts.append(f"{source.type.value}({detail})" if detail else source.type.value)
    if disk.persistence_id is not None:
        parts.append(disk.persistence_id)
    if disk.volume is not None:
        parts.append(f"{disk.volume.container_path}:{disk.volume.mode.value}")
    return ":".join(parts)


def format_entry(entry: Resource) -> str:
    meta, value, count = entry
    text = meta.name
    if _is_simple(meta):
        if meta.reservations:
            text += f"({meta.reservations[0].role})"
    else:
        if meta.allocation_role is not None:
            text += f"(allocated: {meta.allocation_role})"
        if meta.reservations:
            text += (
                "(reservations: [" + ",".join(map(_format_reservation, meta.reservations)) + "])"
            )
        if meta.disk is not None:
            text += "[" + _format_disk(meta.disk) + "]"
        if meta.revocable:
            text += "{REV}"
        if meta.shared:
            text += "<SHARED>" if count == 1 else f"<SHARED x{count}>"
        if meta.provider_id is not None:
            text += f"@{meta.provider_id}"
    return f"{text}:{format_value(meta.kind, value)}"


def format_resources(resources: Resources) -> str:
    return ";".join(format_entry(entry) for entry in resources.sorted_entries())
