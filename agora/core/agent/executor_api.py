"""Pure pieces of the executor API (reference §3): what SUBSCRIBED carries and which
UPDATE calls are refused, with the message naming the field."""

from __future__ import annotations

from typing import Any

from agora.core.agent.model import Executor
from agora.core.master.info import AgentInfo, FrameworkInfo, TaskStatus
from agora.core.resource_json import resources_to_json
from agora.core.resources import Resources
from agora.core.task_states import Source, TaskState

Json = dict[str, Any]
UUID_BYTES = 16


def update_problem(status: TaskStatus, executor_id: str) -> str | None:
    """Why an executor's UPDATE is refused (a 400), or None."""
    if status.uuid is None or len(status.uuid) != UUID_BYTES:
        return "'status.uuid' must be a 16-byte UUID"
    if status.executor_id is not None and status.executor_id != executor_id:
        return "'status.executor_id' does not match the call's executor_id"
    if status.source is not None and status.source is not Source.EXECUTOR:
        return "'status.source' must be SOURCE_EXECUTOR"
    if status.state is TaskState.STAGING:
        return "'status.state' must not be TASK_STAGING"
    return None


def agent_info_json(info: AgentInfo, agent_id: str | None, total: Resources) -> Json:
    return {
        "id": {"value": agent_id or ""},
        "hostname": info.hostname,
        "port": info.port,
        "resources": resources_to_json(total),
    }


def subscribed_event(run: Executor, framework: FrameworkInfo, agent_info: Json) -> Json:
    """SUBSCRIBED: pymesos asserts the executor and framework ids are exactly
    `{"value": ...}` objects equal to its environment's."""
    framework_raw = dict(framework.raw)
    framework_raw["id"] = {"value": run.framework_id}
    subscribed: Json = {
        "executor_info": dict(run.raw),
        "framework_info": framework_raw,
        "agent_info": agent_info,
        "container_id": {"value": run.container_id},
    }
    return {"type": "SUBSCRIBED", "subscribed": subscribed}
