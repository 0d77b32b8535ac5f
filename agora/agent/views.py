"""The agent's `/state` view (reference §6.3), built from the core's records."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from agora.core.agent.model import Executor, ExecutorKind, Task
from agora.core.attributes import attributes_to_json
from agora.core.resource_json import resources_to_json
from agora.core.resources import Resources

if TYPE_CHECKING:
    from agora.agent.service import AgentService

Json = dict[str, Any]


def _resources_map(resources: Resources) -> Json:
    out: Json = {}
    for entry in resources_to_json(resources):
        name = entry["name"]
        if entry.get("type") == "SCALAR":
            out[name] = round(out.get(name, 0) + entry["scalar"]["value"], 3)
        elif entry.get("type") == "RANGES":
            ranges = entry["ranges"]["range"]
            text = ", ".join(f"{r['begin']}-{r['end']}" for r in ranges)
            out[name] = f"[{text}]" if name not in out else out[name][:-1] + f", {text}]"
    for name in ("cpus", "mem", "disk", "gpus"):
        out.setdefault(name, 0)
    return out


def _task(task: Task, agent_id: str) -> Json:
    raw = task.launch.raw
    out: Json = {
        "id": task.task_id,
        "name": task.launch.name,
        "framework_id": task.framework_id,
        "executor_id": task.executor_id if task.launch.executor is not None else "",
        "slave_id": agent_id,
        "agent_id": agent_id,
        "state": task.state.value,
        "resources": _resources_map(task.launch.resources),
        "statuses": [],
    }
    role = task.launch.resources.allocation_role()
    if role is not None:
        out["role"] = role
    for key in ("labels", "discovery", "container", "command"):
        if key in raw:
            out[key] = raw[key]
    return out


def _executor(run: Executor, agent_id: str) -> Json:
    source = run.raw.get("source", run.executor_id)
    out: Json = {
        "id": run.executor_id,
        "name": run.raw.get("name", ""),
        "source": source if isinstance(source, str) else run.executor_id,
        "container": run.container_id,
        "directory": run.directory,
        "resources": _resources_map(run.resources),
        "type": "CUSTOM" if run.kind is ExecutorKind.CUSTOM else "DEFAULT",
        "tasks": [_task(t, agent_id) for t in run.tasks.values() if t.delivered or t.proc_id],
        "queued_tasks": [
            _task(t, agent_id) for t in run.tasks.values() if not (t.delivered or t.proc_id)
        ],
        "completed_tasks": [_task(t, agent_id) for t in run.completed_tasks],
    }
    if run.kind is ExecutorKind.COMMAND:
        out.pop("type")
    role = run.resources.allocation_role()
    if role is not None:
        out["role"] = role
    return out


def state_view(service: AgentService) -> Json:
    core = service.core
    config = service.config
    agent_id = core.agent_id or ""
    frameworks: dict[str, Json] = {}
    completed: dict[str, Json] = {}

    def framework_entry(table: dict[str, Json], framework_id: str) -> Json:
        if framework_id not in table:
            info = core.frameworks.get(framework_id)
            entry: Json = {
                "id": framework_id,
                "name": info.name if info else "",
                "user": info.user if info else "",
                "failover_timeout": info.failover_timeout_s if info else 0,
                "checkpoint": info.checkpoint if info else False,
                "hostname": (info.hostname or "") if info else "",
                "executors": [],
                "completed_executors": [],
            }
            if info is not None:
                if info.principal:
                    entry["principal"] = info.principal
                if info.multi_role:
                    entry["roles"] = list(info.roles)
                else:
                    entry["role"] = info.roles[0] if info.roles else "*"
            table[framework_id] = entry
        return table[framework_id]

    for run in core.runs.values():
        framework_entry(frameworks, run.framework_id)["executors"].append(_executor(run, agent_id))
    for run in core.completed_executors:
        table = frameworks if run.framework_id in frameworks else completed
        framework_entry(table, run.framework_id)["completed_executors"].append(
            _executor(run, agent_id)
        )
    total = core.total
    allocated = Resources.sum(t.launch.resources for t in core.tasks.values())
    return {
        "version": config.version,
        "build_date": "",
        "build_time": 0,
        "build_user": "agora",
        "start_time": service.start_time,
        "id": agent_id,
        "pid": f"slave(1)@{config.endpoint}",
        "hostname": config.info.hostname,
        "capabilities": sorted(config.capabilities),
        "resources": _resources_map(total),
        "reserved_resources": {},
        "unreserved_resources": _resources_map(total.unreserved()),
        "reserved_resources_full": {},
        "unreserved_resources_full": resources_to_json(total.unreserved()),
        "reserved_resources_allocated": {},
        "unreserved_resources_allocated": _resources_map(allocated.unallocate()),
        "resource_providers": [],
        "attributes": {
            a["name"]: a.get("text", {}).get("value", a.get("scalar", {}).get("value"))
            for a in attributes_to_json(config.info.attributes)
        },
        "master_hostname": service.options.master.rsplit(":", 1)[0],
        "flags": dict(service.options.flags),
        "frameworks": list(frameworks.values()),
        "completed_frameworks": list(completed.values()),
        "local_hostname": socket.gethostname(),
    }
