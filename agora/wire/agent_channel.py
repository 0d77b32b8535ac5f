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

from agora.core.attributes import Attributes, format_attributes, parse_attributes
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
from agora.wire.packed import PackedJson, ParseCache

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


def encode_message(message: Json) -> bytes:
    """One message on its own (what `master_event` takes)."""
    return _encoder.encode(message)


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


# ------------------------------------------------- agent -> master, as core events
#
# (Re)registrations are decoded into typed structs in one pass, with the parts that
# repeat across agents and tasks (resources, framework infos, attributes) kept as raw
# bytes and parsed once per distinct value, and each task's TaskInfo kept packed until
# read (agora/wire/packed.py): a failover brings every agent's report at once.


class _AgentInfoWire(msgspec.Struct, kw_only=True):
    hostname: str
    port: int
    resources: msgspec.Raw
    attributes: str = ""
    region: str | None = None
    zone: str | None = None


class _TaskWire(msgspec.Struct, kw_only=True):
    framework_id: str
    task_id: str
    name: str = ""
    state: str
    resources: msgspec.Raw
    executor_id: str | None = None
    status_update_state: str | None = None
    status_update_uuid: bytes | None = None
    raw: msgspec.Raw = msgspec.Raw(b"\x80")


class _ExecutorWire(msgspec.Struct, kw_only=True):
    framework_id: str
    executor_id: str
    resources: msgspec.Raw
    raw: msgspec.Raw = msgspec.Raw(b"\x80")


class _RegisterWire(msgspec.Struct, kw_only=True):
    agent_info: _AgentInfoWire
    capabilities: list[Any] = []
    version: Any = ""


class _ReregisterWire(_RegisterWire, kw_only=True):
    agent_id: str
    tasks: list[_TaskWire] = []
    executors: list[_ExecutorWire] = []
    frameworks: list[msgspec.Raw] = []


class _Head(msgspec.Struct):
    type: Any = None


_head_decoder = msgspec.msgpack.Decoder(_Head)
_register_decoder = msgspec.msgpack.Decoder(_RegisterWire)
_reregister_decoder = msgspec.msgpack.Decoder(_ReregisterWire)
_items_decoder = msgspec.msgpack.Decoder(list[msgspec.Raw])
_STATES = {state.value: state for state in TaskState}
_NIL = b"\xc0"

_parsed_resources = ParseCache(lambda packed: resources_from_json(_decoder.decode(packed)))
_parsed_frameworks = ParseCache(lambda packed: framework_from_json(_decoder.decode(packed)))
_parsed_attributes = ParseCache(parse_attributes)


def decode_master_frame(data: bytes) -> list[msgspec.Raw]:
    """A frame from an agent: its messages, still encoded (see `master_event`)."""
    try:
        return _items_decoder.decode(data)
    except msgspec.ValidationError:
        raise WireError("agent channel frame must be a list of maps") from None
    except msgspec.DecodeError as error:
        raise WireError(f"agent channel frame is not msgpack: {error}") from None


_TYPE_FIRST = b"\xa4type"  # a map's first key "type" (fixstr), as this module encodes


def _type_of(message: msgspec.Raw | bytes) -> Any:
    """The `type` of an encoded message; raises msgspec.ValidationError if it is not a
    map. When "type" is the map's first key (as every message built here has it), it
    is read off the front; otherwise the whole message is scanned for it."""
    data = memoryview(message)
    first = data[0] if data else 0
    start = 1 if 0x81 <= first <= 0x8F else 3 if first == 0xDE else 0  # fixmap, map 16
    if start and data[start : start + 5] == _TYPE_FIRST and len(data) > start + 5:
        size, value = data[start + 5] - 0xA0, start + 6  # a fixstr value
        if 0 <= size < 32 and len(data) >= value + size:
            return bytes(data[value : value + size]).decode()
    return _head_decoder.decode(message).type


def message_type(message: msgspec.Raw | bytes) -> Any:
    """The `type` of an encoded message (None if it has none or is not a map)."""
    try:
        return _type_of(message)
    except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError included
        return None


def _state(value: object, what: str) -> TaskState:
    state = _STATES.get(value) if isinstance(value, str) else None
    if state is None:
        raise WireError(f"agent channel: '{what}' has unknown state {value!r}")
    return state


def _cached_resources(packed: msgspec.Raw, what: str) -> Resources:
    try:
        return _parsed_resources(bytes(packed))
    except InvalidResource as error:
        raise WireError(f"agent channel: '{what}': {error}") from None


def _cached_attributes(text: str) -> Attributes:
    try:
        return _parsed_attributes(text)
    except InvalidResource as error:
        raise WireError(str(error)) from None


