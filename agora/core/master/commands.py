"""Outputs of the master core: what to answer, what to stream to frameworks and what to
tell agents. Shells carry them out; the simulator delivers them over its network."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agora.core.attributes import Attributes
from agora.core.master.info import FrameworkInfo, MasterInfo, TaskStatus
from agora.core.master.registry import Operation
from agora.core.resources import Resources

Json = Mapping[str, Any]

# ------------------------------------------------------------- scheduler events


@dataclass(frozen=True)
class Subscribed:
    framework_id: str
    heartbeat_interval_s: float
    master_info: MasterInfo


@dataclass(frozen=True)
class OfferView:
    """An offer as a framework sees it (Mesos `Offer`)."""

    id: str
    framework_id: str
    agent_id: str
    hostname: str
    agent_port: int
    role: str
    resources: Resources  # tagged with `role`
    attributes: Attributes
    executor_ids: tuple[str, ...] = ()
    region: str | None = None
    zone: str | None = None


@dataclass(frozen=True)
class Offers:
    offers: tuple[OfferView, ...]


@dataclass(frozen=True)
class Rescind:
    offer_id: str


@dataclass(frozen=True)
class Update:
    status: TaskStatus


@dataclass(frozen=True)
class FrameworkMessage:
    agent_id: str
    executor_id: str
    data: bytes


@dataclass(frozen=True)
class Failure:
    agent_id: str | None = None
    executor_id: str | None = None
    status: int | None = None


@dataclass(frozen=True)
class Error:
    message: str


SchedulerEvent = Subscribed | Offers | Rescind | Update | FrameworkMessage | Failure | Error

# --------------------------------------------------------------- agent messages


@dataclass(frozen=True)
class ExecutorSpec:
    executor_id: str
    framework_id: str
    resources: Resources  # tagged
    raw: Json = field(default_factory=dict)


@dataclass(frozen=True)
class TaskLaunch:
    task_id: str
    name: str
    agent_id: str
    resources: Resources  # tagged
    executor: ExecutorSpec | None = None
    raw: Json = field(default_factory=dict)


@dataclass(frozen=True)
class AgentRegistered:
    agent_id: str
    master_id: str


@dataclass(frozen=True)
class AgentReregistered:
    agent_id: str
    master_id: str


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class RunTask:
    framework: FrameworkInfo
    task: TaskLaunch


@dataclass(frozen=True)
class RunTaskGroup:
    framework: FrameworkInfo
    executor: ExecutorSpec
    tasks: tuple[TaskLaunch, ...]


@dataclass(frozen=True)
class KillTask:
    framework_id: str
    task_id: str
    kill_policy: Json | None = None


@dataclass(frozen=True)
class ShutdownExecutor:
    framework_id: str
    executor_id: str


@dataclass(frozen=True)
class ShutdownFramework:
    framework_id: str


@dataclass(frozen=True)
class AcknowledgeUpdate:
    framework_id: str
    task_id: str
    uuid: bytes


@dataclass(frozen=True)
class MessageToExecutor:
    framework_id: str
    executor_id: str
    data: bytes


@dataclass(frozen=True)
class CheckpointResources:
    """Reservations and volumes on the agent changed (RESERVE/CREATE...): its new total."""

    total: Resources


@dataclass(frozen=True)
class UpdateFrameworkInfo:
    framework: FrameworkInfo


@dataclass(frozen=True)
class ShutdownAgent:
    message: str


AgentMessage = (
    AgentRegistered
    | AgentReregistered
    | Ping
    | RunTask
    | RunTaskGroup
    | KillTask
    | ShutdownExecutor
    | ShutdownFramework
    | AcknowledgeUpdate
    | MessageToExecutor
    | CheckpointResources
    | UpdateFrameworkInfo
    | ShutdownAgent
)

# --------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Respond:
    """Answer an HTTP call: 202 accepted, 200 with a body, or 4xx naming the problem."""

    request_id: str
    status: int
    message: str = ""
    body: Json | None = None


@dataclass(frozen=True)
class OpenStream:
    """SUBSCRIBE succeeded: answer 200 with this stream id; SUBSCRIBED follows on it."""

    request_id: str
    framework_id: str
    stream_id: str


@dataclass(frozen=True)
class RefuseSubscription:
    """SUBSCRIBE refused at the framework level: stream one ERROR record, then close."""

    request_id: str
    message: str


@dataclass(frozen=True)
class CloseStream:
    framework_id: str
    stream_id: str
    error: str | None = None  # sent as an ERROR event before closing


@dataclass(frozen=True)
class SendToFramework:
    framework_id: str
    event: SchedulerEvent


@dataclass(frozen=True)
class AcceptAgent:
    """Bind an agent connection to its (new or known) agent id."""

    connection_id: str
    agent_id: str


@dataclass(frozen=True)
class SendToAgent:
    agent_id: str
    message: AgentMessage


@dataclass(frozen=True)
class DropAgentConnection:
    connection_id: str
    message: str
    refused: bool = False  # the agent's id is refused for good (it must not come back)


@dataclass(frozen=True)
class Persist:
    """Make this registry operation durable before carrying out any later command
    (see agora/core/master/registry.py)."""

    operation: Operation


Command = (
    Persist
    | Respond
    | OpenStream
    | RefuseSubscription
    | CloseStream
    | SendToFramework
    | AcceptAgent
    | SendToAgent
    | DropAgentConnection
)
