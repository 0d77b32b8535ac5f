"""The master's state as the legacy endpoints (`/master/state`, `/master/tasks`...) and
the operator API render it (reference §5.1, §6.1-6.2). Pure functions of the core."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from agora.core.attributes import format_attribute_value
from agora.core.master.core import MasterCore
from agora.core.master.model import Agent, Executor, Framework, Task
from agora.core.resource_json import ResourceFormat, resources_to_json
from agora.core.resources import EMPTY, Resources
from agora.core.task_states import TaskState
from agora.core.values import Kind, format_ranges, format_set, millis_to_float
from agora.wire.mesos_json import Json, master_info_to_json, status_to_json

VERSION = "1.11.0"
BUILD = {
    "version": VERSION,
    "build_date": "2026-11-22 00:00:00",
    "build_time": 1795305600.0,
    "build_user": "agora",
    "git_branch": "main",
    "git_tag": VERSION,
}


@dataclass(frozen=True)
class ServiceInfo:
    """What the shell knows and the core does not."""

    start_time: float
    elected_time: float
    flags: dict[str, str]
    agent_ips: dict[str, str]


def summary(resources: Resources) -> Json:
    """Mesos's resource summary: scalars as numbers, ranges and sets as strings."""
    out: Json = {"cpus": 0.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0}
    for part, suffix in ((resources.non_revocable(), ""), (resources.revocable(), "_revocable")):
        kinds = {e.meta.name: e.meta.kind for e in part}
        for name, kind in kinds.items():
            key = name + suffix
            if kind is Kind.SCALAR:
                out[key] = millis_to_float(part.scalar(name))
            elif kind is Kind.RANGES:
                out[key] = format_ranges(part.ranges(name))
            else:
                out[key] = format_set(part.set_items(name))
    return out


def full(resources: Resources) -> list[Json]:
    return resources_to_json(resources, ResourceFormat.ENDPOINT)


def _time(seconds: float | None) -> Json:
    return {"nanoseconds": int((seconds or 0.0) * 1e9)}


def _labels(raw: Any) -> list[Json]:
    if isinstance(raw, dict) and isinstance(raw.get("labels"), list):
        return list(raw["labels"])
    return []


# ------------------------------------------------------------------------- tasks


def task_json(task: Task) -> Json:
    out: Json = {
        "id": task.task_id,
        "name": task.name,
        "framework_id": task.framework_id,
        "executor_id": task.executor_id or "",
        "slave_id": task.agent_id,
        "agent_id": task.agent_id,
        "state": task.state.value,
        "resources": summary(task.resources),
        "role": task.role,
        "statuses": [
            {"state": s.state.value, "timestamp": s.timestamp or 0.0} for s in task.statuses
        ],
    }
    raw = task.raw
    for key in ("labels", "discovery", "container", "health_check"):
        if key in raw:
            out[key] = _labels(raw[key]) if key == "labels" else raw[key]
    if isinstance(raw.get("command"), dict) and "user" in raw["command"]:
        out["user"] = raw["command"]["user"]
    return out


def task_v1(task: Task) -> Json:
    out: Json = {
        "name": task.name,
        "task_id": {"value": task.task_id},
        "framework_id": {"value": task.framework_id},
        "agent_id": {"value": task.agent_id},
        "state": task.state.value,
        "resources": full(task.resources),
        "statuses": [status_to_json(s) for s in task.statuses],
    }
    if task.executor_id:
        out["executor_id"] = {"value": task.executor_id}
    if task.status_update_state is not None:
        out["status_update_state"] = task.status_update_state.value
    for key in ("labels", "discovery", "container", "health_check", "kill_policy"):
        if key in task.raw:
            out[key] = task.raw[key]
    return out


def _all_tasks(framework: Framework) -> Iterator[Task]:
    yield from framework.tasks.values()
    yield from framework.unreachable_tasks.values()
    yield from framework.completed_tasks


# -------------------------------------------------------------------- frameworks


