"""Inputs of the agent core. The shell turns master frames, supervisor reports,
executor API calls and timers into these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agora.core.agent.checkpoint import RecoveredState
from agora.core.agent.health import Probe
from agora.core.container.config import Limitation
from agora.core.master import commands as mcmd
from agora.core.master.info import TaskStatus

Json = Mapping[str, Any]


@dataclass(frozen=True)
class Tick:
    """A timer fired: process whatever is due."""


@dataclass(frozen=True)
class MasterConnected:
    """The WebSocket to the master is open: (re)register."""


@dataclass(frozen=True)
class MasterDisconnected:
    """The link to the master is gone. `refusal`: the master closed it on purpose, with
    this message (before this agent was registered again, that refuses its id: e.g. the
    id was marked gone)."""

    refusal: str | None = None


@dataclass(frozen=True)
class FromMaster:
    message: mcmd.AgentMessage


@dataclass(frozen=True)
class ProcessLaunched:
    proc_id: str
    pid: int


@dataclass(frozen=True)
class ProcessLaunchFailed:
    proc_id: str
    error: str


@dataclass(frozen=True)
class ProcessExited:
    proc_id: str
    wait_status: int  # as os.waitpid reports it


@dataclass(frozen=True)
class ContainerLimited:
    """The containerizer found the container over a limit (memory, disk): its tasks fail
    with this reason once its processes are gone."""

    container_id: str
    limitation: Limitation


@dataclass(frozen=True)
class CheckResult:
    """A commands.RunCheck probe ended (or could not run: `probe.error`)."""

    check_id: str
    framework_id: str
    task_id: str
    kind: str  # health.HEALTH | health.CHECK
    probe: Probe


@dataclass(frozen=True)
class ExecutorSubscribe:
    request_id: str
    framework_id: str
    executor_id: str
    unacknowledged_updates: tuple[TaskStatus, ...] = ()
    unacknowledged_tasks: tuple[str, ...] = ()  # ids of tasks it has with no update acked


@dataclass(frozen=True)
class ExecutorUpdate:
    request_id: str
    framework_id: str
    executor_id: str
    status: TaskStatus


@dataclass(frozen=True)
class ExecutorMessage:
    request_id: str
    framework_id: str
    executor_id: str
    data: bytes


@dataclass(frozen=True)
class ExecutorHeartbeat:
    request_id: str
    framework_id: str
    executor_id: str


@dataclass(frozen=True)
class ExecutorStreamClosed:
    """The executor's SUBSCRIBE connection ended."""

    framework_id: str
    executor_id: str


@dataclass(frozen=True)
class SupervisedProcess:
    """A process the supervisor still knows: running (`wait_status` None) or ended."""

    proc_id: str
    pid: int
    wait_status: int | None = None


@dataclass(frozen=True)
class Recovered:
    """The agent (re)started: what its checkpoint held and what the supervisor still
    runs. `rebooted`: the host restarted since the checkpoint was written (its boot id
    changed), so none of the checkpointed processes can still exist."""

    state: RecoveredState
    processes: tuple[SupervisedProcess, ...] = ()
    rebooted: bool = False


AgentEvent = (
    Tick
    | MasterConnected
    | MasterDisconnected
    | FromMaster
    | ProcessLaunched
    | ProcessLaunchFailed
    | ProcessExited
    | ContainerLimited
    | CheckResult
    | ExecutorSubscribe
    | ExecutorUpdate
    | ExecutorMessage
    | ExecutorHeartbeat
    | ExecutorStreamClosed
    | Recovered
)
