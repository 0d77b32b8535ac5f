"""Inputs of the master core. Shells turn HTTP calls, agent frames and timers into these.

Scheduler calls carry the HTTP request id they answer and the `Mesos-Stream-Id` they
came with; operations, task infos and kill policies stay in their Mesos JSON shape
so the core can validate them field by field and name what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agora.core.allocator.quota import Quota
from agora.core.master.info import AgentInfo, FrameworkInfo, TaskStatus
from agora.core.master.registry import Registry
from agora.core.resources import Resources
from agora.core.task_states import TaskState

Json = Mapping[str, Any]

# ------------------------------------------------------------------ scheduler API


@dataclass(frozen=True, kw_only=True)
class Subscribe:
    request_id: str
    framework_info: Json
    suppressed_roles: tuple[str, ...] = ()
    offer_constraints: Json | None = None
    framework_id: str | None = None  # the call's own framework_id, if given


@dataclass(frozen=True, kw_only=True)
class SchedulerCall:
    request_id: str
    framework_id: str
    stream_id: str | None


@dataclass(frozen=True, kw_only=True)
class Teardown(SchedulerCall):
    pass


@dataclass(frozen=True, kw_only=True)
class Accept(SchedulerCall):
    offer_ids: tuple[str, ...]
    operations: tuple[Json, ...] = ()
    refuse_seconds: object = None  # None: the 5 s default


@dataclass(frozen=True, kw_only=True)
class Decline(SchedulerCall):
    offer_ids: tuple[str, ...]
    refuse_seconds: object = None


@dataclass(frozen=True, kw_only=True)
class Revive(SchedulerCall):
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Suppress(SchedulerCall):
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Kill(SchedulerCall):
    task_id: str
    agent_id: str | None = None
    kill_policy: Json | None = None


@dataclass(frozen=True, kw_only=True)
class Shutdown(SchedulerCall):
    executor_id: str
    agent_id: str


@dataclass(frozen=True, kw_only=True)
class Acknowledge(SchedulerCall):
    agent_id: str
    task_id: str
    uuid: bytes


@dataclass(frozen=True, kw_only=True)
class Reconcile(SchedulerCall):
    tasks: tuple[tuple[str, str | None], ...] = ()  # (task id, agent id); empty = implicit


@dataclass(frozen=True, kw_only=True)
class Message(SchedulerCall):
    agent_id: str
    executor_id: str
    data: bytes


@dataclass(frozen=True, kw_only=True)
class UpdateFramework(SchedulerCall):
    framework_info: Json
    suppressed_roles: tuple[str, ...] = ()
    offer_constraints: Json | None = None


@dataclass(frozen=True, kw_only=True)
class NoEffectCall(SchedulerCall):
    """A valid call with nothing for this master to do (inverse offers without
    maintenance, operation feedback without operation ids, REQUEST): checked like any
    call, then answered 202."""

    call_type: str


@dataclass(frozen=True, kw_only=True)
class FrameworkDisconnected:
    """The framework's SUBSCRIBE stream closed (the shell noticed)."""

    framework_id: str
    stream_id: str


# ---------------------------------------------------------------------- agents


@dataclass(frozen=True, kw_only=True)
class AgentTask:
    """A task as an agent reports it when re-registering (the agent is authoritative)."""

    framework_id: str
    task_id: str
    name: str
    state: TaskState
    resources: Resources  # tagged with the allocation role
    executor_id: str | None = None
    status_update_state: TaskState | None = None
    status_update_uuid: bytes | None = None
    raw: Json = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AgentExecutor:
    framework_id: str
    executor_id: str
    resources: Resources  # tagged
    raw: Json = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RegisterAgent:
    connection_id: str
    info: AgentInfo
    capabilities: frozenset[str] = frozenset()
    version: str = ""


@dataclass(frozen=True, kw_only=True)
class ReregisterAgent:
    connection_id: str
    agent_id: str
    info: AgentInfo
    capabilities: frozenset[str] = frozenset()
    version: str = ""
    tasks: tuple[AgentTask, ...] = ()
    executors: tuple[AgentExecutor, ...] = ()
    frameworks: tuple[FrameworkInfo, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AgentDisconnected:
    agent_id: str
    connection_id: str


@dataclass(frozen=True, kw_only=True)
class AgentPong:
    agent_id: str
    connection_id: str


@dataclass(frozen=True, kw_only=True)
class StatusUpdateFromAgent:
    agent_id: str
    framework_id: str
    status: TaskStatus
    latest_state: TaskState | None = None  # the task's newest state, if newer than status


@dataclass(frozen=True, kw_only=True)
class TaskEndedOnAgent:
    """The agent saw a task end while earlier updates of it are still being delivered:
    the master records the terminal state (freeing the resources) ahead of the update,
    as Mesos does when an update carries `latest_state`."""

    agent_id: str
    framework_id: str
    task_id: str
    state: TaskState


@dataclass(frozen=True, kw_only=True)
class ExecutorExited:
    agent_id: str
    framework_id: str
    executor_id: str
    status: int


@dataclass(frozen=True, kw_only=True)
class ExecutorMessage:
    agent_id: str
    framework_id: str
    executor_id: str
    data: bytes


# -------------------------------------------------------------------- operator


@dataclass(frozen=True, kw_only=True)
class UpdateQuota:
    """Set the quota of some roles, all or none (the default quota removes a role's)."""

    request_id: str
    configs: tuple[tuple[str, Quota], ...]
    force: bool = False


@dataclass(frozen=True, kw_only=True)
class UpdateWeights:
    request_id: str
    weights: Mapping[str, float]


@dataclass(frozen=True, kw_only=True)
class MarkAgentGone:
    request_id: str
    agent_id: str


@dataclass(frozen=True, kw_only=True)
class UpdateMaintenanceSchedule:
    request_id: str
    schedule: Json


# ---------------------------------------------------------------------- recovery


@dataclass(frozen=True, kw_only=True)
class RegistryRecovered:
    """This master was elected and loaded the registry: the first event it handles.
    (A core that never gets one starts from an empty registry, as a fresh cluster.)"""

    registry: Registry


@dataclass(frozen=True, kw_only=True)
class Tick:
    """Timers are due (the shell calls with this at `next_deadline()`)."""


MasterEvent = (
    Subscribe
    | Teardown
    | Accept
    | Decline
    | Revive
    | Suppress
    | Kill
    | Shutdown
    | Acknowledge
    | Reconcile
    | Message
    | UpdateFramework
    | NoEffectCall
    | FrameworkDisconnected
    | RegisterAgent
    | ReregisterAgent
    | AgentDisconnected
    | AgentPong
    | StatusUpdateFromAgent
    | TaskEndedOnAgent
    | ExecutorExited
    | ExecutorMessage
    | UpdateQuota
    | UpdateWeights
    | MarkAgentGone
    | UpdateMaintenanceSchedule
    | RegistryRecovered
    | Tick
)
