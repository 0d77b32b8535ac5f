"""A simulated agent process: registers, answers pings, runs tasks on its host, and
delivers status updates reliably (one in flight per task, retried with back-off until
the framework's acknowledgement comes back), as a real agent's update manager does.

It can die and be started again on the same work dir (`crash`, then `restart`): what
it had checkpointed comes back (agora/testing/sim/checkpoint.py), the processes of
checkpointing frameworks are still on the host (agora/testing/sim/host.py) and are
adopted, exits during the downtime are reported, queued launches that never started are
dropped, and unacknowledged updates are sent again once it has re-registered under its
old id. Tasks of frameworks that do not checkpoint die with the process. After a host
reboot no process survives: the agent keeps its id and reports its tasks gone, or (its
work dir wiped) registers as a new agent.

Whatever its outcome can no longer be reported by any agent is handed to the checker
as vanished: the framework may then only learn it from the master.
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
from agora.testing.sim.checkpoint import Checkpoint, CheckpointedTask, CheckpointWriter
from agora.testing.sim.host import KILL_GRACE_S, Host, TaskKey

if TYPE_CHECKING:
    from agora.testing.sim.world import Simulation

RETRY_MIN_S = 10.0
RETRY_MAX_S = 600.0
REGISTER_RETRY_S = 5.0


@dataclass
class SimTask:
    """A task as the agent knows it (the process itself lives on the host)."""

    framework_id: str
    task_id: str
    name: str
    resources: Resources
    checkpointed: bool
    state: TaskState = TaskState.STAGING
    queued: bool = True  # launched here, its process not started yet


@dataclass
class UpdateStream:
    pending: deque[TaskStatus] = field(default_factory=deque)
    retry_s: float = RETRY_MIN_S
    timer: int = 0  # only the newest retry timer of a stream may fire
    acknowledging: bool = False  # an acknowledgement is being checkpointed


class SimAgent:
    def __init__(self, sim: Simulation, index: int, resources: Resources) -> None:
        self.sim = sim
        self.hostname = f"agent{index}"
        self.info = AgentInfo(hostname=self.hostname, port=5051, resources=resources)
        self.host = Host(sim, self.hostname)
        self.disk = CheckpointWriter(sim)
        self.up = False  # the agent process runs
        self.incarnation = 0  # bumped when the process dies: its timers go stale
        self.leader: int | None = None  # the master epoch this agent believes leads
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
        """Tasks whose processes really run on this host (the ground truth)."""
        return self.host.running()

    def later(self, delay: float, action: Callable[[], None]) -> None:
        """Schedule an action of this agent process; it is void if the process dies."""
        incarnation = self.incarnation

        def act() -> None:
            if self.up and self.incarnation == incarnation:
                action()

        self.sim.after(delay, act)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.up = True
        self.leader = self.sim.current_epoch()
        self.host.listener = self._on_process
        self.later(self.sim.master_options.agent_ping_timeout_s, self._watchdog)
        self.connect()

    def crash(self) -> None:
        """The agent process dies (SIGKILL): memory, connection and unsynced writes are
        lost; executors of frameworks that do not checkpoint die with it."""
        self.up = False
        self.incarnation += 1
        self.host.listener = None
        lost = self.disk.crash()
        self.sim.stats.agent_writes_lost += len(lost)
        self.sim.stats.update_writes_lost += sum(1 for w in lost if w.what == "update")
        for key in self.host.destroy(lambda p: p.survives_agent):
            self.sim.checker.vanished(key)
        for key in list(self.tasks) + list(self.streams):
            known = self.tasks.get(key)
            if known is None or not known.checkpointed:
                # Never checkpointed (a framework that does not checkpoint, or the end of
                # a task this agent never knew, killed before it arrived): gone with us.
                self.sim.checker.vanished(key)
        for write in lost:
            if write.key is not None and write.what == "task":
                self.sim.checker.vanished(write.key)  # never recorded: it never started
        if self.connection is not None:
            self.sim.agent_connection_reset(self, self.connection)
        self.connection = None
        self.registered = False
        self.tasks.clear()
        self.streams.clear()
        self.frameworks.clear()
        self.finished.clear()

    def reboot(self, keep_id: bool) -> None:
        """The host restarts: no process survives. The agent either keeps its id (its
        work dir survives: it reports its tasks gone, as Mesos and Agora's agent do) or
        starts afresh as a new agent (its work dir is wiped)."""
        self.crash()
        for key in self.host.destroy(lambda p: False):
            self.sim.checker.vanished(key)
        if keep_id:
            return
        for key in self.disk.checkpoint.tasks:
            self.sim.checker.vanished(key)
        self.disk.wipe()
        self.agent_id = None

    def restart(self) -> None:
        """Start on the same work dir: recover the checkpoint, adopt what still runs,
        report what ended meanwhile, then register (under the old id, if any)."""
        checkpoint = self.disk.checkpoint
        self.agent_id = checkpoint.agent_id
        self.frameworks = dict(checkpoint.frameworks)
        self.up = True
        self.host.listener = self._on_process
        for key, record in checkpoint.tasks.items():
            self._recover_task(key, record)
        self.later(self.sim.master_options.agent_ping_timeout_s, self._watchdog)
        self.leader = self.sim.current_epoch()
        self.connect()

    def _recover_task(self, key: TaskKey, record: CheckpointedTask) -> None:
        """Rebuild a checkpointed task and its stream (the updates not acknowledged
        yet), then catch up with what its process did meanwhile."""
        state = record.updates[-1].state if record.updates else TaskState.STAGING
        task = SimTask(key[0], key[1], record.name, record.resources, True, state, queued=False)
        self.tasks[key] = task
        pending = record.unacknowledged()
        if pending:
            self.streams[key] = UpdateStream(pending=deque(pending))
        self._catch_up(key, task)

    def _catch_up(self, key: TaskKey, task: SimTask) -> None:
        if task.state.is_terminal:
            return
        process = self.host.processes.get(key)
        if process is None and task.state is TaskState.STAGING:
            # Launched but never started: it will not start now (Mesos: TASK_DROPPED,
            # TASK_LOST for frameworks that are not PARTITION_AWARE; REASON_AGENT_RESTARTED).
            self.finished.add(key)
            self._decide(key, TaskState.DROPPED, Reason.AGENT_RESTARTED, "Agent restarted")
        elif process is None:
            # It ran, and its process is gone without a trace: the host rebooted.
            self.finished.add(key)
            self._decide(key, TaskState.GONE, Reason.EXECUTOR_TERMINATED, "Host rebooted")
        elif not process.alive:
            # It ended while we were away (or its update was lost with us).
            self.finished.add(key)
            self._update(key, process.state, None, None)

    # ---------------------------------------------------------------- connection

    def leader_detected(self, epoch: int) -> None:
        self.leader = epoch
        if self.up:
            self.connect()

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
        self.later(REGISTER_RETRY_S, lambda: self._retry_register(connection))

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
        self.later(options.agent_ping_timeout_s, self._watchdog)

    def connection_broke(self, connection: str) -> None:
        """Our socket to the master broke: open a new one and re-register."""
        if self.up and connection == self.connection:
            self.connect()

    def refused(self, connection: str) -> None:
        """The master closed our connection because our id is gone."""
        if self.up and connection == self.connection:
            self.start_afresh()

    # -------------------------------------------------------------------- inbox

    def receive(self, connection: str, message: cmd.AgentMessage) -> None:
        if not self.up or connection != self.connection:
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
            self._forget_everything()
        self.sim.checker.learned_agent_ids.add(agent_id)
        if agent_id != self.disk.checkpoint.agent_id:
            self.disk.write("agent id", None, lambda c: _set_agent_id(c, agent_id), _nothing)
        self.agent_id = agent_id
        self.registered = True
        self.last_ping = self.sim.now
        for key, stream in list(self.streams.items()):
            stream.retry_s = RETRY_MIN_S  # flushed on (re-)registration, back-off restarts
            self._send_head(key)

    def _forget_everything(self) -> None:
        for key in list(self.tasks) + self.host.destroy(lambda p: False):
            self.sim.checker.vanished(key)
        self.tasks.clear()
        self.streams.clear()
        self.disk.checkpoint.tasks.clear()

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
                self._decide(key, TaskState.DROPPED, Reason.TASK_UNKNOWN, "Task is unknown")
            return
        if task.state.is_terminal:
            return
        if task.queued:
            task.queued = False  # its process will not start
            self.finished.add(key)
            self.later(KILL_GRACE_S, lambda: self._killed_before_start(key))
            return
        self.host.kill(key)

    def _killed_before_start(self, key: TaskKey) -> None:
        self._decide(key, TaskState.KILLED, Reason.TASK_KILLED_DURING_LAUNCH, "Killed before start")

    def _on_shutdown_framework(self, m: cmd.ShutdownFramework) -> None:
        for key in [k for k in self.tasks if k[0] == m.framework_id]:
            del self.tasks[key]
            self.finished.add(key)
            self.disk.checkpoint.tasks.pop(key, None)
            self.host.kill(key)
            self.sim.checker.vanished(key)
        for key in [k for k in self.streams if k[0] == m.framework_id]:
            del self.streams[key]

    def _on_acknowledge_update(self, m: cmd.AcknowledgeUpdate) -> None:
        key = (m.framework_id, m.task_id)
        stream = self.streams.get(key)
        if stream is None or not stream.pending or stream.pending[0].uuid != m.uuid:
            return  # an unexpected or duplicate acknowledgement
        if stream.acknowledging:
            return
        task = self.tasks.get(key)
        if task is None or not task.checkpointed:
            self._acknowledged(key, m.uuid)
            return
        stream.acknowledging = True
        uuid = m.uuid
        self.disk.write(
            "acknowledgement",
            key,
            lambda c: _record_ack(c, key, uuid),
            lambda: self._acknowledged(key, uuid),
        )

    def _acknowledged(self, key: TaskKey, uuid: bytes) -> None:
        stream = self.streams.get(key)
        if stream is None or not stream.pending or stream.pending[0].uuid != uuid:
            return
        stream.acknowledging = False
        stream.pending.popleft()
        stream.retry_s = RETRY_MIN_S
        if stream.pending:
            self._send_head(key)
            return
        del self.streams[key]
        task = self.tasks.get(key)
        if task is not None and task.state.is_terminal:
            # Its terminal update was acknowledged: done, and the supervisor may forget it.
            del self.tasks[key]
            self.disk.checkpoint.tasks.pop(key, None)
            self.host.forget(key)

    def _on_shutdown_agent(self, m: cmd.ShutdownAgent) -> None:
        self.start_afresh()

    def start_afresh(self) -> None:
        """The master says we are gone (it shut us down, or refused our id): kill
        everything, forget the id, and register as a new agent."""
        self._forget_everything()
        self.disk.wipe()
        self.agent_id = None
        self.connect()

    # -------------------------------------------------------------------- tasks

    def _launch(self, framework: FrameworkInfo, launch: cmd.TaskLaunch) -> None:
        key = (framework.id or "", launch.task_id)
        if key in self.tasks or key in self.finished:
            return  # a duplicate delivery, or killed before it arrived
        self.frameworks[key[0]] = framework
        task = SimTask(key[0], launch.task_id, launch.name, launch.resources, framework.checkpoint)
        self.tasks[key] = task
        if not task.checkpointed:
            self._start_soon(key)
            return
        record = CheckpointedTask(launch.name, launch.resources)
        self.disk.write(
            "task",
            key,
            lambda c: _record_task(c, framework, key, record),
            lambda: self._start_soon(key),
        )

    def _start_soon(self, key: TaskKey) -> None:
        self.later(self.sim.rng.uniform(0.005, 0.25), lambda: self._start_process(key))

    def _start_process(self, key: TaskKey) -> None:
        task = self.tasks.get(key)
        if task is None or not task.queued:
            return  # killed (or forgotten) before it started
        task.queued = False
        config = self.sim.config
        rng = self.sim.rng
        end = TaskState.FAILED if rng.random() < config.task_failure_rate else TaskState.FINISHED
        self.host.start(key, task.checkpointed, rng.uniform(*config.task_duration_s), end)

    def _on_process(self, key: TaskKey, state: TaskState) -> None:
        """The supervisor reports a process's state (it started, runs, or ended)."""
        task = self.tasks.get(key)
        if task is None or task.state.is_terminal:
            return
        if state.is_terminal:
            self.finished.add(key)
        self._update(key, state, None, None)

    def _decide(self, key: TaskKey, state: TaskState, reason: Reason, message: str) -> None:
        """The agent itself ends a task that has no process: that end is the truth once
        its update is taken (a crash before then leaves the task to recovery)."""
        self._update(key, state, reason, message, decided=True)

    def _update(
        self,
        key: TaskKey,
        state: TaskState,
        reason: Reason | None,
        message: str | None,
        decided: bool = False,
    ) -> None:
        """A new status update: checkpointed first (for checkpointing frameworks), only
        then taken into the task's stream and forwarded."""
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
        task = self.tasks.get(key)
        if task is None or not task.checkpointed:
            self._enqueue(key, status, decided)
            return
        self.disk.write(
            "update",
            key,
            lambda c: _record_update(c, key, status),
            lambda: self._enqueue(key, status, decided),
        )

    def _enqueue(self, key: TaskKey, status: TaskStatus, decided: bool) -> None:
        if decided:
            self.sim.checker.record_final(key[0], key[1], status.state)
        task = self.tasks.get(key)
        if task is not None:
            task.state = status.state
        self.sim.checker.update_generated(key, status)
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
        self.later(delay, lambda: self._retry(key, timer))

    def _retry(self, key: TaskKey, timer: int) -> None:
        stream = self.streams.get(key)
        if stream is not None and stream.pending and stream.timer == timer:
            self._send_head(key)


# ------------------------------------------------------------- checkpoint records


def _nothing() -> None:
    return None


def _set_agent_id(checkpoint: Checkpoint, agent_id: str) -> None:
    checkpoint.agent_id = agent_id


def _record_task(
    checkpoint: Checkpoint, framework: FrameworkInfo, key: TaskKey, record: CheckpointedTask
) -> None:
    checkpoint.frameworks[key[0]] = framework
    checkpoint.tasks[key] = record


def _record_update(checkpoint: Checkpoint, key: TaskKey, status: TaskStatus) -> None:
    record = checkpoint.tasks.get(key)
    if record is not None:
        record.updates.append(status)


def _record_ack(checkpoint: Checkpoint, key: TaskKey, uuid: bytes) -> None:
    record = checkpoint.tasks.get(key)
    if record is not None:
        record.acknowledged.add(uuid)
