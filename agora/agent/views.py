"""The agent's `/state` view (reference §6.3), built from the core's records, and its
`/monitor/statistics` and `/containers` entries (§6.4) from the containerizer's usage."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

from agora.core.agent.model import Executor, ExecutorKind, ExecutorState, Task
from agora.core.attributes import attributes_to_json
from agora.core.resource_json import resources_to_json
from agora.core.resources import Resources

if TYPE_CHECKING:
    from agora.agent.containerizer.model import Container
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


# ------------------------------------------------------------------ /monitor/statistics

_YIELD_EVERY = 16  # containers measured between returns to the event loop


def _with_limits(stats: Json, container: Container | None) -> Json:
    """Mesos's containerizer reports the allocation even where no isolator does."""
    if container is not None:
        cpus = container.resources.scalar("cpus")
        mem = container.resources.scalar("mem")
        if cpus:
            stats.setdefault("cpus_limit", cpus / 1000)
        if mem:
            stats.setdefault("mem_limit_bytes", mem * 1024 * 1024 // 1000)
    return stats


def _entry(run: Executor, statistics: Json) -> Json:
    source = run.raw.get("source", run.executor_id)
    return {
        "framework_id": run.framework_id,
        "executor_id": run.executor_id,
        "executor_name": str(run.raw.get("name", "")),
        "source": source if isinstance(source, str) else run.executor_id,
        "statistics": statistics,
    }


async def usage_entries(service: AgentService, with_status: bool = False) -> list[Json]:
    """One entry per live executor container (Mesos `/monitor/statistics`; with
    `with_status`, `/containers`). Measuring reads /proc or cgroup files, so the loop
    gets a turn every few containers and stays responsive with many of them."""
    containerizer = service.containerizer
    runs = [r for r in service.core.runs.values() if r.state is not ExecutorState.TERMINATED]
    entries: list[Json] = []
    for number, run in enumerate(runs, 1):
        if number % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        container = containerizer.containers.get(run.container_id)
        stats = _with_limits(containerizer.usage(run.container_id), container)
        entry = _entry(run, stats)
        if with_status:
            entry["container_id"] = run.container_id
            status: Json = {"container_id": {"value": run.container_id}}
            if container is not None and container.leader_pid is not None:
                status["executor_pid"] = container.leader_pid
            entry["status"] = status
        entries.append(entry)
    return entries