def _framework_used(framework: Framework, core: MasterCore) -> Resources:
    used = EMPTY
    for task in framework.tasks.values():
        if not task.state.is_terminal:
            used = used + task.resources
    for by_id in framework.executors.values():
        for executor in by_id.values():
            used = used + executor.resources
    return used


def _framework_offered(framework: Framework, core: MasterCore) -> Resources:
    return Resources.sum(core.offers[o].resources for o in framework.offers if o in core.offers)


def _executor_json(executor: Executor) -> Json:
    raw = executor.raw
    command: Json = raw["command"] if isinstance(raw.get("command"), dict) else {}
    out: Json = {
        "executor_id": executor.executor_id,
        "name": raw.get("name", ""),
        "framework_id": executor.framework_id,
        "command": {
            "shell": command.get("shell", True),
            "value": command.get("value", ""),
            "argv": command.get("arguments", []),
            "uris": command.get("uris", []),
        },
        "resources": summary(executor.resources),
        "role": executor.role,
        "slave_id": executor.agent_id,
    }
    if "type" in raw:
        out["type"] = raw["type"]
    return out


def framework_json(framework: Framework, core: MasterCore) -> Json:
    info = framework.info
    used = _framework_used(framework, core)
    offered = _framework_offered(framework, core)
    out: Json = {
        "id": framework.id,
        "name": info.name,
        "used_resources": summary(used),
        "offered_resources": summary(offered),
        "resources": summary(used + offered),
        "capabilities": sorted(info.capabilities),
        "hostname": info.hostname or "",
        "webui_url": info.webui_url or "",
        "active": framework.active,
        "connected": framework.connected,
        "recovered": framework.recovered,
        "user": info.user,
        "failover_timeout": info.failover_timeout_s,
        "checkpoint": info.checkpoint,
        "registered_time": framework.registered_time,
        "unregistered_time": framework.unregistered_time or 0.0,
        "tasks": [task_json(t) for t in framework.tasks.values()],
        "unreachable_tasks": [task_json(t) for t in framework.unreachable_tasks.values()],
        "completed_tasks": [task_json(t) for t in framework.completed_tasks],
        "offers": [_offer_json(core, o) for o in sorted(framework.offers) if o in core.offers],
        "executors": [
            _executor_json(e) for by_id in framework.executors.values() for e in by_id.values()
        ],
        "offer_constraints": {},
    }
    if info.multi_role:
        out["roles"] = list(info.roles)
    else:
        out["role"] = info.roles[0]
    if info.principal is not None:
        out["principal"] = info.principal
    if framework.reregistered_time is not None:
        out["reregistered_time"] = framework.reregistered_time
    if info.labels:
        out["labels"] = _labels(info.raw.get("labels"))
    return out


def _offer_json(core: MasterCore, offer_id: str) -> Json:
    offer = core.offers[offer_id]
    return {
        "id": offer.id,
        "framework_id": offer.framework_id,
        "slave_id": offer.agent_id,
        "allocation_info": {"role": offer.role},
        "resources": summary(offer.resources),
    }


def framework_v1(framework: Framework, core: MasterCore) -> Json:
    out: Json = {
        "framework_info": dict(framework.info.raw, id={"value": framework.id}),
        "active": framework.active,
        "connected": framework.connected,
        "recovered": framework.recovered,
        "registered_time": _time(framework.registered_time),
        "allocated_resources": full(_framework_used(framework, core)),
        "offered_resources": full(_framework_offered(framework, core)),
    }
    if framework.reregistered_time is not None:
        out["reregistered_time"] = _time(framework.reregistered_time)
    if framework.unregistered_time is not None:
        out["unregistered_time"] = _time(framework.unregistered_time)
    return out


# ------------------------------------------------------------------------ agents


def _agent_used(agent: Agent) -> Resources:
    return Resources.sum(agent.used_by().values())


def _agent_offered(agent: Agent, core: MasterCore) -> Resources:
    return Resources.sum(core.offers[o].resources for o in agent.offers if o in core.offers)


