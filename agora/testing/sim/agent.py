"""A simulated agent: registers, answers pings, runs tasks for a while, and delivers
status updates reliably (one in flight per task, retried with back-off until the
framework's acknowledgement comes back), as a real agent's update manager does.

It also keeps the ground truth the invariants compare against: which tasks really
run here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agora.core.allocator.state import AGENT_CAPABILITIES
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.info import AgentInfo, FrameworkInfo, TaskStatus
from agora.core.resources import Resources
from agora.core.task_states import Reason, Source, TaskState

if TYPE_CHECKING:
    from agora.testing.sim.world import Simulation

RETRY_MIN_S = 10.0
RETRY_MAX_S = 600.0
REGISTER_RETRY_S = 5.0
KILL_GRACE_S = 1.0

TaskKey = tuple[str, str]  # framework id, task id


@dataclass
class SimTask:
    framework_id: str
    task_id: str
    name: str
    resources: Resources
    state: TaskState = TaskState.STAGING
    epoch: int = 0  # bumped to cancel scheduled state changes


@dataclass
class UpdateStream:
    pending: deque[TaskStatus] = field(default_factory=deque)
    retry_s: float = RETRY_MIN_S
    timer: int = 0  # only the newest retry timer of a stream may fire


class SimAgent:
    def __init__(self, sim: Simulation, index: int, resources: Resources) -> None:
        self.sim = sim
        self.hostname = f"agent{index}"
        self.info = AgentInfo(hostname=self.hostname, port=5051, resources=resources)
        self.agent_id: str | None = None
        self.connection: str | None = None
        self.registered = False
        self.tasks: dict[TaskKey, SimTask] = {}
        self.finished: set[TaskKey] = set()  # tombstones: never run these again
        self.streams: dict[TaskKey, UpdateStream] = {}
        self.frameworks: dict[str, FrameworkInfo] = {}
        self.last_ping = 0.0
        self._handlers: dict[type, Callable[[Any], None]] = {
            cmd.AgentRegistered: self._on_agent_registered,
            cmd.AgentReregistered: self._on_agent_reregistered,
            cmd.Ping: self._on_ping,
            cmd.RunTask: self._on_run_task,
            cmd.RunTaskGroup: self._on_run_task_group,
            cmd.KillTask: self._on_kill_task,
            cmd.ShutdownFramework: self._on_shutdown_framework,
            cmd.AcknowledgeUpdate: self._on_acknowledge_update,
            cmd.ShutdownAgent: self._on_shutdown_agent,
        }

    # ------------------------------------------------------------------- plumbing

    def send(self, event: ev.MasterEvent) -> None:
        self.sim.agent_to_master(self, event)

    def running(self) -> list[TaskKey]:
        return [k for k, t in self.tasks.items() if not t.state.is_terminal]

    # ---------------------------------------------------------------- connection

    def start(self) -> None:
        self.connect()
        self.sim.after(self.sim.master_options.agent_ping_timeout_s, self._watchdog)

    def connect(self) -> None:
        self.connection = self.sim.new_connection(self.hostname)
        self.registered = False
        self.last_ping = self.sim.now
        self._register()

    def _register(self) -> None:
        if self.registered or self.connection is None:
            return
        if self.agent_id is None:
            self.send(
                ev.RegisterAgent(
                    connection_id=self.connection, info=self.info, capabilities=AGENT_CAPABILITIES
                )
            )
        else:
            self.send(self._reregistration())
        connection = self.connection
        self.sim.after(REGISTER_RETRY_S, lambda: self._retry_register(connection))

    def _retry_register(self, connection: str) -> None:
        if connection == self.connection and not self.registered:
            self._register()

    def _reregistration(self) -> ev.ReregisterAgent:
        assert self.agent_id is not None and self.connection is not None
        reports = []
        for (framework_id, task_id), task in self.tasks.items():
            stream = self.streams.get((framework_id, task_id))
            head = stream.pending[0] if stream and stream.pending else None
            reports.append(
                ev.AgentTask(
                    framework_id=framework_id,
                    task_id=task_id,
                    name=task.name,
                    state=task.state,
                    resources=task.resources,
                    status_update_state=None if head is None else head.state,
                    status_update_uuid=None if head is None else head.uuid,
                )
            )
        return ev.ReregisterAgent(
            connection_id=self.connection,
            agent_id=self.agent_id,
            info=self.info,
            capabilities=AGENT_CAPABILITIES,
            tasks=tuple(reports),
            frameworks=tuple(self.frameworks.values()),
        )

    def _watchdog(self) -> None:
        """No ping for the whole ping window: the master is gone for us; reconnect."""
        options = self.sim.master_options
        window = options.agent_ping_timeout_s * options.max_agent_ping_timeouts
        if self.agent_id is not None and self.sim.now - self.last_ping > window:
            self.connect()
        self.sim.after(options.agent_ping_timeout_s, self._watchdog)

    def disconnected(self) -> None:
        """Our socket to the master broke: open a new one and re-register."""
        self.connect()

    # -------------------------------------------------------------------- inbox

    def receive(self, connection: str, message: cmd.AgentMessage) -> None:
        if connection != self.connection:
            return  # sent on a socket we no longer use: lost with it
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(message)

    def _on_agent_registered(self, m: cmd.AgentRegistered) -> None:
        self._on_registered(m.agent_id)

    def _on_agent_reregistered(self, m: cmd.AgentReregistered) -> None:
        self._on_registered(m.agent_id)

    def _on_registered(self, agent_id: str) -> None:
        if self.agent_id is not None and agent_id != self.agent_id:
            # The master gave us a new identity: everything we ran is gone.
            self.tasks.clear()
            self.streams.clear()
        self.agent_id = agent_id
        self.registered = True
        self.last_ping = self.sim.now
        for key, stream in list(self.streams.items()):
            stream.retry_s = RETRY_MIN_S  # flushed on (re-)registration, back-off restarts
            self._send_head(key)

    def _on_ping(self, m: cmd.Ping) -> None:
        self.last_ping = self.sim.now
        if self.agent_id is None or self.connection is None:
            return  # overtook our registration reply: we cannot answer yet
        self.send(ev.AgentPong(agent_id=self.agent_id, connection_id=self.connection))

    def _on_run_task(self, m: cmd.RunTask) -> None:
        self._launch(m.framework, m.task)

    def _on_run_task_group(self, m: cmd.RunTaskGroup) -> None:
        for task in m.tasks:
            self._launch(m.framework, task)

    def _on_kill_task(self, m: cmd.KillTask) -> None:
        key = (m.framework_id, m.task_id)
        task = self.tasks.get(key)
        if task is None:
            if key not in self.finished:
                # Never heard of it (its launch was lost): it will not run now either.
                self.finished.add(key)
                self.sim.checker.record_final(key[0], key[1], TaskState.DROPPED)
                self._update(key, TaskState.DROPPED, Reason.TASK_UNKNOWN, "Task is unknown")
            return
        if task.state.is_terminal:
            return
        task.epoch += 1
        epoch = task.epoch
        self.sim.after(KILL_GRACE_S, lambda: self._transition(key, epoch, TaskState.KILLED))

    def _on_shutdown_framework(self, m: cmd.ShutdownFramework) -> None:
        for key in [k for k in self.tasks if k[0] == m.framework_id]:
            del self.tasks[key]
            self.finished.add(key)
        for key in [k for k in self.streams if k[0] == m.framework_id]:
            del self.streams[key]

    def _on_acknowledge_update(self, m: cmd.AcknowledgeUpdate) -> None:
        key = (m.framework_id, m.task_id)
        stream = self.streams.get(key)
        if stream is None or not stream.pending or stream.pending[0].uuid != m.uuid:
            return  # an unexpected or duplicate acknowledgement
        stream.pending.popleft()
        stream.retry_s = RETRY_MIN_S
        if stream.pending:
            self._send_head(key)
            return
        del self.streams[key]
        task = self.tasks.get(key)
        if task is not None and task.state.is_terminal:
            del self.tasks[key]  # its terminal update was acknowledged: done

    def _on_shutdown_agent(self, m: cmd.ShutdownAgent) -> None:
        self.agent_id = None
        self.tasks.clear()
        self.streams.clear()
        self.connect()

    # -------------------------------------------------------------------- tasks

    def _launch(self, framework: FrameworkInfo, launch: cmd.TaskLaunch) -> None:
        key = (framework.id or "", launch.task_id)
        if key in self.tasks or key in self.finished:
            return  # a duplicate delivery, or killed before it arrived
        self.frameworks[key[0]] = framework
        task = SimTask(key[0], launch.task_id, launch.name, launch.resources)
        self.tasks[key] = task
        rng = self.sim.rng
        start = rng.uniform(0.01, 0.5)
        run_for = rng.uniform(*self.sim.config.task_duration_s)
        end = (
            TaskState.FAILED
            if rng.random() < self.sim.config.task_failure_rate
            else TaskState.FINISHED
        )
        self.sim.after(start / 2, lambda: self._transition(key, 0, TaskState.STARTING))
        self.sim.after(start, lambda: self._transition(key, 0, TaskState.RUNNING))
        self.sim.after(start + run_for, lambda: self._transition(key, 0, end))

    def _transition(self, key: TaskKey, epoch: int, state: TaskState) -> None:
        task = self.tasks.get(key)
        if task is None or task.state.is_terminal or task.epoch != epoch:
            return
        task.state = state
        if state.is_terminal:
            self.finished.add(key)
            self.sim.checker.record_final(key[0], key[1], state)
        self._update(key, state, None, None)

    def _update(
        self, key: TaskKey, state: TaskState, reason: Reason | None, message: str | None
    ) -> None:
        status = TaskStatus(
            task_id=key[1],
            state=state,
            source=Source.EXECUTOR if reason is None else Source.AGENT,
            reason=reason,
            message=message,
            agent_id=self.agent_id,
            timestamp=self.sim.now,
            uuid=self.sim.rng.getrandbits(128).to_bytes(16, "big"),
        )
        stream = self.streams.setdefault(key, UpdateStream())
        stream.pending.append(status)
        if len(stream.pending) == 1:
            self._send_head(key)

    def _send_head(self, key: TaskKey) -> None:
        stream = self.streams.get(key)
        if stream is None or not stream.pending:
            return
        head = stream.pending[0]
        if self.registered and self.agent_id is not None:
            self.send(
                ev.StatusUpdateFromAgent(
                    agent_id=self.agent_id,
                    framework_id=key[0],
                    status=head,
                    latest_state=stream.pending[-1].state,
                )
            )
        stream.timer += 1
        timer = stream.timer
        delay = stream.retry_s
        stream.retry_s = min(stream.retry_s * 2, RETRY_MAX_S)
        self.sim.after(delay, lambda: self._retry(key, timer))

    def _retry(self, key: TaskKey, timer: int) -> None:
        stream = self.streams.get(key)
        if stream is not None and stream.pending and stream.timer == timer:
            self._send_head(key)
