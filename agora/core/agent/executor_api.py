"""The executor API (reference §3) as the core sees it: SUBSCRIBE, UPDATE, MESSAGE and
HEARTBEAT calls of custom executors, what SUBSCRIBED carries and which UPDATE calls are
refused, with the message naming the field."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent import launching, recovery
from agora.core.agent.model import Executor, ExecutorKind, ExecutorState
from agora.core.master import commands as mcmd
from agora.core.master.info import AgentInfo, FrameworkInfo, TaskStatus
from agora.core.resource_json import resources_to_json
from agora.core.resources import Resources
from agora.core.task_states import Source, TaskState

if TYPE_CHECKING:
    from agora.core.agent.core import AgentCore

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


# ------------------------------------------------------------------ calls


def _custom_run(
    core: AgentCore, request_id: str, framework_id: str, executor_id: str
) -> Executor | None:
    if framework_id not in core.frameworks:
        core.emit(cmd.Reply(request_id, 400, f"Unknown framework {framework_id}"))
        return None
    run = core.executors.get((framework_id, executor_id))
    if run is None or run.kind is not ExecutorKind.CUSTOM:
        core.emit(cmd.Reply(request_id, 400, f"Unknown executor {executor_id}"))
        return None
    return run


def on_subscribe(core: AgentCore, event: ev.ExecutorSubscribe) -> None:
    run = _custom_run(core, event.request_id, event.framework_id, event.executor_id)
    if run is None:
        return
    if run.state is ExecutorState.TERMINATED:
        core.emit(cmd.Reply(event.request_id, 400, "The executor has terminated"))
        return
    core.emit(cmd.OpenExecutorStream(event.request_id, run.framework_id, run.executor_id))
    resubscribed = run.reregistering  # a recovered executor, back after an agent restart
    run.subscribed = True
    run.registration_deadline = None
    framework = core.frameworks[run.framework_id]
    agent_info = agent_info_json(core.config.info, core.agent_id, core.total)
    core.to_executor(run, subscribed_event(run, framework, agent_info))
    if run.state is ExecutorState.TERMINATING:
        core.to_executor(run, {"type": "SHUTDOWN"})
        return
    run.state = ExecutorState.RUNNING
    for status in event.unacknowledged_updates:
        accept_update(core, run, status)
    if resubscribed:
        recovery.executor_resubscribed(core, run, event.unacknowledged_tasks)
    for task in list(run.tasks.values()):
        if not task.delivered and not task.state.is_terminal:
            launching.deliver(core, run, task)


def _subscribed_run(
    core: AgentCore, event: ev.ExecutorUpdate | ev.ExecutorMessage
) -> Executor | None:
    """The calling executor's run, if it is subscribed (else the call is refused)."""
    run = _custom_run(core, event.request_id, event.framework_id, event.executor_id)
    if run is not None and not run.subscribed:
        core.emit(cmd.Reply(event.request_id, 403, "Executor is not subscribed"))
        return None
    return run


def on_update(core: AgentCore, event: ev.ExecutorUpdate) -> None:
    run = _subscribed_run(core, event)
    if run is None:
        return
    status = event.status
    problem = update_problem(status, run.executor_id)
    if problem is not None:
        core.emit(cmd.Reply(event.request_id, 400, problem))
        return
    core.emit(cmd.Reply(event.request_id, 202))
    accept_update(core, run, status)


def accept_update(core: AgentCore, run: Executor, status: TaskStatus) -> None:
    """Take an executor's update into its task's stream, then acknowledge it to the
    executor (after the stream has it, and has checkpointed it where it checkpoints)."""
    uuid_bytes = status.uuid
    if uuid_bytes is None:
        return
    status = replace(
        status,
        agent_id=core.agent_id,
        executor_id=run.executor_id,
        source=Source.EXECUTOR,
        timestamp=status.timestamp if status.timestamp is not None else core.now,
    )
    core.push(run.framework_id, status)
    ack = {"task_id": {"value": status.task_id}, "uuid": base64.b64encode(uuid_bytes).decode()}
    core.to_executor(run, {"type": "ACKNOWLEDGED", "acknowledged": ack})


def on_message(core: AgentCore, event: ev.ExecutorMessage) -> None:
    run = _subscribed_run(core, event)
    if run is None:
        return
    core.emit(cmd.Reply(event.request_id, 202))
    core.emit(cmd.SendExecutorMessage(run.framework_id, run.executor_id, event.data))


def on_heartbeat(core: AgentCore, event: ev.ExecutorHeartbeat) -> None:
    core.emit(cmd.Reply(event.request_id, 202))


def on_stream_closed(core: AgentCore, event: ev.ExecutorStreamClosed) -> None:
    run = core.executors.get((event.framework_id, event.executor_id))
    if run is not None:
        run.subscribed = False


def message_to_executor(core: AgentCore, message: mcmd.MessageToExecutor) -> None:
    """A framework message for one of this agent's executors (unreliable: dropped when
    the executor is not subscribed)."""
    run = core.executors.get((message.framework_id, message.executor_id))
    if run is not None and run.subscribed:
        data = base64.b64encode(message.data).decode()
        core.to_executor(run, {"type": "MESSAGE", "message": {"data": data}})