def agent_pid(agent: Agent, ips: dict[str, str]) -> str:
    return f"slave(1)@{ips.get(agent.id, agent.info.hostname)}:{agent.info.port}"


def agent_json(agent: Agent, core: MasterCore, ips: dict[str, str], full_view: bool) -> Json:
    total = agent.info.resources
    used = _agent_used(agent).unallocate()
    offered = _agent_offered(agent, core).unallocate()
    reserved = {role: summary(total.reserved(role)) for role in sorted(total.roles())}
    out: Json = {
        "id": agent.id,
        "hostname": agent.info.hostname,
        "port": agent.info.port,
        "attributes": {
            name: _attribute_json(value) for name, value in agent.info.attributes.items()
        },
        "pid": agent_pid(agent, ips),
        "registered_time": agent.registered_time,
        "resources": summary(total),
        "used_resources": summary(used),
        "offered_resources": summary(offered),
        "reserved_resources": reserved,
        "unreserved_resources": summary(total.unreserved()),
        "active": agent.connected and agent.active,
        "deactivated": not agent.active,
        "version": agent.version or VERSION,
        "capabilities": sorted(agent.capabilities),
    }
    if agent.reregistered_time is not None:
        out["reregistered_time"] = agent.reregistered_time
    if agent.info.region is not None:
        fault: Json = {"region": {"name": agent.info.region}}
        if agent.info.zone is not None:
            fault["zone"] = {"name": agent.info.zone}
        out["domain"] = {"fault_domain": fault}
    if full_view:
        out["reserved_resources_full"] = {
            role: full(total.reserved(role)) for role in sorted(total.roles())
        }
        out["unreserved_resources_full"] = full(total.unreserved())
        out["used_resources_full"] = full(used)
        out["offered_resources_full"] = full(offered)
    return out


def _attribute_json(value: Any) -> Any:
    if isinstance(value, int):
        return millis_to_float(value)
    return format_attribute_value(value)


def agent_v1(agent: Agent, core: MasterCore, ips: dict[str, str]) -> Json:
    info: Json = {
        "hostname": agent.info.hostname,
        "port": agent.info.port,
        "resources": full(agent.info.resources),
        "id": {"value": agent.id},
    }
    return {
        "agent_info": info,
        "active": agent.connected and agent.active,
        "deactivated": not agent.active,
        "version": agent.version or VERSION,
        "pid": agent_pid(agent, ips),
        "registered_time": _time(agent.registered_time),
        **(
            {"reregistered_time": _time(agent.reregistered_time)}
            if agent.reregistered_time is not None
            else {}
        ),
        "total_resources": full(agent.info.resources),
        "allocated_resources": full(_agent_used(agent)),
        "offered_resources": full(_agent_offered(agent, core)),
        "capabilities": [{"type": c} for c in sorted(agent.capabilities)],
    }


# ------------------------------------------------------------------- whole views


def leader_info(core: MasterCore) -> Json:
    info = core.info
    return {
        "id": info.id,
        "pid": f"master@{info.ip}:{info.port}",
        "port": info.port,
        "hostname": info.hostname,
    }


def master_state(core: MasterCore, service: ServiceInfo) -> Json:
    info = core.info
    agents = list(core.agents.values())
    return {
        **BUILD,
        "start_time": service.start_time,
        "elected_time": service.elected_time,
        "id": info.id,
        "pid": f"master@{info.ip}:{info.port}",
        "hostname": info.hostname,
        "capabilities": ["AGENT_UPDATE", "QUOTA_V2"],
        "activated_slaves": sum(1 for a in agents if a.connected and a.active),
        "deactivated_slaves": sum(1 for a in agents if not (a.connected and a.active)),
        "unreachable_slaves": len(core.unreachable_agents),
        "leader": f"master@{info.ip}:{info.port}",
        "leader_info": leader_info(core),
        "flags": service.flags,
        "slaves": [agent_json(a, core, service.agent_ips, False) for a in agents],
        "recovered_slaves": [],
        "frameworks": [framework_json(f, core) for f in core.frameworks.values()],
        "completed_frameworks": [
            framework_json(f, core) for f in core.completed_frameworks.values()
        ],
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    }


