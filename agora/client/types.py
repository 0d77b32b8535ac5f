"""Small typed builders for the Mesos v1 JSON a framework sends, and a typed view of the events
it receives. Everything here is plain data: `to_json()` gives the dict that goes on the wire,
and the drivers accept either these builders or the dicts themselves."""

from __future__ import annotations

import base64
import getpass
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)


def id_json(value: str) -> Json:
    return {"value": value}


@dataclass(slots=True)
class FrameworkInfo:
    """`FrameworkInfo` (reference §4.1). `roles` implies the MULTI_ROLE capability."""

    name: str
    user: str = field(default_factory=getpass.getuser)
    roles: Sequence[str] = ("*",)
    failover_timeout_s: float = 0.0
    checkpoint: bool = False
    capabilities: Sequence[str] = ()
    hostname: str = field(default_factory=socket.gethostname)
    principal: str | None = None
    webui_url: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    framework_id: str | None = None

    def to_json(self) -> Json:
        capabilities = list(dict.fromkeys(["MULTI_ROLE", *self.capabilities]))
        info: Json = {
            "user": self.user,
            "name": self.name,
            "roles": list(self.roles),
            "failover_timeout": self.failover_timeout_s,
            "checkpoint": self.checkpoint,
            "capabilities": [{"type": c} for c in capabilities],
            "hostname": self.hostname,
        }
        if self.principal is not None:
            info["principal"] = self.principal
        if self.webui_url is not None:
            info["webui_url"] = self.webui_url
        if self.labels:
            info["labels"] = {"labels": [{"key": k, "value": v} for k, v in self.labels.items()]}
        if self.framework_id is not None:
            info["id"] = id_json(self.framework_id)
        return info


def scalar(name: str, value: float) -> Json:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def scalar_resources(
    cpus: float = 0.0, mem: float = 0.0, disk: float = 0.0, gpus: float = 0.0, role: str = "*"
) -> list[Json]:
    """Scalar resources for a TaskInfo; `role` is the offer's allocation role."""
    amounts = (("cpus", cpus), ("mem", mem), ("disk", disk), ("gpus", gpus))
    out = [scalar(name, value) for name, value in amounts if value > 0]
    for resource in out:
        resource["allocation_info"] = {"role": role}
    return out


def offer_scalars(offer: Mapping[str, Any]) -> dict[str, float]:
    """Sum of the scalar resources of an offer, by name."""
    totals: dict[str, float] = {}
    for resource in offer.get("resources", ()):
        if resource.get("type") == "SCALAR":
            name = resource["name"]
            totals[name] = totals.get(name, 0.0) + float(resource["scalar"]["value"])
    return totals


def offer_role(offer: Mapping[str, Any]) -> str:
    return str(offer.get("allocation_info", {}).get("role", "*"))


def offer_attributes(offer: Mapping[str, Any]) -> dict[str, str]:
    """Offer attributes as text (`rack:r1`, scalars as numbers, sets/ranges joined)."""
    out: dict[str, str] = {}
    for attribute in offer.get("attributes", ()):
        kind = attribute.get("type")
        if kind == "TEXT":
            out[attribute["name"]] = str(attribute["text"]["value"])
        elif kind == "SCALAR":
            out[attribute["name"]] = f"{attribute['scalar']['value']:g}"
        elif kind == "SET":
            out[attribute["name"]] = ",".join(attribute["set"].get("item", ()))
        elif kind == "RANGES":
            spans = attribute["ranges"].get("range", ())
            out[attribute["name"]] = ",".join(f"{r['begin']}-{r['end']}" for r in spans)
    return out


def command_info(
    command: str | Sequence[str],
    *,
    shell: bool = True,
    environment: Mapping[str, str] | None = None,
    user: str | None = None,
    uris: Iterable[str] = (),
) -> Json:
    """`CommandInfo`: a shell string (`sh -c`), or an argv run without a shell."""
    info: Json
    if shell:
        text = command if isinstance(command, str) else " ".join(command)
        info = {"shell": True, "value": text}
    else:
        argv = [command] if isinstance(command, str) else list(command)
        if not argv:
            raise ValueError("a command needs at least one word")
        info = {"shell": False, "value": argv[0], "arguments": argv}
    if environment:
        info["environment"] = {
            "variables": [{"name": k, "type": "VALUE", "value": v} for k, v in environment.items()]
        }
    if user is not None:
        info["user"] = user
    uri_list = [{"value": u, "extract": True} for u in uris]
    if uri_list:
        info["uris"] = uri_list
    return info


def task_info(
    task_id: str,
    agent_id: str,
    *,
    name: str | None = None,
    command: Json | None = None,
    executor: Json | None = None,
    resources: Sequence[Json] = (),
    data: bytes | None = None,
    labels: Mapping[str, str] | None = None,
) -> Json:
    """`TaskInfo` (reference §4.4): exactly one of `command` or `executor`."""
    if (command is None) == (executor is None):
        raise ValueError("a task needs exactly one of command or executor")
    info: Json = {
        "name": name or task_id,
        "task_id": id_json(task_id),
        "agent_id": id_json(agent_id),
        "resources": list(resources),
    }
    if command is not None:
        info["command"] = command
    if executor is not None:
        info["executor"] = executor
    if data is not None:
        info["data"] = base64.b64encode(data).decode("ascii")
    if labels:
        info["labels"] = {"labels": [{"key": k, "value": v} for k, v in labels.items()]}
    return info


def launch(tasks: Sequence[Json]) -> Json:
    """The LAUNCH offer operation."""
    return {"type": "LAUNCH", "launch": {"task_infos": list(tasks)}}


@dataclass(frozen=True, slots=True)
class Event:
    """One record of a scheduler or executor stream: `type` and its body (`data`)."""

    type: str
    data: Mapping[str, Any]
    raw: Mapping[str, Any]

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Event:
        kind = record.get("type")
        if not isinstance(kind, str):
            raise ValueError("an event needs a string 'type'")
        body = record.get(kind.lower())
        return cls(kind, body if isinstance(body, Mapping) else {}, record)

    # Convenience views; each raises KeyError on an event of another type.

    @property
    def offers(self) -> list[Mapping[str, Any]]:
        return list(self.data["offers"])

    @property
    def status(self) -> Mapping[str, Any]:
        return self.data["status"]  # type: ignore[no-any-return]

    @property
    def message(self) -> str:
        return str(self.data.get("message", ""))


def status_task_id(status: Mapping[str, Any]) -> str:
    return str(status["task_id"]["value"])


def status_agent_id(status: Mapping[str, Any]) -> str | None:
    agent = status.get("agent_id")
    return None if agent is None else str(agent["value"])
