"""Outputs of the agent core: messages for the master, processes to start or signal,
events for executors and answers to executor API calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agora.core.agent.checkpoint import CheckpointRecord
from agora.core.agent.health import CheckSpec
from agora.core.container.config import ContainerConfig
from agora.core.master import events as mev
from agora.core.master.info import FrameworkInfo, TaskStatus
from agora.core.resources import Resources
from agora.core.task_states import TaskState

Json = Mapping[str, Any]

SIGTERM = 15
SIGKILL = 9


@dataclass(frozen=True)
class Register:
    """Send REGISTER (no agent id yet) or REREGISTER with everything this agent holds."""

    agent_id: str | None
    tasks: tuple[mev.AgentTask, ...] = ()
    executors: tuple[mev.AgentExecutor, ...] = ()
    frameworks: tuple[FrameworkInfo, ...] = ()


@dataclass(frozen=True)
class Checkpoint:
    """Write `record`; it is durable before any later command that may depend on it is
    carried out (see agora/core/agent/checkpoint.py and agora/agent/checkpoint.py)."""

    record: CheckpointRecord


@dataclass(frozen=True)
class RecoveryComplete:
    """Recovery is over (recovered executors re-subscribed or were given up): connect
    to the master and (re-)register."""


@dataclass(frozen=True)
class RecoverContainer:
    """Adopt a container that outlived the agent: `pids` of its live processes by
    proc id. Containers not adopted before the containerizer starts are cleaned up."""

    config: ContainerConfig
    pids: Mapping[str, int]


@dataclass(frozen=True)
class Pong:
    pass


@dataclass(frozen=True)
class SendStatusUpdate:
    framework_id: str
    status: TaskStatus
    latest_state: TaskState | None


@dataclass(frozen=True)
class SendTaskEnded:
    """The task is over but its terminal update waits behind unacknowledged ones: tell
    the master now so it can free the task's resources (the update still follows)."""

    framework_id: str
    task_id: str
    state: TaskState


@dataclass(frozen=True)
class SendExecutorExited:
    framework_id: str
    executor_id: str
    wait_status: int


@dataclass(frozen=True)
class SendExecutorMessage:
    framework_id: str
    executor_id: str
    data: bytes


@dataclass(frozen=True)
class LaunchProcess:
    """Start a process through the supervisor: its own session, stdout/stderr appended to
    files in `sandbox`, cwd = sandbox (created if missing)."""

    proc_id: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    sandbox: str
    executable: str | None = None  # None: argv[0]
    # The container the process runs in: created (fetch, image, isolation) by its first
    # process, joined by later ones. None: no container (plain supervised process).
    container: ContainerConfig | None = None


@dataclass(frozen=True)
class UpdateContainer:
    """The container's allocation changed (a task joined a running executor)."""

    container_id: str
    resources: Resources


@dataclass(frozen=True)
class KillContainer:
    """SIGKILL every process in the container (it hit a limitation)."""

    container_id: str


@dataclass(frozen=True)
class DestroyContainer:
    """The executor run is over and none of its processes is left: release what its
    isolation holds (cgroups, mounts, the image's writable layer). Sent once per run."""

    container_id: str


@dataclass(frozen=True)
class RunCheck:
    """Probe a built-in executor's task once (a health check or a check) within
    `spec.timeout_s`, and answer with events.CheckResult(check_id, ...). COMMAND probes
    run with `env` in `sandbox`, inside the container's mount namespace if it has one."""

    check_id: str
    framework_id: str
    task_id: str
    container_id: str
    spec: CheckSpec
    env: Mapping[str, str]
    sandbox: str


@dataclass(frozen=True)
class SignalProcess:
    """Signal the process group of a supervised process."""

    proc_id: str
    signal: int


@dataclass(frozen=True)
class ForgetProcess:
    """Its exit was handled: the supervisor may drop it."""

    proc_id: str


@dataclass(frozen=True)
class ToExecutor:
    """One event (Mesos v1 executor JSON) on an executor's SUBSCRIBE stream."""

    framework_id: str
    executor_id: str
    event: Json


@dataclass(frozen=True)
class OpenExecutorStream:
    """SUBSCRIBE accepted: answer 200 and stream events; replaces any older stream."""

    request_id: str
    framework_id: str
    executor_id: str


@dataclass(frozen=True)
class CloseExecutorStream:
    framework_id: str
    executor_id: str


@dataclass(frozen=True)
class Reply:
    """Answer an executor API call (202 accepted, or 4xx naming the problem)."""

    request_id: str
    status: int
    message: str = ""


@dataclass(frozen=True)
class Stop:
    """The master told this agent to shut down: stop, killing what runs here."""

    message: str


@dataclass(frozen=True)
class Log:
    level: str
    message: str
    detail: Json = field(default_factory=dict)


AgentCommand = (
    Checkpoint
    | RecoveryComplete
    | RecoverContainer
    | Register
    | Pong
    | SendStatusUpdate
    | SendTaskEnded
    | SendExecutorExited
    | SendExecutorMessage
    | LaunchProcess
    | UpdateContainer
    | KillContainer
    | DestroyContainer
    | RunCheck
    | SignalProcess
    | ForgetProcess
    | ToExecutor
    | OpenExecutorStream
    | CloseExecutorStream
    | Reply
    | Stop
    | Log
)
