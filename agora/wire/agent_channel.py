"""Agora's own master <-> agent protocol, carried over one WebSocket per agent.

Each binary frame is a msgpack array of messages (so either side may batch); each
message is a map with a `type`. The master-bound messages become master core events;
the agent-bound ones are the core's `AgentMessage` commands. Resources travel in the
Mesos JSON form (post-refinement, with allocation roles), task and executor infos as
the framework's raw JSON, bytes natively.

The path is `/api/v1/agent` on the master; the agent offers `PROTOCOL_VERSION` in the
`Agora-Agent-Protocol` header and the master refuses a version it does not speak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from agora.core.attributes import format_attributes, parse_attributes
from agora.core.errors import InvalidResource
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.info import (
    AgentInfo,
    FrameworkInfo,
    InvalidFrameworkInfo,
    framework_info_from_json,
)
from agora.core.resource_json import resources_from_json, resources_to_json
from agora.core.resources import Resources
from agora.core.task_states import TaskState
from agora.wire.mesos_json import Json, WireError, status_from_json

PATH = "/api/v1/agent"
# WebSocket close code of a master that refuses the agent's id for good (marked gone):
# only then does the agent forget its id. Other closes (a master stepping down, a bad
# frame, an agent marked unreachable) mean "connect again".
CLOSE_REFUSED = 4403
# In REGISTERED / REREGISTERED: the seconds of silence after which the agent takes the
# link for dead and connects again (the master's ping timeout x max missed pings).
PING_TIMEOUT_FIELD = "ping_timeout_s"
PROTOCOL_HEADER = "Agora-Agent-Protocol"
PROTOCOL_VERSION = "1"

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def encode_frame(messages: Sequence[Json]) -> bytes:
    return _encoder.encode(list(messages))


def decode_frame(data: bytes) -> list[Mapping[str, Any]]:
    try:
        messages = _decoder.decode(data)
    except msgspec.DecodeError as error:
        raise WireError(f"agent channel frame is not msgpack: {error}") from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise WireError("agent channel frame must be a list of maps")
    return messages


# ------------------------------------------------------------------ shared parts


def _resources(value: object, what: str) -> Resources:
    try:
        return resources_from_json(value, what)
    except InvalidResource as error:
        raise WireError(str(error)) from None


def _str(message: Mapping[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str):
        raise WireError(f"agent channel: '{key}' must be a string")
    return value


def _bytes(message: Mapping[str, Any], key: str) -> bytes:
    value = message.get(key)
    if not isinstance(value, bytes):
        raise WireError(f"agent channel: '{key}' must be bytes")
    return value


def agent_info_to_json(info: AgentInfo) -> Json:
    out: Json = {
        "hostname": info.hostname,
        "port": info.port,
        "resources": resources_to_json(info.resources),
        "attributes": format_attributes(info.attributes),
    }
    if info.region is not None:
        out["region"] = info.region
    if info.zone is not None:
        out["zone"] = info.zone
    return out


def agent_info_from_json(data: object) -> AgentInfo:
    if not isinstance(data, Mapping):
        raise WireError("agent channel: 'agent_info' must be a map")
    port = data.get("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise WireError("agent channel: 'agent_info.port' must be a port number")
    try:
        attributes = parse_attributes(str(data.get("attributes", "")))
    except InvalidResource as error:
        raise WireError(str(error)) from None
    region, zone = data.get("region"), data.get("zone")
    return AgentInfo(
        hostname=_str(data, "hostname"),
        port=port,
        resources=_resources(data.get("resources"), "agent_info.resources"),
        attributes=attributes,
        region=region if isinstance(region, str) else None,
        zone=zone if isinstance(zone, str) else None,
    )


def framework_to_json(info: FrameworkInfo) -> Json:
    return dict(info.raw)


def framework_from_json(data: object) -> FrameworkInfo:
    try:
        return framework_info_from_json(data)
    except InvalidFrameworkInfo as error:
        raise WireError(str(error)) from None


def _executor_spec_to_json(spec: cmd.ExecutorSpec) -> Json:
    return {
        "executor_id": spec.executor_id,
        "framework_id": spec.framework_id,
        "resources": resources_to_json(spec.resources),
        "raw": dict(spec.raw),
    }


def _executor_spec_from_json(data: Mapping[str, Any]) -> cmd.ExecutorSpec:
    return cmd.ExecutorSpec(
        executor_id=_str(data, "executor_id"),
        framework_id=_str(data, "framework_id"),
        resources=_resources(data.get("resources"), "executor.resources"),
        raw=dict(data.get("raw") or {}),
    )


def launch_to_json(launch: cmd.TaskLaunch) -> Json:
    out: Json = {
        "task_id": launch.task_id,
        "name": launch.name,
        "agent_id": launch.agent_id,
        "resources": resources_to_json(launch.resources),
        "raw": dict(launch.raw),
    }
    if launch.executor is not None:
        out["executor"] = _executor_spec_to_json(launch.executor)
    return out


def launch_from_json(data: Mapping[str, Any]) -> cmd.TaskLaunch:
    executor = data.get("executor")
    return cmd.TaskLaunch(
        task_id=_str(data, "task_id"),
        name=_str(data, "name"),
        agent_id=_str(data, "agent_id"),
        resources=_resources(data.get("resources"), "task.resources"),
        executor=None if executor is None else _executor_spec_from_json(executor),
        raw=dict(data.get("raw") or {}),
    )


# ------------------------------------------------------------- master -> agent


def agent_message_to_json(message: cmd.AgentMessage) -> Json:
    if isinstance(message, cmd.Ping):
        return {"type": "PING"}
    if isinstance(message, cmd.RunTask):
        return {
            "type": "RUN_TASK",
            "framework": framework_to_json(message.framework),
            "task": launch_to_json(message.task),
        }
    if isinstance(message, cmd.AcknowledgeUpdate):
        return {
            "type": "ACKNOWLEDGE",
            "framework_id": message.framework_id,
            "task_id": message.task_id,
            "uuid": message.uuid,
        }
    if isinstance(message, cmd.AgentRegistered | cmd.AgentReregistered):
        kind = "REGISTERED" if isinstance(message, cmd.AgentRegistered) else "REREGISTERED"
        return {"type": kind, "agent_id": message.agent_id, "master_id": message.master_id}
    if isinstance(message, cmd.RunTaskGroup):
        return {
            "type": "RUN_TASK_GROUP",
            "framework": framework_to_json(message.framework),
            "executor": _executor_spec_to_json(message.executor),
            "tasks": [launch_to_json(t) for t in message.tasks],
        }
    if isinstance(message, cmd.KillTask):
        out: Json = {
            "type": "KILL_TASK",
            "framework_id": message.framework_id,
            "task_id": message.task_id,
        }
        if message.kill_policy is not None:
            out["kill_policy"] = dict(message.kill_policy)
        return out
    if isinstance(message, cmd.ShutdownExecutor):
        return {
            "type": "SHUTDOWN_EXECUTOR",
            "framework_id": message.framework_id,
            "executor_id": message.executor_id,
        }
    if isinstance(message, cmd.ShutdownFramework):
        return {"type": "SHUTDOWN_FRAMEWORK", "framework_id": message.framework_id}
    if isinstance(message, cmd.MessageToExecutor):
        return {
            "type": "MESSAGE_TO_EXECUTOR",
            "framework_id": message.framework_id,
            "executor_id": message.executor_id,
            "data": message.data,
        }
    if isinstance(message, cmd.CheckpointResources):
        return {"type": "CHECKPOINT_RESOURCES", "total": resources_to_json(message.total)}
    if isinstance(message, cmd.UpdateFrameworkInfo):
        return {"type": "UPDATE_FRAMEWORK", "framework": framework_to_json(message.framework)}
    return {"type": "SHUTDOWN_AGENT", "message": message.message}


def agent_message_from_json(data: Mapping[str, Any]) -> cmd.AgentMessage:
    kind = data.get("type")
    if kind == "PING":
        return cmd.Ping()
    if kind == "RUN_TASK":
        task = launch_from_json(data["task"])
        return cmd.RunTask(framework_from_json(data.get("framework")), task)
    if kind == "ACKNOWLEDGE":
        return cmd.AcknowledgeUpdate(
            _str(data, "framework_id"), _str(data, "task_id"), _bytes(data, "uuid")
        )
    if kind == "REGISTERED":
        return cmd.AgentRegistered(_str(data, "agent_id"), _str(data, "master_id"))
    if kind == "REREGISTERED":
        return cmd.AgentReregistered(_str(data, "agent_id"), _str(data, "master_id"))
    if kind == "RUN_TASK_GROUP":
        return cmd.RunTaskGroup(
            framework_from_json(data.get("framework")),
            _executor_spec_from_json(data["executor"]),
            tuple(launch_from_json(t) for t in data.get("tasks", ())),
        )
    if kind == "KILL_TASK":
        return cmd.KillTask(
            _str(data, "framework_id"), _str(data, "task_id"), data.get("kill_policy")
        )
    if kind == "SHUTDOWN_EXECUTOR":
        return cmd.ShutdownExecutor(_str(data, "framework_id"), _str(data, "executor_id"))
    if kind == "SHUTDOWN_FRAMEWORK":
        return cmd.ShutdownFramework(_str(data, "framework_id"))
    if kind == "MESSAGE_TO_EXECUTOR":
        return cmd.MessageToExecutor(
            _str(data, "framework_id"), _str(data, "executor_id"), _bytes(data, "data")
        )
    if kind == "CHECKPOINT_RESOURCES":
        return cmd.CheckpointResources(_resources(data.get("total"), "total"))
    if kind == "UPDATE_FRAMEWORK":
        return cmd.UpdateFrameworkInfo(framework_from_json(data.get("framework")))
    if kind == "SHUTDOWN_AGENT":
        return cmd.ShutdownAgent(str(data.get("message", "")))
    raise WireError(f"agent channel: unknown message type {kind!r}")


# ------------------------------------------------------------- agent -> master


def register(info: AgentInfo, capabilities: frozenset[str], version: str) -> Json:
    return {
        "type": "REGISTER",
        "agent_info": agent_info_to_json(info),
        "capabilities": sorted(capabilities),
        "version": version,
    }


def reregister(
    agent_id: str,
    info: AgentInfo,
    capabilities: frozenset[str],
    version: str,
    tasks: Sequence[ev.AgentTask],
    executors: Sequence[ev.AgentExecutor],
    frameworks: Sequence[FrameworkInfo],
) -> Json:
    out = register(info, capabilities, version)
    out["type"] = "REREGISTER"
    out["agent_id"] = agent_id
    out["tasks"] = [
        {
            "framework_id": t.framework_id,
            "task_id": t.task_id,
            "name": t.name,
            "state": t.state.value,
            "resources": resources_to_json(t.resources),
            "executor_id": t.executor_id,
            "status_update_state": None
            if t.status_update_state is None
            else t.status_update_state.value,
            "status_update_uuid": t.status_update_uuid,
            "raw": dict(t.raw),
        }
        for t in tasks
    ]
    out["executors"] = [
        {
            "framework_id": e.framework_id,
            "executor_id": e.executor_id,
            "resources": resources_to_json(e.resources),
            "raw": dict(e.raw),
        }
        for e in executors
    ]
    out["frameworks"] = [framework_to_json(f) for f in frameworks]
    return out


def pong() -> Json:
    return {"type": "PONG"}


def status_update(
    framework_id: str, status_json: Json, latest_state: TaskState | None = None
) -> Json:
    out: Json = {"type": "STATUS_UPDATE", "framework_id": framework_id, "status": status_json}
    if latest_state is not None:
        out["latest_state"] = latest_state.value
    return out


def task_ended(framework_id: str, task_id: str, state: TaskState) -> Json:
    return {
        "type": "TASK_ENDED",
        "framework_id": framework_id,
        "task_id": task_id,
        "state": state.value,
    }


def executor_exited(framework_id: str, executor_id: str, status: int) -> Json:
    return {
        "type": "EXECUTOR_EXITED",
        "framework_id": framework_id,
        "executor_id": executor_id,
        "status": status,
    }


def executor_message(framework_id: str, executor_id: str, data: bytes) -> Json:
    return {
        "type": "EXECUTOR_MESSAGE",
        "framework_id": framework_id,
        "executor_id": executor_id,
        "data": data,
    }


def _state(value: object, what: str) -> TaskState:
    try:
        return TaskState(str(value))
    except ValueError:
        raise WireError(f"agent channel: '{what}' has unknown state {value!r}") from None


def _agent_task(data: Mapping[str, Any]) -> ev.AgentTask:
    update_state = data.get("status_update_state")
    uuid = data.get("status_update_uuid")
    executor_id = data.get("executor_id")
    return ev.AgentTask(
        framework_id=_str(data, "framework_id"),
        task_id=_str(data, "task_id"),
        name=str(data.get("name", "")),
        state=_state(data.get("state"), "task.state"),
        resources=_resources(data.get("resources"), "task.resources"),
        executor_id=executor_id if isinstance(executor_id, str) else None,
        status_update_state=None
        if update_state is None
        else _state(update_state, "task.status_update_state"),
        status_update_uuid=uuid if isinstance(uuid, bytes) else None,
        raw=dict(data.get("raw") or {}),
    )


def master_event_from_json(
    data: Mapping[str, Any], connection_id: str, agent_id: str | None
) -> ev.MasterEvent | None:
    """An agent's message as a master core event. Messages other than (re)registration
    need the connection to be bound to an agent first; before that they are None."""
    kind = data.get("type")
    capabilities = frozenset(c for c in data.get("capabilities", ()) if isinstance(c, str))
    if kind == "REGISTER":
        return ev.RegisterAgent(
            connection_id=connection_id,
            info=agent_info_from_json(data.get("agent_info")),
            capabilities=capabilities,
            version=str(data.get("version", "")),
        )
    if kind == "REREGISTER":
        return ev.ReregisterAgent(
            connection_id=connection_id,
            agent_id=_str(data, "agent_id"),
            info=agent_info_from_json(data.get("agent_info")),
            capabilities=capabilities,
            version=str(data.get("version", "")),
            tasks=tuple(_agent_task(t) for t in data.get("tasks", ())),
            executors=tuple(
                ev.AgentExecutor(
                    framework_id=_str(e, "framework_id"),
                    executor_id=_str(e, "executor_id"),
                    resources=_resources(e.get("resources"), "executor.resources"),
                    raw=dict(e.get("raw") or {}),
                )
                for e in data.get("executors", ())
            ),
            frameworks=tuple(framework_from_json(f) for f in data.get("frameworks", ())),
        )
    if agent_id is None:
        return None
    if kind == "PONG":
        return ev.AgentPong(agent_id=agent_id, connection_id=connection_id)
    if kind == "STATUS_UPDATE":
        latest = data.get("latest_state")
        return ev.StatusUpdateFromAgent(
            agent_id=agent_id,
            framework_id=_str(data, "framework_id"),
            status=status_from_json(data.get("status")),
            latest_state=None if latest is None else _state(latest, "latest_state"),
        )
    if kind == "TASK_ENDED":
        return ev.TaskEndedOnAgent(
            agent_id=agent_id,
            framework_id=_str(data, "framework_id"),
            task_id=_str(data, "task_id"),
            state=_state(data.get("state"), "state"),
        )
    if kind == "EXECUTOR_EXITED":
        status = data.get("status")
        return ev.ExecutorExited(
            agent_id=agent_id,
            framework_id=_str(data, "framework_id"),
            executor_id=_str(data, "executor_id"),
            status=status if isinstance(status, int) else 0,
        )
    if kind == "EXECUTOR_MESSAGE":
        return ev.ExecutorMessage(
            agent_id=agent_id,
            framework_id=_str(data, "framework_id"),
            executor_id=_str(data, "executor_id"),
            data=_bytes(data, "data"),
        )
    raise WireError(f"agent channel: unknown message type {kind!r}")