def _packed_json(packed: msgspec.Raw, what: str) -> Mapping[str, Any]:
    data = bytes(packed)
    if data == _NIL:
        return {}
    try:
        return PackedJson(data)
    except WireError:
        raise WireError(f"agent channel: '{what}' must be a map") from None


def _agent_info(wire: _AgentInfoWire, resources: Resources) -> AgentInfo:
    if not 0 < wire.port < 65536:
        raise WireError("agent channel: 'agent_info.port' must be a port number")
    return AgentInfo(
        hostname=wire.hostname,
        port=wire.port,
        resources=resources,
        attributes=_cached_attributes(wire.attributes),
        region=wire.region,
        zone=wire.zone,
    )


def _reported_agent_info(wire: _AgentInfoWire) -> AgentInfo:
    return _agent_info(wire, _cached_resources(wire.resources, "agent_info.resources"))


_agent_info_json_decoder = msgspec.json.Decoder(_AgentInfoWire)
_parsed_json_resources = ParseCache(lambda packed: resources_from_json(msgspec.json.decode(packed)))


def agent_info_from_json_bytes(data: bytes) -> AgentInfo:
    """`agent_info_from_json` of encoded JSON (a registry record), with the parts that
    repeat across agents parsed once: a newly elected master reads every agent's."""
    try:
        wire = _agent_info_json_decoder.decode(data)
        resources = _parsed_json_resources(bytes(wire.resources))
    except (msgspec.DecodeError, InvalidResource) as error:
        raise WireError(f"agent info: {error}") from None
    return _agent_info(wire, resources)


def _agent_task(wire: _TaskWire) -> ev.AgentTask:
    update_state = wire.status_update_state
    return ev.AgentTask(
        framework_id=wire.framework_id,
        task_id=wire.task_id,
        name=wire.name,
        state=_state(wire.state, "task.state"),
        resources=_cached_resources(wire.resources, "task.resources"),
        executor_id=wire.executor_id,
        status_update_state=None
        if update_state is None
        else _state(update_state, "task.status_update_state"),
        status_update_uuid=wire.status_update_uuid,
        raw=_packed_json(wire.raw, "task.raw"),
    )


def _agent_executor(wire: _ExecutorWire) -> ev.AgentExecutor:
    return ev.AgentExecutor(
        framework_id=wire.framework_id,
        executor_id=wire.executor_id,
        resources=_cached_resources(wire.resources, "executor.resources"),
        raw=_packed_json(wire.raw, "executor.raw"),
    )


def _capabilities(wire: _RegisterWire) -> frozenset[str]:
    return frozenset(c for c in wire.capabilities if isinstance(c, str))


def _register_event(wire: _RegisterWire, connection_id: str) -> ev.RegisterAgent:
    return ev.RegisterAgent(
        connection_id=connection_id,
        info=_reported_agent_info(wire.agent_info),
        capabilities=_capabilities(wire),
        version=str(wire.version),
    )


def _reregister_event(wire: _ReregisterWire, connection_id: str) -> ev.ReregisterAgent:
    return ev.ReregisterAgent(
        connection_id=connection_id,
        agent_id=wire.agent_id,
        info=_reported_agent_info(wire.agent_info),
        capabilities=_capabilities(wire),
        version=str(wire.version),
        tasks=tuple(_agent_task(t) for t in wire.tasks),
        executors=tuple(_agent_executor(e) for e in wire.executors),
        frameworks=tuple(_parsed_frameworks(bytes(f)) for f in wire.frameworks),
    )


def master_event(
    message: msgspec.Raw | bytes, connection_id: str, agent_id: str | None
) -> ev.MasterEvent | None:
    """An agent's message (msgpack) as a master core event. Messages other than
    (re)registration need the connection to be bound to an agent first; before that
    they are None."""
    kind = None
    try:
        kind = _type_of(message)
        if kind == "REGISTER":
            return _register_event(_register_decoder.decode(message), connection_id)
        if kind == "REREGISTER":
            return _reregister_event(_reregister_decoder.decode(message), connection_id)
        data = _decoder.decode(message)
    except msgspec.ValidationError as error:
        what = f"{kind} message" if isinstance(kind, str) else "message"
        raise WireError(f"agent channel {what}: {error}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise WireError(f"agent channel message is not msgpack: {error}") from None
    return _reported_event(data, connection_id, agent_id)


def _reported_event(
    data: Mapping[str, Any], connection_id: str, agent_id: str | None
) -> ev.MasterEvent | None:
    kind = data.get("type")
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
