"""The agent core: what this agent runs, which status updates it owes the master, and
what to launch, signal or tell executors next. Pure: `handle(event, now)` returns
commands; `next_deadline()` says when to call `handle(Tick(), t)`.

Built-in executors run in the agent itself: a command task (TaskInfo.command) is one
supervised process whose executor id is the task id; a task group for a DEFAULT
executor is one process per task in the executor's sandbox. Custom executors are
launched once per (framework, executor id) and talk to the agent over the executor API.

This module holds the state, the master link, the timers and the helpers the handler
modules share; the handlers live by noun beside it: `launching` (tasks, task groups and
executors started), `processes` (exits, kills, executor shutdown), `checking` (health
checks and checks), `executor_api` (the executor HTTP API), `checkpointing` (the
records a checkpointing framework leaves on disk) and `recovery` (an agent restarted on
its work dir picks up where the last one stopped).
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

from agora.core.agent import (
    checking,
    checkpointing,
    executor_api,
    health,
    launching,
    processes,
    recovery,
)
from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent.launch import duration_s, sandbox_path
from agora.core.agent.model import (
    AgentConfig,
    Executor,
    ExecutorKind,
    ExecutorState,
    Task,
    TimerKind,
)
from agora.core.agent.stream import StatusStream
from agora.core.master import commands as mcmd
from agora.core.master import events as mev
from agora.core.master.info import FrameworkInfo, TaskStatus
from agora.core.seeded import Rng, seeded
from agora.core.task_states import Reason, Source, TaskState

Json = dict[str, Any]
Key = tuple[str, str]
_COMPLETED_EXECUTORS_KEPT = 100


class AgentCore:
    def __init__(
        self, config: AgentConfig, rng: Rng | None = None, agent_id: str | None = None
    ) -> None:
        self.config = config
        self.rng = rng if rng is not None else seeded(0)
        self.agent_id = agent_id
        self.master_id: str | None = None
        self.connected = False
        self.registered = False
        self.recovering = False  # waiting for recovered executors to re-subscribe
        self.rebooted = False  # recovered from a checkpoint written before a reboot
        self.frameworks: dict[str, FrameworkInfo] = {}
        self.executors: dict[Key, Executor] = {}  # current run per (framework, executor)
        self.runs: dict[str, Executor] = {}  # container id -> run, until retired
        self.completed_executors: list[Executor] = []
        self.tasks: dict[Key, Task] = {}  # until their terminal update is acknowledged
        self.streams: dict[Key, StatusStream] = {}
        self.procs: dict[str, tuple[str, str | None]] = {}  # proc id -> (container, task)
        # Executor exits to tell the master once registered (they happened while away).
        self.unreported_exits: list[cmd.SendExecutorExited] = []
        self.total = config.info.resources
        self._out: list[cmd.AgentCommand] = []
        self._timers: list[tuple[float, int, TimerKind, Any]] = []
        self._seq = 0
        self._now = 0.0
        self.health = health.CheckBook()
        self._handlers: dict[type, Callable[[Any], None]] = {
            ev.Tick: self._on_tick,
            ev.MasterConnected: self._on_connected,
            ev.MasterDisconnected: self._on_disconnected,
            ev.FromMaster: self._on_master,
            ev.ProcessLaunched: partial(processes.on_launched, self),
            ev.ProcessLaunchFailed: partial(processes.on_launch_failed, self),
            ev.ProcessExited: partial(processes.on_exited, self),
            ev.ContainerLimited: partial(processes.on_limited, self),
            ev.CheckResult: partial(checking.on_check_result, self),
            ev.ExecutorSubscribe: partial(executor_api.on_subscribe, self),
            ev.ExecutorUpdate: partial(executor_api.on_update, self),
            ev.ExecutorMessage: partial(executor_api.on_message, self),
            ev.ExecutorHeartbeat: partial(executor_api.on_heartbeat, self),
            ev.ExecutorStreamClosed: partial(executor_api.on_stream_closed, self),
            ev.Recovered: partial(recovery.on_recovered, self),
        }

    # ================================================================ interface

    def handle(self, event: ev.AgentEvent, now: float) -> list[cmd.AgentCommand]:
        self._now = now
        self._out = []
        self._handlers[type(event)](event)
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def live_tasks(self) -> Iterator[Task]:
        return iter(self.tasks.values())

    # ================================================================ helpers

    @property
    def now(self) -> float:
        return self._now

    def emit(self, command: cmd.AgentCommand) -> None:
        self._out.append(command)

    def arm(self, deadline: float, kind: TimerKind, key: Any) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (deadline, self._seq, kind, key))

    def new_uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def checkpoints(self, framework_id: str) -> bool:
        """Does this framework's state survive an agent restart (FrameworkInfo.checkpoint)?"""
        framework = self.frameworks.get(framework_id)
        return framework is not None and framework.checkpoint

    def update(
        self,
        task: Task,
        state: TaskState,
        *,
        source: Source = Source.EXECUTOR,
        reason: Reason | None = None,
        message: str | None = None,
        healthy: bool | None = None,
        check_status: Mapping[str, Any] | None = None,
    ) -> None:
        """A new status update for `task`, generated by the agent (as its executor)."""
        if check_status is None:
            check_status = health.fresh_check_status(task.launch.raw)
        status = TaskStatus(
            task_id=task.task_id,
            state=state,
            source=source,
            reason=reason,
            message=message,
            agent_id=self.agent_id,
            executor_id=task.executor_id,
            timestamp=self._now,
            uuid=self.new_uuid().bytes,
            healthy=healthy,
            extra={} if check_status is None else {"check_status": check_status},
        )
        self.push(task.framework_id, status)

    def push(self, framework_id: str, status: TaskStatus) -> None:
        """Queue an update on its task's stream: checkpointed (before it is forwarded)
        when the framework checkpoints, sent now when it is the stream's head."""
        key = (framework_id, status.task_id)
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = StatusStream(framework_id, status.task_id)
        task = self.tasks.get(key)
        fresh = not stream.closed and status.uuid not in stream.seen
        if task is not None and not task.state.is_terminal:
            task.state = status.state
        if fresh and task is not None:
            checkpointing.update(self, task, status)
        to_send = stream.push(status, self._now, self.registered)
        if to_send is not None:
            self.send_update(stream, to_send)
        elif status.state.is_terminal and self.registered:
            self.emit(cmd.SendTaskEnded(framework_id, status.task_id, status.state))

    def send_update(self, stream: StatusStream, status: TaskStatus) -> None:
        task = self.tasks.get((stream.framework_id, stream.task_id))
        latest = task.state if task is not None else None
        self.emit(cmd.SendStatusUpdate(stream.framework_id, status, latest))
        if stream.retry_deadline is not None:
            self.arm(stream.retry_deadline, TimerKind.RETRY, (stream.framework_id, stream.task_id))

    def run_of(self, task: Task) -> Executor | None:
        run = self.runs.get(task.container_id)
        if run is not None:
            return run
        return self.executors.get((task.framework_id, task.executor_id))

    def new_run(
        self,
        framework_id: str,
        executor_id: str,
        kind: ExecutorKind,
        raw: Mapping[str, Any],
        resources: Any,
    ) -> Executor:
        old = self.executors.get((framework_id, executor_id))
        if old is not None:
            self.retire(old, force=True)
        container_id = str(self.new_uuid())
        directory = sandbox_path(
            self.config.work_dir, self.agent_id or "", framework_id, executor_id, container_id
        )
        run = Executor(framework_id, executor_id, kind, container_id, directory, raw, resources)
        self.executors[run.key] = run
        self.runs[container_id] = run
        checkpointing.new_run(self, run)
        return run

    def retire(self, run: Executor, force: bool = False) -> None:
        """Move a terminated run with no live tasks to the completed executors."""
        if not force and (run.state is not ExecutorState.TERMINATED or run.tasks):
            return
        if self.executors.get(run.key) is run:
            del self.executors[run.key]
        if self.runs.pop(run.container_id, None) is not None:
            self.completed_executors.append(run)
            del self.completed_executors[:-_COMPLETED_EXECUTORS_KEPT]
            checkpointing.run_completed(self, run)

    def terminate(self, run: Executor) -> None:
        """The run is over and none of its processes is left: release its container."""
        run.state = ExecutorState.TERMINATED
        if not run.destroyed:
            run.destroyed = True
            self.emit(cmd.DestroyContainer(run.container_id))

    def executor_exited(self, run: Executor, wait_status: int) -> None:
        """Tell the master an executor is gone (it frees the executor's resources) now,
        or once this agent is registered again."""
        report = cmd.SendExecutorExited(run.framework_id, run.executor_id, wait_status)
        if self.registered:
            self.emit(report)
        else:
            self.unreported_exits.append(report)

    def executor_grace_s(self, run: Executor) -> float:
        grace = duration_s(run.raw.get("shutdown_grace_period"))
        return self.config.executor_shutdown_grace_period_s if grace is None else grace

    def to_executor(self, run: Executor, event: Json) -> None:
        self.emit(cmd.ToExecutor(run.framework_id, run.executor_id, event))

    def remember_framework(self, framework: FrameworkInfo) -> None:
        """The master sent (or re-sent) a framework's info: keep it, checkpointed."""
        if framework.id is None:
            return
        changed = self.frameworks.get(framework.id) != framework
        self.frameworks[framework.id] = framework
        if changed:
            checkpointing.framework(self, framework)

    # ================================================================ master link

    def _on_connected(self, event: ev.MasterConnected) -> None:
        self.connected = True
        self.registered = False
        if self.agent_id is None:
            self.emit(cmd.Register(None))
            return
        tasks = []
        for task in self.tasks.values():
            run = self.run_of(task)
            head = self.streams[task.key].head if task.key in self.streams else None
            tasks.append(
                mev.AgentTask(
                    framework_id=task.framework_id,
                    task_id=task.task_id,
                    name=task.launch.name,
                    state=task.state,
                    resources=task.launch.resources,
                    executor_id=None
                    if run is None or run.kind is ExecutorKind.COMMAND
                    else task.executor_id,
                    status_update_state=None if head is None else head.state,
                    status_update_uuid=None if head is None else head.uuid,
                    raw=task.launch.raw,
                )
            )
        executors = tuple(
            mev.AgentExecutor(
                framework_id=run.framework_id,
                executor_id=run.executor_id,
                resources=run.resources,
                raw=run.raw,
            )
            for run in self.runs.values()
            if run.kind is not ExecutorKind.COMMAND and run.state is not ExecutorState.TERMINATED
        )
        self.emit(
            cmd.Register(self.agent_id, tuple(tasks), executors, tuple(self.frameworks.values()))
        )

    def _on_disconnected(self, event: ev.MasterDisconnected) -> None:
        was_registered = self.registered
        self.connected = False
        self.registered = False
        for stream in self.streams.values():
            stream.pause()
        if event.refusal is not None and not was_registered:
            recovery.on_refused(self, event.refusal)

    def _on_master(self, event: ev.FromMaster) -> None:
        message = event.message
        if isinstance(message, mcmd.Ping):
            self.emit(cmd.Pong())
        elif isinstance(message, mcmd.AcknowledgeUpdate):
            self._on_ack(message)
        elif isinstance(message, mcmd.RunTask):
            launching.run_task(self, message.framework, message.task)
        elif isinstance(message, mcmd.RunTaskGroup):
            launching.run_task_group(self, message)
        elif isinstance(message, mcmd.KillTask):
            processes.kill(self, message.framework_id, message.task_id, message.kill_policy)
        elif isinstance(message, mcmd.AgentRegistered | mcmd.AgentReregistered):
            self._on_registered(message.agent_id, message.master_id)
        elif isinstance(message, mcmd.ShutdownExecutor):
            run = self.executors.get((message.framework_id, message.executor_id))
            if run is not None:
                processes.shutdown_executor(self, run)
        elif isinstance(message, mcmd.ShutdownFramework):
            for run in [r for r in self.runs.values() if r.framework_id == message.framework_id]:
                processes.shutdown_executor(self, run)
        elif isinstance(message, mcmd.MessageToExecutor):
            executor_api.message_to_executor(self, message)
        elif isinstance(message, mcmd.UpdateFrameworkInfo):
            self.remember_framework(message.framework)
        elif isinstance(message, mcmd.CheckpointResources):
            self.total = message.total
        elif isinstance(message, mcmd.ShutdownAgent):
            recovery.on_shutdown(self, message.message)

    def _on_registered(self, agent_id: str, master_id: str) -> None:
        if agent_id != self.agent_id:
            self.agent_id = agent_id
            self.emit(cmd.Checkpoint(checkpointing.agent_record(self, agent_id)))
        self.master_id = master_id
        self.registered = True
        for report in self.unreported_exits:
            self.emit(report)
        self.unreported_exits.clear()
        for stream in self.streams.values():
            head = stream.resume(self._now)
            if head is not None:
                self.send_update(stream, head)

    def _on_ack(self, message: mcmd.AcknowledgeUpdate) -> None:
        key = (message.framework_id, message.task_id)
        stream = self.streams.get(key)
        if stream is None:
            return
        matched, to_send = stream.acknowledge(message.uuid, self._now, self.registered)
        if not matched:
            self.emit(cmd.Log("debug", "unexpected acknowledgement", {"task_id": key[1]}))
            return
        task = self.tasks.get(key)
        if task is not None:
            checkpointing.acknowledgement(self, task, message.uuid)
        if to_send is not None:
            self.send_update(stream, to_send)
        if stream.closed:
            del self.streams[key]
            self.complete_task(key)

    def complete_task(self, key: Key) -> None:
        task = self.tasks.pop(key, None)
        if task is None:
            return
        run = self.run_of(task)
        if run is None:
            return
        run.tasks.pop(task.task_id, None)
        run.completed_tasks.append(task)
        del run.completed_tasks[: -self.config.completed_tasks_kept]
        self.retire(run)

    # ================================================================ timers

    def _on_tick(self, event: ev.Tick) -> None:
        while self._timers and self._timers[0][0] <= self._now:
            _, _, kind, key = heapq.heappop(self._timers)
            if kind is TimerKind.RETRY:
                stream = self.streams.get(key)
                if stream is not None and self.registered:
                    status = stream.due(self._now)
                    if status is not None:
                        self.send_update(stream, status)
            elif kind is TimerKind.KILL:
                processes.kill_due(self, self.tasks.get(key))
            elif kind is TimerKind.REGISTRATION:
                processes.registration_timeout(self, self.runs.get(key))
            elif kind is TimerKind.SHUTDOWN:
                processes.shutdown_due(self, self.runs.get(key))
            elif kind is TimerKind.CHECK:
                checking.run_check(self, key)
            elif kind is TimerKind.REREGISTRATION:
                recovery.reregistration_timeout(self, self.runs.get(key))
