"""Core values to and from Mesos v1 JSON (proto field names, enums as names, bytes as
padded base64, ids as `{"value": ...}`), per reference §0.3 and §4.

Parsing raises `WireError` whose message names the offending field; HTTP handlers turn
it into a 400.
"""

from __future__ import annotations

import base64
import binascii
import math
import socket
from collections.abc import Mapping
from typing import Any

from agora.core.attributes import attributes_to_json
from agora.core.master.commands import OfferView
from agora.core.master.info import MasterInfo, TaskStatus
from agora.core.resource_json import ResourceFormat, resources_to_json
from agora.core.task_states import Reason, Source, TaskState

Json = dict[str, Any]


class WireError(ValueError):
    """A request body that does not have the shape the API requires."""


# ----------------------------------------------------------------------- scalars


def obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise WireError(f"'{what}' must be a JSON object")
    return value


def opt_obj(parent: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return {} if value is None else obj(value, what)


def string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise WireError(f"'{what}' must be a string")
    return value


def id_value(value: object, what: str) -> str:
    """`{"value": "..."}` -> the string."""
    if not isinstance(value, Mapping) or not isinstance(value.get("value"), str):
        raise WireError(f'\'{what}\' is required and must look like {{"value": "..."}}')
    text: str = value["value"]
    if not text:
        raise WireError(f"'{what}.value' must not be empty")
    return text


def opt_id(parent: Mapping[str, Any], key: str, what: str) -> str | None:
    return None if parent.get(key) is None else id_value(parent[key], what)


def list_of(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise WireError(f"'{what}' must be a JSON list")
    return value


def decode_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise WireError(f"'{what}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"'{what}' is not valid base64") from None


def encode_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def number(value: object, what: str) -> float:
    """A JSON number (Mesos also takes numeric strings and "Infinity")."""
    if isinstance(value, bool):
        raise WireError(f"'{what}' must be a number")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            raise WireError(f"'{what}' must be a number") from None
    else:
        raise WireError(f"'{what}' must be a number")
    if math.isnan(result):
        raise WireError(f"'{what}' must be a number")
    return result


def nanoseconds_to_s(value: object, what: str) -> float:
    body = obj(value, what)
    return number(body.get("nanoseconds"), f"{what}.nanoseconds") / 1e9


def ip_as_uint32(ip: str) -> int:
    """MasterInfo.ip: IPv4 in network byte order read as a host (little-endian) int."""
    try:
        return int.from_bytes(socket.inet_aton(ip), "little")
    except OSError:
        return 0


# ------------------------------------------------------------------- task status


def status_to_json(status: TaskStatus) -> Json:
    out: Json = {"task_id": {"value": status.task_id}, "state": status.state.value}
    if status.source is not None:
        out["source"] = status.source.value
    if status.reason is not None:
        out["reason"] = status.reason.value
    if status.message is not None:
        out["message"] = status.message
    if status.agent_id is not None:
        out["agent_id"] = {"value": status.agent_id}
    if status.executor_id is not None:
        out["executor_id"] = {"value": status.executor_id}
    if status.timestamp is not None:
        out["timestamp"] = status.timestamp
    if status.uuid is not None:
        out["uuid"] = encode_bytes(status.uuid)
    if status.healthy is not None:
        out["healthy"] = status.healthy
    if status.data is not None:
        out["data"] = encode_bytes(status.data)
    if status.unreachable_time is not None:
        out["unreachable_time"] = {"nanoseconds": int(status.unreachable_time * 1e9)}
    for key, value in status.extra.items():
        out.setdefault(key, value)
    return out


_STATUS_KEYS = frozenset(
    {
        "task_id",
        "state",
        "source",
        "reason",
        "message",
        "agent_id",
        "executor_id",
        "timestamp",
        "uuid",
        "healthy",
        "data",
        "unreachable_time",
        "slave_id",
    }
)


def _enum(cls: Any, value: object, what: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise WireError(f"'{what}' has unknown value {value!r}") from None


def status_from_json(data: object, what: str = "status") -> TaskStatus:
    body = obj(data, what)
    state = _enum(TaskState, body.get("state"), f"{what}.state")
    source = body.get("source")
    reason = body.get("reason")
    message = body.get("message")
    healthy = body.get("healthy")
    if healthy is not None and not isinstance(healthy, bool):
        raise WireError(f"'{what}.healthy' must be a boolean")
    timestamp = body.get("timestamp")
    unreachable = body.get("unreachable_time")
    return TaskStatus(
        task_id=id_value(body.get("task_id"), f"{what}.task_id"),
        state=state,
        source=None if source is None else _enum(Source, source, f"{what}.source"),
        reason=None if reason is None else _enum(Reason, reason, f"{what}.reason"),
        message=None if message is None else string(message, f"{what}.message"),
        agent_id=opt_id(body, "agent_id", f"{what}.agent_id"),
        executor_id=opt_id(body, "executor_id", f"{what}.executor_id"),
        timestamp=None if timestamp is None else number(timestamp, f"{what}.timestamp"),
        uuid=None if body.get("uuid") is None else decode_bytes(body["uuid"], f"{what}.uuid"),
        healthy=healthy,
        data=None if body.get("data") is None else decode_bytes(body["data"], f"{what}.data"),
        unreachable_time=None
        if unreachable is None
        else nanoseconds_to_s(unreachable, f"{what}.unreachable_time"),
        extra={k: v for k, v in body.items() if k not in _STATUS_KEYS},
    )


# ------------------------------------------------------------------- master info


def master_info_to_json(info: MasterInfo) -> Json:
    return {
        "id": info.id,
        "ip": ip_as_uint32(info.ip),
        "port": info.port,
        "pid": f"master@{info.ip}:{info.port}",
        "hostname": info.hostname,
        "version": info.version,
        "address": {"hostname": info.hostname, "ip": info.ip, "port": info.port},
        "capabilities": [{"type": "AGENT_UPDATE"}, {"type": "QUOTA_V2"}],
    }


def master_info_from_json(data: object) -> MasterInfo:
    """MasterInfo as masters publish it in ZooKeeper (ours, or Mesos's own): `address` when
    present, else the uint32 `ip` and `port`; WireError names a missing or bad field."""
    body = obj(data, "MasterInfo")
    address = opt_obj(body, "address", "MasterInfo.address")
    ip = address.get("ip")
    if ip is None:
        raw = number(body.get("ip"), "MasterInfo.ip")
        if not raw.is_integer() or not 0 <= raw < 2**32:
            raise WireError("'MasterInfo.ip' must be an IPv4 address as a uint32")
        ip = socket.inet_ntoa(int(raw).to_bytes(4, "little"))
    port = number(address.get("port", body.get("port")), "MasterInfo.address.port")
    if not port.is_integer() or not 0 < port < 65536:
        raise WireError("'MasterInfo.address.port' must be a port number")
    hostname = body.get("hostname", address.get("hostname", ip))
    return MasterInfo(
        id=string(body.get("id"), "MasterInfo.id"),
        ip=string(ip, "MasterInfo.address.ip"),
        port=int(port),
        hostname=string(hostname, "MasterInfo.hostname"),
        version=string(body.get("version", ""), "MasterInfo.version"),
    )


def resource_format(capabilities: frozenset[str]) -> ResourceFormat:
    if "RESERVATION_REFINEMENT" in capabilities:
        return ResourceFormat.POST_REFINEMENT
    return ResourceFormat.PRE_REFINEMENT


def offer_to_json(offer: OfferView, fmt: ResourceFormat, agent_ip: str = "") -> Json:
    address: Json = {"hostname": offer.hostname, "port": offer.agent_port}
    if agent_ip:
        address["ip"] = agent_ip
    out: Json = {
        "id": {"value": offer.id},
        "framework_id": {"value": offer.framework_id},
        "agent_id": {"value": offer.agent_id},
        "hostname": offer.hostname,
        "url": {"scheme": "http", "address": address, "path": "/slave(1)"},
        "resources": resources_to_json(offer.resources, fmt),
        "allocation_info": {"role": offer.role},
    }
    if offer.attributes:
        out["attributes"] = attributes_to_json(offer.attributes)
    if offer.executor_ids:
        out["executor_ids"] = [{"value": e} for e in offer.executor_ids]
    if offer.region is not None:
        fault: Json = {"region": {"name": offer.region}}
        if offer.zone is not None:
            fault["zone"] = {"name": offer.zone}
        out["domain"] = {"fault_domain": fault}
    return out
