"""What the agent checkpoints, as data: the core emits `commands.Checkpoint(record)` and
the shell (agora/agent/checkpoint.py) makes each record durable before it carries out
any later command, so whatever the core did after a record (forward an update, launch a
process, acknowledge an executor) never happened without the record on disk.

Always checkpointed: the agent's id and info (AgentRecord), so a restarted agent
re-registers under the same id. Only for frameworks with FrameworkInfo.checkpoint (as
Mesos): the framework's info, each executor run, each task, and each task's status
updates and their acknowledgements, in an append-only log per task. A framework that
does not checkpoint leaves nothing on disk: after a restart its processes are unknown
and are killed.

A recovered agent gets the records back as a RecoveredState (events.Recovered); the
update log of a task replays into the same status stream it had (stream.StatusStream
.replay), because the core logs exactly the updates its stream accepted and the
acknowledgements it matched, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agora.core.agent.model import ExecutorKind
from agora.core.agent.stream import StatusStream
from agora.core.master import commands as mcmd
from agora.core.master.info import AgentInfo, FrameworkInfo, TaskStatus
from agora.core.resources import Resources
from agora.core.task_states import TaskState

Json = Mapping[str, Any]


@dataclass(frozen=True)
class RunPath:
    """Where an executor run's records live: framework, executor and container ids."""

    framework_id: str
    executor_id: str
    container_id: str


@dataclass(frozen=True)
class AgentRecord:
    """This agent's id (meta/slaves/latest) and info: it re-registers under this id."""

    agent_id: str
    info: AgentInfo


@dataclass(frozen=True)
class ForgetAgent:
    """Start over as a new agent: drop the id and everything checkpointed under it."""

    agent_id: str


@dataclass(frozen=True)
class FrameworkRecord:
    info: FrameworkInfo


@dataclass(frozen=True)
class RunRecord:
    """An executor run (a container): what kind of executor and its ExecutorInfo."""

    path: RunPath
    kind: ExecutorKind
    raw: Json
    resources: Resources


@dataclass(frozen=True)
class TaskRecord:
    """A task given to a run; `proc_id` is its own process (built-in executors)."""

    path: RunPath
    launch: mcmd.TaskLaunch
    proc_id: str | None = None
    group: int = 0


@dataclass(frozen=True)
class UpdateRecord:
    """A status update the task's stream accepted (before it was forwarded)."""

    path: RunPath
    task_id: str
    status: TaskStatus


@dataclass(frozen=True)
class AckRecord:
    """The acknowledgement of the update with this uuid (the stream's head then)."""

    path: RunPath
    task_id: str
    uuid: bytes


@dataclass(frozen=True)
class RunCompleted:
    """The run is over and none of its tasks owes an update: its records can go."""

    path: RunPath


CheckpointRecord = (
    AgentRecord
    | ForgetAgent
    | FrameworkRecord
    | RunRecord
    | TaskRecord
    | UpdateRecord
    | AckRecord
    | RunCompleted
)
LogEntry = UpdateRecord | AckRecord


# ------------------------------------------------------------------ read back


@dataclass(frozen=True)
class RecoveredTask:
    record: TaskRecord
    log: tuple[LogEntry, ...] = ()  # its update log, in order

    def stream(self) -> StatusStream:
        """The task's status stream as it was when the agent stopped."""
        entries = [e.status if isinstance(e, UpdateRecord) else e.uuid for e in self.log]
        return StatusStream.replay(
            self.record.path.framework_id, self.record.launch.task_id, entries
        )

    def state(self) -> TaskState:
        """The newest state its updates reached (a terminal state is never left)."""
        state = TaskState.STAGING
        for entry in self.log:
            if isinstance(entry, UpdateRecord) and not state.is_terminal:
                state = entry.status.state
        return state


@dataclass(frozen=True)
class RecoveredRun:
    record: RunRecord
    tasks: tuple[RecoveredTask, ...] = ()
    latest: bool = True  # the executor's current run (meta .../runs/latest)


@dataclass(frozen=True)
class RecoveredState:
    """Everything a checkpoint held. `warnings` name what a non-strict recovery skipped
    (a corrupt record and what followed it)."""

    agent_id: str | None = None
    info: AgentInfo | None = None
    frameworks: tuple[FrameworkInfo, ...] = ()
    runs: tuple[RecoveredRun, ...] = ()
    warnings: tuple[str, ...] = field(default=())
