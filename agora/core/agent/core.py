"""The agent core: what this agent runs, which status updates it owes the master, and
what to launch, signal or tell executors next. Pure: `handle(event, now)` returns
commands; `next_deadline()` says when to call `handle(Tick(), t)`.

Built-in executors run in the agent itself: a command task (TaskInfo.command) is one
supervised process whose executor id is the task id; a task group for a DEFAULT
executor is one process per task in the executor's sandbox. Custom executors are
launched once per (framework, executor id) and talk to the agent over the executor API.
"""

from __future__ import annotations

import base64
import heapq
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from enum import Enum
from typing import Any

from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent import health
from agora.core.agent.executor_api import agent_info_json, subscribed_event, update_problem
from agora.core.agent.launch import (
    InvalidCommandError,
    command_argv,
    command_environment,
    describe_exit,
    duration_s,
    exit_code,
    kill_grace_s,
    sandbox_path,
)
from agora.core.agent.model import AgentConfig, Executor, ExecutorKind, ExecutorState, Task
from agora.core.agent.stream import StatusStream
from agora.core.container.config import ContainerConfig, Limitation, task_user
from agora.core.durations import stout_duration
from agora.core.master import commands as mcmd
from agora.core.master import events as mev
from agora.core.master.info import FrameworkInfo, TaskStatus
from agora.core.resource_json import resources_to_json
from agora.core.seeded import Rng, seeded
from agora.core.task_states import Reason, Source, TaskState

Json = dict[str, Any]
Key = tuple[str, str]
TASK_KILLING_STATE = "TASK_KILLING_STATE"
_COMPLETED_EXECUTORS_KEPT = 100