def tasks_view(
    core: MasterCore,
    limit: int = 100,
    offset: int = 0,
    descending: bool = True,
    framework_id: str | None = None,
    task_id: str | None = None,
) -> Json:
    frameworks: Iterable[Framework] = list(core.frameworks.values()) + list(
        core.completed_frameworks.values()
    )
    tasks = [
        t
        for f in frameworks
        if framework_id is None or f.id == framework_id
        for t in _all_tasks(f)
        if task_id is None or t.task_id == task_id
    ]
    tasks.sort(key=_first_timestamp, reverse=descending)
    return {"tasks": [task_json(t) for t in tasks[offset : offset + limit]]}


def _first_timestamp(task: Task) -> float:
    return (task.statuses[0].timestamp or 0.0) if task.statuses else 0.0


def state_v1(core: MasterCore, ips: dict[str, str]) -> Json:
    return {
        "get_tasks": tasks_v1(core),
        "get_executors": executors_v1(core),
        "get_frameworks": frameworks_v1(core),
        "get_agents": agents_v1(core, ips),
    }


def tasks_v1(core: MasterCore) -> Json:
    out: Json = {"tasks": [], "unreachable_tasks": [], "completed_tasks": []}
    for framework in list(core.frameworks.values()) + list(core.completed_frameworks.values()):
        out["tasks"].extend(task_v1(t) for t in framework.tasks.values())
        out["unreachable_tasks"].extend(task_v1(t) for t in framework.unreachable_tasks.values())
        out["completed_tasks"].extend(task_v1(t) for t in framework.completed_tasks)
    return {k: v for k, v in out.items() if v}


def executors_v1(core: MasterCore) -> Json:
    executors = [
        {"executor_info": dict(e.raw), "agent_id": {"value": e.agent_id}}
        for f in core.frameworks.values()
        for by_id in f.executors.values()
        for e in by_id.values()
    ]
    return {"executors": executors} if executors else {}


def frameworks_v1(core: MasterCore) -> Json:
    out: Json = {}
    active = [framework_v1(f, core) for f in core.frameworks.values()]
    completed = [framework_v1(f, core) for f in core.completed_frameworks.values()]
    if active:
        out["frameworks"] = active
    if completed:
        out["completed_frameworks"] = completed
    return out


def agents_v1(core: MasterCore, ips: dict[str, str]) -> Json:
    agents = [agent_v1(a, core, ips) for a in core.agents.values()]
    return {"agents": agents} if agents else {}


def roles_view(core: MasterCore) -> list[Json]:
    """(name, weight, framework ids, allocated resources) per known role."""
    tree = core.allocator.roles()
    # Roles with a framework or a task, and those an operator gave a weight or quota.
    names: set[str] = {"*", *tree.quota_roles()}
    names.update(r for r in tree.roles() if tree.weight(r) != 1.0)
    by_role: dict[str, list[str]] = {}
    allocated: dict[str, Resources] = {}
    for framework in core.frameworks.values():
        for role in framework.info.roles:
            names.add(role)
            by_role.setdefault(role, []).append(framework.id)
    for agent in core.agents.values():
        for task in agent.all_tasks():
            if not task.state.is_terminal:
                allocated[task.role] = allocated.get(task.role, EMPTY) + task.resources
                names.add(task.role)
    out = []
    for name in sorted(names):
        used = allocated.get(name, EMPTY)
        out.append(
            {
                "name": name,
                "weight": core.allocator.weight(name),
                "frameworks": sorted(by_role.get(name, [])),
                "resources": used,
            }
        )
    return out


def master_info_json(core: MasterCore) -> Json:
    return master_info_to_json(core.info)


def task_counts(core: MasterCore) -> dict[TaskState, int]:
    counts = dict.fromkeys(TaskState, 0)
    for framework in core.frameworks.values():
        for task in _all_tasks(framework):
            counts[task.state] += 1
    return counts
