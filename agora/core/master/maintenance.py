"""The maintenance schedule (Mesos `maintenance.Schedule`): which machines will be
unavailable when. The master validates and persists it and answers it back; machines
named in it are DRAINING (reference §8.1).

Validation follows Mesos's `maintenance::validation::schedule`: every window names at
least one machine, each machine id has a hostname or an ip, no machine is in two
windows, and every unavailability has a start (and a non-negative duration).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agora.core.errors import AgoraError

Json = Mapping[str, Any]


class InvalidSchedule(AgoraError, ValueError):  # noqa: N818
    pass


def validate_schedule(schedule: object) -> Json:
    """The schedule in canonical form (hostnames lower-cased, as Mesos does), or
    InvalidSchedule naming the offending field."""
    if not isinstance(schedule, Mapping):
        raise InvalidSchedule("'schedule' must be an object")
    windows = schedule.get("windows", [])
    if not isinstance(windows, list):
        raise InvalidSchedule("'schedule.windows' must be a list")
    seen: set[tuple[str, str]] = set()
    out = []
    for i, window in enumerate(windows):
        where = f"schedule.windows[{i}]"
        if not isinstance(window, Mapping):
            raise InvalidSchedule(f"'{where}' must be an object")
        machines = _machines(window.get("machine_ids"), f"{where}.machine_ids")
        for machine in machines:
            key = (machine.get("hostname", ""), machine.get("ip", ""))
            if key in seen:
                raise InvalidSchedule(f"'{where}': machine {_name(machine)} is in two windows")
            seen.add(key)
        unavailability = _unavailability(window.get("unavailability"), f"{where}.unavailability")
        out.append({"machine_ids": machines, "unavailability": unavailability})
    return {"windows": out}


def scheduled_machines(schedule: Json) -> list[Json]:
    """Every machine the schedule names, in order."""
    return [machine for window in schedule.get("windows", []) for machine in window["machine_ids"]]


def _machines(value: object, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise InvalidSchedule(f"'{where}' must list at least one machine")
    out = []
    for j, machine in enumerate(value):
        if not isinstance(machine, Mapping):
            raise InvalidSchedule(f"'{where}[{j}]' must be an object")
        hostname, ip = machine.get("hostname"), machine.get("ip")
        entry: dict[str, str] = {}
        for name, field_value in (("hostname", hostname), ("ip", ip)):
            if field_value is None:
                continue
            if not isinstance(field_value, str) or not field_value:
                raise InvalidSchedule(f"'{where}[{j}].{name}' must be a non-empty string")
            entry[name] = field_value.lower() if name == "hostname" else field_value
        if not entry:
            raise InvalidSchedule(f"'{where}[{j}]' needs a hostname or an ip")
        out.append(entry)
    return out


def _unavailability(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidSchedule(f"'{where}' is required and must be an object")
    out: dict[str, Any] = {
        "start": {"nanoseconds": _nanoseconds(value.get("start"), f"{where}.start")}
    }
    if value.get("duration") is not None:
        duration = _nanoseconds(value["duration"], f"{where}.duration")
        if duration < 0:
            raise InvalidSchedule(f"'{where}.duration' must not be negative")
        out["duration"] = {"nanoseconds": duration}
    return out


def _nanoseconds(value: object, where: str) -> int:
    raw = value.get("nanoseconds") if isinstance(value, Mapping) else None
    if isinstance(raw, str) and raw.lstrip("-").isdigit():
        raw = int(raw)  # protobuf JSON renders int64 as a string
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidSchedule(f"'{where}.nanoseconds' is required and must be an integer")
    return raw


def _name(machine: Json) -> str:
    return "/".join(machine[k] for k in ("hostname", "ip") if k in machine)