class TimerKind(Enum):
    RETRY = 1
    KILL = 2
    REGISTRATION = 3
    SHUTDOWN = 4
    CHECK = 5  # a health check or check is due (key: health.Key)


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
        self.frameworks: dict[str, FrameworkInfo] = {}
        self.executors: dict[Key, Executor] = {}  # current run per (framework, executor)
        self.runs: dict[str, Executor] = {}  # container id -> run, until retired
        self.completed_executors: list[Executor] = []
        self.tasks: dict[Key, Task] = {}  # until their terminal update is acknowledged
        self.streams: dict[Key, StatusStream] = {}
        self.procs: dict[str, tuple[str, str | None]] = {}  # proc id -> (container, task)
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
            ev.ProcessLaunched: self._on_launched,
            ev.ProcessLaunchFailed: self._on_launch_failed,
            ev.ProcessExited: self._on_exited,
            ev.ContainerLimited: self._on_limited,
            ev.CheckResult: self._on_check_result,
            ev.ExecutorSubscribe: self._on_subscribe,
            ev.ExecutorUpdate: self._on_executor_update,
            ev.ExecutorMessage: self._on_executor_message,
            ev.ExecutorHeartbeat: self._on_heartbeat,
            ev.ExecutorStreamClosed: self._on_stream_closed,
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

    def _emit(self, command: cmd.AgentCommand) -> None:
        self._out.append(command)

    def _arm(self, deadline: float, kind: TimerKind, key: Any) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (deadline, self._seq, kind, key))

    def _new_uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _update(
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
            uuid=self._new_uuid().bytes,
            healthy=healthy,
            extra={} if check_status is None else {"check_status": check_status},
        )
        self._push(task.framework_id, status)

    def _push(self, framework_id: str, status: TaskStatus) -> None:
        key = (framework_id, status.task_id)
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = StatusStream(framework_id, status.task_id)
        task = self.tasks.get(key)
        if task is not None and not task.state.is_terminal:
            task.state = status.state
        to_send = stream.push(status, self._now, self.registered)
        if to_send is not None:
            self._send_update(stream, to_send)
        elif status.state.is_terminal and self.registered:
            self._emit(cmd.SendTaskEnded(framework_id, status.task_id, status.state))

    def _send_update(self, stream: StatusStream, status: TaskStatus) -> None:
        task = self.tasks.get((stream.framework_id, stream.task_id))
        latest = task.state if task is not None else None
        self._emit(cmd.SendStatusUpdate(stream.framework_id, status, latest))
        if stream.retry_deadline is not None:
            self._arm(stream.retry_deadline, TimerKind.RETRY, (stream.framework_id, stream.task_id))

    def _run_of(self, task: Task) -> Executor | None:
        proc = self.procs.get(task.proc_id) if task.proc_id else None
        if proc is not None:
            return self.runs.get(proc[0])
        return self.executors.get((task.framework_id, task.executor_id))

    def _new_run(
        self,
        framework_id: str,
        executor_id: str,
        kind: ExecutorKind,
        raw: Mapping[str, Any],
        resources: Any,
    ) -> Executor:
        old = self.executors.get((framework_id, executor_id))
        if old is not None:
            self._retire(old, force=True)
        container_id = str(self._new_uuid())
        directory = sandbox_path(
            self.config.work_dir, self.agent_id or "", framework_id, executor_id, container_id
        )
        run = Executor(framework_id, executor_id, kind, container_id, directory, raw, resources)
        self.executors[run.key] = run
        self.runs[container_id] = run
        return run

    def _retire(self, run: Executor, force: bool = False) -> None:
        """Move a terminated run with no live tasks to the completed executors."""
        if not force and (run.state is not ExecutorState.TERMINATED or run.tasks):
            return
        if self.executors.get(run.key) is run:
            del self.executors[run.key]
        if self.runs.pop(run.container_id, None) is not None:
            self.completed_executors.append(run)
            del self.completed_executors[:-_COMPLETED_EXECUTORS_KEPT]

    def _terminate(self, run: Executor) -> None:
        """The run is over and none of its processes is left: release its container."""
        run.state = ExecutorState.TERMINATED
        if not run.destroyed:
            run.destroyed = True
            self._emit(cmd.DestroyContainer(run.container_id))

    def _container(
        self, run: Executor, task: Task | None, sandbox: str, command: object
    ) -> ContainerConfig:
        framework = self.frameworks.get(run.framework_id)
        info = task.launch.raw.get("container") if task is not None else None
        if not isinstance(info, Mapping):
            info = run.raw.get("container")
        uris = command.get("uris") if isinstance(command, Mapping) else None
        resources = run.resources
        for other in run.tasks.values():
            if (
                other is not task
                and not other.state.is_terminal
                and run.kind is not (ExecutorKind.COMMAND)
            ):
                resources = resources + other.launch.resources
        if task is not None and run.kind is not ExecutorKind.COMMAND:
            resources = resources + task.launch.resources
        return ContainerConfig(
            container_id=run.container_id,
            framework_id=run.framework_id,
            executor_id=run.executor_id,
            task_id=task.task_id if task is not None else None,
            directory=run.directory,
            sandbox=sandbox,
            resources=resources,
            user=task_user(command, framework.user if framework else None, self.config.switch_user),
            container_info=info if isinstance(info, Mapping) else None,
            uris=tuple(u for u in uris if isinstance(u, Mapping)) if isinstance(uris, list) else (),
        )

    def _task_env(
        self, run: Executor, task_id: str, sandbox: str, command: object
    ) -> dict[str, str]:
        env = dict(self.config.base_env)
        env.update(self._common_env(run, sandbox))
        env["MESOS_TASK_ID"] = task_id
        env.update(command_environment(command))
        return env

    def _common_env(self, run: Executor, sandbox: str) -> dict[str, str]:
        framework = self.frameworks.get(run.framework_id)
        checkpoint = framework is not None and framework.checkpoint
        env = {
            "MESOS_FRAMEWORK_ID": run.framework_id,
            "MESOS_EXECUTOR_ID": run.executor_id,
            "MESOS_AGENT_ID": self.agent_id or "",
            "MESOS_SLAVE_ID": self.agent_id or "",
            "MESOS_AGENT_ENDPOINT": self.config.endpoint,
            "MESOS_SLAVE_PID": f"slave(1)@{self.config.endpoint}",
            "MESOS_DIRECTORY": sandbox,
            "MESOS_SANDBOX": sandbox,
            "MESOS_CONTAINER_ID": run.container_id,
            "MESOS_CONTAINER_NAME": f"mesos-{run.container_id}",
            "MESOS_CHECKPOINT": "1" if checkpoint else "0",
            "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            "LIBPROCESS_PORT": "0",
        }
        role = run.resources.allocation_role() if run.resources else None
        if role is not None:
            env["MESOS_ALLOCATION_ROLE"] = role
        return env

    def _executor_grace_s(self, run: Executor) -> float:
        grace = duration_s(run.raw.get("shutdown_grace_period"))
        return self.config.executor_shutdown_grace_period_s if grace is None else grace

    # ================================================================ master link

    def _on_connected(self, event: ev.MasterConnected) -> None:
        self.connected = True
        self.registered = False
        if self.agent_id is None:
            self._emit(cmd.Register(None))
            return
        tasks = []
        for task in self.tasks.values():
            run = self._run_of(task)
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
        self._emit(
            cmd.Register(self.agent_id, tuple(tasks), executors, tuple(self.frameworks.values()))
        )

    def _on_disconnected(self, event: ev.MasterDisconnected) -> None:
        self.connected = False
        self.registered = False
        for stream in self.streams.values():
            stream.pause()

    def _on_master(self, event: ev.FromMaster) -> None:
        message = event.message
        if isinstance(message, mcmd.Ping):
            self._emit(cmd.Pong())
        elif isinstance(message, mcmd.AcknowledgeUpdate):
            self._on_ack(message)
        elif isinstance(message, mcmd.RunTask):
            self._run_task(message.framework, message.task)
        elif isinstance(message, mcmd.RunTaskGroup):
            self._run_task_group(message)
        elif isinstance(message, mcmd.KillTask):
            self._kill(message.framework_id, message.task_id, message.kill_policy)
        elif isinstance(message, mcmd.AgentRegistered | mcmd.AgentReregistered):
            self._on_registered(message.agent_id, message.master_id)
        elif isinstance(message, mcmd.ShutdownExecutor):
            run = self.executors.get((message.framework_id, message.executor_id))
            if run is not None:
                self._shutdown_executor(run)
        elif isinstance(message, mcmd.ShutdownFramework):
            for run in [r for r in self.runs.values() if r.framework_id == message.framework_id]:
                self._shutdown_executor(run)
        elif isinstance(message, mcmd.MessageToExecutor):
            run = self.executors.get((message.framework_id, message.executor_id))
            if run is not None and run.subscribed:
                data = base64.b64encode(message.data).decode()
                self._to_executor(run, {"type": "MESSAGE", "message": {"data": data}})
        elif isinstance(message, mcmd.UpdateFrameworkInfo):
            if message.framework.id is not None:
                self.frameworks[message.framework.id] = message.framework
        elif isinstance(message, mcmd.CheckpointResources):
            self.total = message.total
        elif isinstance(message, mcmd.ShutdownAgent):
            self._emit(cmd.Stop(message.message))

    def _on_registered(self, agent_id: str, master_id: str) -> None:
        self.agent_id = agent_id
        self.master_id = master_id
        self.registered = True
        for stream in self.streams.values():
            head = stream.resume(self._now)
            if head is not None:
                self._send_update(stream, head)

    def _on_ack(self, message: mcmd.AcknowledgeUpdate) -> None:
        key = (message.framework_id, message.task_id)
        stream = self.streams.get(key)
        if stream is None:
            return
        matched, to_send = stream.acknowledge(message.uuid, self._now, self.registered)
        if not matched:
            self._emit(cmd.Log("debug", "unexpected acknowledgement", {"task_id": key[1]}))
            return
        if to_send is not None:
            self._send_update(stream, to_send)
        if stream.closed:
            del self.streams[key]
            self._complete_task(key)

    def _complete_task(self, key: Key) -> None:
        task = self.tasks.pop(key, None)
        if task is None:
            return
        run = self._run_of(task)
        if run is None:
            return
        run.tasks.pop(task.task_id, None)
        run.completed_tasks.append(task)
        del run.completed_tasks[: -self.config.completed_tasks_kept]
        self._retire(run)

    # ================================================================ launching

    def _run_task(self, framework: FrameworkInfo, launch: mcmd.TaskLaunch) -> None:
        framework_id = framework.id or ""
        self.frameworks[framework_id] = framework
        if (framework_id, launch.task_id) in self.tasks or self.agent_id is None:
            self._emit(cmd.Log("warning", "ignoring a duplicate launch", {"task": launch.task_id}))
            return
        if launch.executor is None:
            self._launch_command_task(framework_id, launch)
        else:
            self._launch_custom_task(framework_id, launch.executor, launch)

    def _launch_command_task(self, framework_id: str, launch: mcmd.TaskLaunch) -> None:
        command = launch.raw.get("command")
        raw = {
            "executor_id": {"value": launch.task_id},
            "framework_id": {"value": framework_id},
            "name": f"Command Executor (Task: {launch.task_id})",
            "source": launch.task_id,
            "command": command if isinstance(command, Mapping) else {},
        }
        run = self._new_run(
            framework_id, launch.task_id, ExecutorKind.COMMAND, raw, launch.resources
        )
        run.state = ExecutorState.RUNNING
        task = Task(framework_id, launch.task_id, launch, launch.task_id, proc_id=run.proc_id)
        self._start_builtin(run, task, run.directory, command)

    def _start_builtin(self, run: Executor, task: Task, sandbox: str, command: object) -> None:
        run.tasks[task.task_id] = task
        self.tasks[task.key] = task
        try:
            argv = command_argv(command)
        except InvalidCommandError as error:
            task.exited = True
            self._update(task, TaskState.FAILED, reason=Reason.TASK_INVALID, message=str(error))
            self._builtin_done(run)
            return
        env = self._task_env(run, task.task_id, sandbox, command)
        self._update(task, TaskState.STARTING)
        assert task.proc_id is not None
        self.procs[task.proc_id] = (run.container_id, task.task_id)
        container = self._container(run, task, sandbox, command)
        self._emit(
            cmd.LaunchProcess(task.proc_id, argv.argv, env, sandbox, argv.executable, container)
        )

    def _run_task_group(self, message: mcmd.RunTaskGroup) -> None:
        framework_id = message.framework.id or ""
        self.frameworks[framework_id] = message.framework
        spec = message.executor
        if self.agent_id is None:
            return
        run = self.executors.get((framework_id, spec.executor_id))
        if run is None or run.state is not ExecutorState.RUNNING:
            run = self._new_run(
                framework_id, spec.executor_id, ExecutorKind.DEFAULT, spec.raw, spec.resources
            )
            run.state = ExecutorState.RUNNING
        group = run.next_group
        run.next_group += 1
        for launch in message.tasks:
            if (framework_id, launch.task_id) in self.tasks:
                continue
            task = Task(
                framework_id,
                launch.task_id,
                launch,
                spec.executor_id,
                proc_id=f"{run.container_id}/{launch.task_id}",
                group=group,
            )
            sandbox = f"{run.directory}/tasks/{launch.task_id}"
            self._start_builtin(run, task, sandbox, launch.raw.get("command"))

    def _launch_custom_task(
        self, framework_id: str, spec: mcmd.ExecutorSpec, launch: mcmd.TaskLaunch
    ) -> None:
        run = self.executors.get((framework_id, spec.executor_id))
        if run is None or run.state in (ExecutorState.TERMINATING, ExecutorState.TERMINATED):
            run = self._start_custom_executor(framework_id, spec)
        task = Task(framework_id, launch.task_id, launch, spec.executor_id)
        run.tasks[task.task_id] = task
        self.tasks[task.key] = task
        if run.state is not ExecutorState.TERMINATED:
            resources = run.resources
            for other in run.tasks.values():
                if not other.state.is_terminal:
                    resources = resources + other.launch.resources
            self._emit(cmd.UpdateContainer(run.container_id, resources))
        if run.state is ExecutorState.TERMINATED:  # it failed to start
            self._update(
                task,
                TaskState.FAILED,
                source=Source.AGENT,
                reason=Reason.CONTAINER_LAUNCH_FAILED,
                message="The executor could not be started",
            )
        elif run.subscribed:
            self._deliver(run, task)

    def _start_custom_executor(self, framework_id: str, spec: mcmd.ExecutorSpec) -> Executor:
        raw = dict(spec.raw)
        raw["executor_id"] = {"value": spec.executor_id}
        raw["framework_id"] = {"value": framework_id}
        run = self._new_run(
            framework_id, spec.executor_id, ExecutorKind.CUSTOM, raw, spec.resources
        )
        command = raw.get("command")
        try:
            argv = command_argv(command, "ExecutorInfo.command")
        except InvalidCommandError as error:
            run.state = ExecutorState.TERMINATED
            run.destroyed = True  # no container was ever created
            self._emit(cmd.Log("warning", f"cannot launch executor: {error}"))
            return run
        env = dict(self.config.base_env)
        env.update(self._common_env(run, run.directory))
        env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] = stout_duration(self._executor_grace_s(run))
        if env["MESOS_CHECKPOINT"] == "1":
            env["MESOS_RECOVERY_TIMEOUT"] = stout_duration(self.config.recovery_timeout_s)
            env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = stout_duration(
                self.config.executor_reregistration_timeout_s
            )
        env.update(command_environment(command))
        self.procs[run.proc_id] = (run.container_id, None)
        container = self._container(run, None, run.directory, command)
        self._emit(
            cmd.LaunchProcess(
                run.proc_id, argv.argv, env, run.directory, argv.executable, container
            )
        )
        run.registration_deadline = self._now + self.config.executor_registration_timeout_s
        self._arm(run.registration_deadline, TimerKind.REGISTRATION, run.container_id)
        return run

    def _deliver(self, run: Executor, task: Task) -> None:
        task.delivered = True
        raw = dict(task.launch.raw)
        raw["agent_id"] = {"value": self.agent_id or ""}
        raw.setdefault("task_id", {"value": task.task_id})
        raw.setdefault("name", task.launch.name)
        if "resources" not in raw:
            raw["resources"] = resources_to_json(task.launch.resources)
        self._to_executor(run, {"type": "LAUNCH", "launch": {"task": raw}})

    def _to_executor(self, run: Executor, event: Json) -> None:
        self._emit(cmd.ToExecutor(run.framework_id, run.executor_id, event))

    # ================================================================ processes

    def _on_launched(self, event: ev.ProcessLaunched) -> None:
        proc = self.procs.get(event.proc_id)
        if proc is None or proc[1] is None:
            return
        run = self.runs.get(proc[0])
        task = run.tasks.get(proc[1]) if run is not None else None
        if task is not None and task.state is TaskState.STARTING and not task.killing:
            self._update(task, TaskState.RUNNING)
            self._start_checks(task)

    def _on_launch_failed(self, event: ev.ProcessLaunchFailed) -> None:
        proc = self.procs.pop(event.proc_id, None)
        if proc is None:
            return
        self._emit(cmd.ForgetProcess(event.proc_id))
        run = self.runs.get(proc[0])
        if run is None:
            return
        if proc[1] is None:
            self._terminate(run)
            for queued in list(run.tasks.values()):
                if not queued.state.is_terminal:
                    self._update(
                        queued,
                        TaskState.FAILED,
                        source=Source.AGENT,
                        reason=Reason.CONTAINER_LAUNCH_FAILED,
                        message=f"Failed to launch the executor: {event.error}",
                    )
            self._emit(cmd.SendExecutorExited(run.framework_id, run.executor_id, 1 << 8))
            self._retire(run)
            return
        task = run.tasks.get(proc[1])
        if task is None:
            return
        task.exited = True
        if not task.state.is_terminal:
            self._update(
                task,
                TaskState.FAILED,
                reason=Reason.CONTAINER_LAUNCH_FAILED,
                message=f"Failed to launch the command: {event.error}",
            )
        self._builtin_done(run)

    def _on_exited(self, event: ev.ProcessExited) -> None:
        proc = self.procs.pop(event.proc_id, None)
        self._emit(cmd.ForgetProcess(event.proc_id))
        if proc is None:
            return
        run = self.runs.get(proc[0])
        if run is None:
            return
        if proc[1] is None:
            self._custom_executor_exited(run, event.wait_status)
            return
        task = run.tasks.get(proc[1])
        if task is None:
            return
        task.exited = True
        task.kill_deadline = None
        self.health.stop(*task.key)
        unhealthy = task.key in self.health.killed_unhealthy
        self.health.killed_unhealthy.discard(task.key)
        if not task.state.is_terminal:
            message = describe_exit(event.wait_status)
            if run.limitation is not None:
                self._update(
                    task,
                    TaskState.FAILED,
                    source=Source.AGENT,
                    reason=run.limitation.reason,
                    message=run.limitation.message,
                )
            elif task.killing:  # killed by a failing health check: healthy=false
                healthy = False if unhealthy else None
                self._update(task, TaskState.KILLED, message=message, healthy=healthy)
            elif exit_code(event.wait_status) == 0:
                self._update(task, TaskState.FINISHED, message=message)
            else:
                self._update(task, TaskState.FAILED, message=message)
                if task.group:  # the default executor kills the rest of a failed group
                    for sibling in run.tasks.values():
                        if sibling.group == task.group:
                            self._kill_builtin(sibling, kill_grace_s(sibling.launch.raw, None))
        self._builtin_done(run)

    def _builtin_done(self, run: Executor) -> None:
        """A built-in task ended: the run ends once none of its processes is left."""
        if any(not t.exited for t in run.tasks.values()):
            return
        if run.kind is ExecutorKind.DEFAULT and run.state is not ExecutorState.TERMINATED:
            self._emit(cmd.SendExecutorExited(run.framework_id, run.executor_id, 0))
        self._terminate(run)
        self._retire(run)

    def _custom_executor_exited(self, run: Executor, wait_status: int) -> None:
        self._terminate(run)
        run.proc_exited = True
        run.wait_status = wait_status
        run.subscribed = False
        self._emit(cmd.CloseExecutorStream(run.framework_id, run.executor_id))
        self._emit(cmd.SendExecutorExited(run.framework_id, run.executor_id, wait_status))
        limitation = run.limitation or Limitation(
            Reason.EXECUTOR_TERMINATED, f"Executor terminated: {describe_exit(wait_status)[8:]}"
        )
        for task in list(run.tasks.values()):
            if not task.state.is_terminal:
                self._update(
                    task,
                    TaskState.FAILED,
                    source=Source.AGENT,
                    reason=limitation.reason,
                    message=limitation.message,
                )
        self._retire(run)

    def _on_limited(self, event: ev.ContainerLimited) -> None:
        run = self.runs.get(event.container_id)
        if run is None or run.destroyed or run.limitation is not None:
            return
        run.limitation = event.limitation
        self._emit(cmd.Log("info", event.limitation.message, {"container": run.container_id}))
        self._emit(cmd.KillContainer(run.container_id))

    # ================================================================ killing

    def _kill(self, framework_id: str, task_id: str, policy: Mapping[str, Any] | None) -> None:
        task = self.tasks.get((framework_id, task_id))
        if task is None or task.state.is_terminal:
            return
        run = self._run_of(task)
        if run is None:
            return
        if run.kind is ExecutorKind.CUSTOM:
            if not task.delivered:
                self._update(
                    task,
                    TaskState.KILLED,
                    source=Source.AGENT,
                    reason=Reason.TASK_KILLED_DURING_LAUNCH,
                    message="Killed before it was delivered to the executor",
                )
                return
            kill: Json = {"task_id": {"value": task_id}}
            if policy is not None:
                kill["kill_policy"] = dict(policy)
            self._to_executor(run, {"type": "KILL", "kill": kill})
            return
        grace = kill_grace_s(task.launch.raw, policy)
        targets = [task]
        if task.group:
            targets += [t for t in run.tasks.values() if t.group == task.group and t is not task]
        for target in targets:
            self._kill_builtin(target, grace)

    def _kill_builtin(self, task: Task, grace_s: float) -> None:
        if task.exited or task.state.is_terminal or task.proc_id is None:
            return
        deadline = self._now + grace_s
        if task.killing:
            if task.kill_deadline is not None and deadline < task.kill_deadline:
                task.kill_deadline = deadline
                self._arm(deadline, TimerKind.KILL, task.key)
            return
        task.killing = True
        framework = self.frameworks.get(task.framework_id)
        if framework is not None and framework.has(TASK_KILLING_STATE):
            self._update(task, TaskState.KILLING)
        self._emit(cmd.SignalProcess(task.proc_id, cmd.SIGTERM))
        task.kill_deadline = deadline
        self._arm(deadline, TimerKind.KILL, task.key)

    def _shutdown_executor(self, run: Executor) -> None:
        if run.state in (ExecutorState.TERMINATING, ExecutorState.TERMINATED):
            return
        if run.kind is not ExecutorKind.CUSTOM:
            for task in list(run.tasks.values()):
                self._kill_builtin(task, kill_grace_s(task.launch.raw, None))
            return
        run.state = ExecutorState.TERMINATING
        for task in list(run.tasks.values()):
            if not task.delivered and not task.state.is_terminal:
                self._update(
                    task,
                    TaskState.KILLED,
                    source=Source.AGENT,
                    reason=Reason.EXECUTOR_TERMINATED,
                    message="The executor was shut down before the task was delivered",
                )
        if run.subscribed:
            self._to_executor(run, {"type": "SHUTDOWN"})
            run.shutdown_deadline = self._now + self._executor_grace_s(run)
            self._arm(run.shutdown_deadline, TimerKind.SHUTDOWN, run.container_id)
        else:
            self._emit(cmd.SignalProcess(run.proc_id, cmd.SIGKILL))

    # ================================================================ timers

    def _on_tick(self, event: ev.Tick) -> None:
        while self._timers and self._timers[0][0] <= self._now:
            _, _, kind, key = heapq.heappop(self._timers)
            if kind is TimerKind.RETRY:
                stream = self.streams.get(key)
                if stream is not None and self.registered:
                    status = stream.due(self._now)
                    if status is not None:
                        self._send_update(stream, status)
            elif kind is TimerKind.KILL:
                task = self.tasks.get(key)
                if (
                    task is not None
                    and not task.exited
                    and task.kill_deadline is not None
                    and task.kill_deadline <= self._now
                    and task.proc_id is not None
                ):
                    task.kill_deadline = None
                    self._emit(cmd.SignalProcess(task.proc_id, cmd.SIGKILL))
            elif kind is TimerKind.REGISTRATION:
                self._registration_timeout(self.runs.get(key))
            elif kind is TimerKind.SHUTDOWN:
                run = self.runs.get(key)
                if run is not None and run.state is not ExecutorState.TERMINATED:
                    self._emit(cmd.SignalProcess(run.proc_id, cmd.SIGKILL))
            elif kind is TimerKind.CHECK:
                self._run_check(key)

    # ================================================================ health checks

    def _start_checks(self, task: Task) -> None:
        """A built-in executor's task runs: start its health check and check."""
        try:
            specs = health.task_specs(task.launch.raw)
        except health.InvalidCheck as error:  # Mesos's executor, too, runs on unchecked
            self._emit(cmd.Log("warning", f"task {task.task_id} is not checked: {error}"))
            return
        self.health.start(task.framework_id, task.task_id, specs, self._now)
        for key, due in self.health.deadlines(task.framework_id, task.task_id):
            self._arm(due, TimerKind.CHECK, key)

    def _checked_task(self, key: health.Key) -> tuple[Task, Executor] | None:
        """The task of a checker while it still runs; checks stop at a kill or its end."""
        task = self.tasks.get(key[:2])
        run = self._run_of(task) if task is not None else None
        if task is None or run is None or task.killing or task.state is not TaskState.RUNNING:
            self.health.stop(*key[:2])
            return None
        return task, run

    def _run_check(self, key: health.Key) -> None:
        checker = self.health.due(key, self._now)
        found = self._checked_task(key) if checker is not None else None
        if checker is None or found is None:
            return
        task, run = found
        check_id = f"{key[0]}/{key[1]}/{key[2]}/{checker.probes + 1}"
        checker.begin(check_id)
        grouped = run.kind is not ExecutorKind.COMMAND
        sandbox = f"{run.directory}/tasks/{task.task_id}" if grouped else run.directory
        env = self._task_env(run, task.task_id, sandbox, task.launch.raw.get("command"))
        env.update(command_environment(checker.spec.command))
        self._emit(
            cmd.RunCheck(check_id, key[0], key[1], run.container_id, checker.spec, env, sandbox)
        )

    def _on_check_result(self, event: ev.CheckResult) -> None:
        key = (event.framework_id, event.task_id, event.kind)
        found = self._checked_task(key)
        if found is None:
            return
        task = found[0]
        verdict = self.health.finish(key, event.check_id, event.probe, self._now)
        for timer_key, due in self.health.deadlines(*task.key):
            if timer_key == key:
                self._arm(due, TimerKind.CHECK, key)
        if verdict is None:
            return
        if verdict.healthy is None:
            self._update(
                task,
                TaskState.RUNNING,
                reason=Reason.TASK_CHECK_STATUS_UPDATED,
                healthy=self.health.last_healthy(*task.key),
                check_status=verdict.check_status,
            )
            return
        if verdict.message is not None:
            self._emit(cmd.Log("info", verdict.message, {"task": task.task_id}))
        self._update(
            task,
            TaskState.RUNNING,
            reason=Reason.TASK_HEALTH_CHECK_STATUS_UPDATED,
            healthy=verdict.healthy,
            check_status=self.health.last_check_status(*task.key),
        )
        if verdict.kill:
            self.health.killed_unhealthy.add(task.key)
            self.health.stop(*task.key)
            self._kill_builtin(task, kill_grace_s(task.launch.raw, None))

    def _registration_timeout(self, run: Executor | None) -> None:
        if run is None or run.subscribed or run.state is not ExecutorState.LAUNCHING:
            return
        if run.registration_deadline is None or run.registration_deadline > self._now:
            return
        run.state = ExecutorState.TERMINATING
        self._emit(cmd.SignalProcess(run.proc_id, cmd.SIGKILL))
        timeout = stout_duration(self.config.executor_registration_timeout_s)
        for task in list(run.tasks.values()):
            if not task.state.is_terminal:
                self._update(
                    task,
                    TaskState.FAILED,
                    source=Source.AGENT,
                    reason=Reason.EXECUTOR_REGISTRATION_TIMEOUT,
                    message=f"Executor did not register within {timeout}",
                )

    # ================================================================ executor API

    def _custom_run(self, request_id: str, framework_id: str, executor_id: str) -> Executor | None:
        if framework_id not in self.frameworks:
            self._emit(cmd.Reply(request_id, 400, f"Unknown framework {framework_id}"))
            return None
        run = self.executors.get((framework_id, executor_id))
        if run is None or run.kind is not ExecutorKind.CUSTOM:
            self._emit(cmd.Reply(request_id, 400, f"Unknown executor {executor_id}"))
            return None
        return run

    def _on_subscribe(self, event: ev.ExecutorSubscribe) -> None:
        run = self._custom_run(event.request_id, event.framework_id, event.executor_id)
        if run is None:
            return
        if run.state is ExecutorState.TERMINATED:
            self._emit(cmd.Reply(event.request_id, 400, "The executor has terminated"))
            return
        self._emit(cmd.OpenExecutorStream(event.request_id, run.framework_id, run.executor_id))
        run.subscribed = True
        run.registration_deadline = None
        framework = self.frameworks[run.framework_id]
        agent_info = agent_info_json(self.config.info, self.agent_id, self.total)
        self._to_executor(run, subscribed_event(run, framework, agent_info))
        if run.state is ExecutorState.TERMINATING:
            self._to_executor(run, {"type": "SHUTDOWN"})
            return
        run.state = ExecutorState.RUNNING
        for status in event.unacknowledged_updates:
            self._accept_update(run, status)
        for task in list(run.tasks.values()):
            if not task.delivered and not task.state.is_terminal:
                self._deliver(run, task)

    def _on_executor_update(self, event: ev.ExecutorUpdate) -> None:
        run = self._custom_run(event.request_id, event.framework_id, event.executor_id)
        if run is None:
            return
        if not run.subscribed:
            self._emit(cmd.Reply(event.request_id, 403, "Executor is not subscribed"))
            return
        status = event.status
        problem = update_problem(status, run.executor_id)
        if problem is not None:
            self._emit(cmd.Reply(event.request_id, 400, problem))
            return
        self._emit(cmd.Reply(event.request_id, 202))
        self._accept_update(run, status)

    def _accept_update(self, run: Executor, status: TaskStatus) -> None:
        uuid_bytes = status.uuid
        if uuid_bytes is None:
            return
        status = replace(
            status,
            agent_id=self.agent_id,
            executor_id=run.executor_id,
            source=Source.EXECUTOR,
            timestamp=status.timestamp if status.timestamp is not None else self._now,
        )
        self._push(run.framework_id, status)
        ack = {"task_id": {"value": status.task_id}, "uuid": base64.b64encode(uuid_bytes).decode()}
        self._to_executor(run, {"type": "ACKNOWLEDGED", "acknowledged": ack})

    def _on_executor_message(self, event: ev.ExecutorMessage) -> None:
        run = self._custom_run(event.request_id, event.framework_id, event.executor_id)
        if run is None:
            return
        if not run.subscribed:
            self._emit(cmd.Reply(event.request_id, 403, "Executor is not subscribed"))
            return
        self._emit(cmd.Reply(event.request_id, 202))
        self._emit(cmd.SendExecutorMessage(run.framework_id, run.executor_id, event.data))

    def _on_heartbeat(self, event: ev.ExecutorHeartbeat) -> None:
        self._emit(cmd.Reply(event.request_id, 202))

    def _on_stream_closed(self, event: ev.ExecutorStreamClosed) -> None:
        run = self.executors.get((event.framework_id, event.executor_id))
        if run is not None:
            run.subscribed = False
