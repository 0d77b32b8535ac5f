"""The master's records: frameworks, agents, tasks, executors and offers."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agora.core.allocator.constraints import RoleConstraints
from agora.core.allocator.options import AllocatorOptions
from agora.core.master.info import AgentInfo, FrameworkInfo, TaskStatus
from agora.core.resources import Resources, SumCache
from agora.core.task_states import TaskState

MAX_STATUSES_PER_TASK = 10
MAX_REMEMBERED_ACKS = 10_000


@dataclass(frozen=True)
class MasterOptions:
    allocation_interval_s: float = 1.0
    offer_timeout_s: float | None = None
    agent_ping_timeout_s: float = 15.0
    max_agent_ping_timeouts: int = 5
    agent_reregister_timeout_s: float = 600.0
    heartbeat_interval_s: float = 15.0
    max_completed_frameworks: int = 50
    max_completed_tasks_per_framework: int = 1000
    max_unreachable_tasks_per_framework: int = 1000
    # Registry GC of unreachable and gone agents (Mesos's registry_* flags).
    registry_gc_interval_s: float = 900.0
    registry_max_agent_age_s: float = 14 * 24 * 3600.0
    registry_max_agent_count: int = 102_400
    # Offer what a finished task frees at once (an event-triggered pass over its agent)
    # rather than at the next batch allocation as Mesos does: short tasks keep flowing.
    reoffer_freed_resources: bool = True
    allocator: AllocatorOptions = field(default_factory=AllocatorOptions)


@dataclass
class Task:
    task_id: str
    framework_id: str
    agent_id: str
    name: str
    role: str
    resources: Resources  # tagged with `role`
    executor_id: str | None = None
    state: TaskState = TaskState.STAGING
    status_update_state: TaskState | None = None
    status_update_uuid: bytes | None = None
    statuses: list[TaskStatus] = field(default_factory=list)
    unreachable_time: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    def record(self, status: TaskStatus) -> None:
        self.statuses.append(status)
        if len(self.statuses) > MAX_STATUSES_PER_TASK:
            del self.statuses[0]

    def latest_status(self) -> TaskStatus | None:
        return self.statuses[-1] if self.statuses else None


@dataclass
class Executor:
    executor_id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources  # tagged
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Offer:
    id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources  # tagged
    expires_at: float | None = None


@dataclass
class Framework:
    id: str
    info: FrameworkInfo
    stream_id: str | None = None
    connected: bool = False
    active: bool = False
    suppressed_roles: frozenset[str] = frozenset()
    constraints: Mapping[str, RoleConstraints] = field(default_factory=dict)
    registered_time: float = 0.0
    reregistered_time: float | None = None
    unregistered_time: float | None = None
    failover_deadline: float | None = None
    failover_epoch: int = 0  # bumped to invalidate an armed failover timer
    recovered: bool = False  # known only from agents' reports, never subscribed here
    offers: set[str] = field(default_factory=set)
    tasks: dict[str, Task] = field(default_factory=dict)
    unreachable_tasks: dict[str, Task] = field(default_factory=dict)
    completed_tasks: deque[Task] = field(default_factory=lambda: deque(maxlen=1000))
    # agent id -> executor id -> executor
    executors: dict[str, dict[str, Executor]] = field(default_factory=dict)
    # Update uuids the framework acknowledged (bounded): a late duplicate of one of them
    # must not reach the framework again, or it would see its task go back in time.
    # (OrderedDict: dropping the oldest is O(1); a dict's `next(iter())` walks deleted slots)
    acked_uuids: OrderedDict[bytes, None] = field(default_factory=OrderedDict)

    @property
    def partition_aware(self) -> bool:
        return self.info.partition_aware

    def remember_ack(self, uuid: bytes) -> None:
        self.acked_uuids[uuid] = None
        if len(self.acked_uuids) > MAX_REMEMBERED_ACKS:
            self.acked_uuids.popitem(last=False)

    def executor(self, agent_id: str, executor_id: str) -> Executor | None:
        return self.executors.get(agent_id, {}).get(executor_id)


@dataclass
class Agent:
    id: str
    info: AgentInfo
    capabilities: frozenset[str]
    version: str
    connection_id: str
    registered_time: float
    reregistered_time: float | None = None
    connected: bool = True
    active: bool = True
    # framework id -> task id -> task
    tasks: dict[str, dict[str, Task]] = field(default_factory=dict)
    executors: dict[str, dict[str, Executor]] = field(default_factory=dict)
    offers: set[str] = field(default_factory=set)
    pings_missed: int = 0
    pong_pending: bool = False
    timer_epoch: int = 0  # bumped to invalidate armed ping / re-register timers

    def all_tasks(self) -> Iterator[Task]:
        for by_id in self.tasks.values():
            yield from by_id.values()

    def all_executors(self) -> Iterator[Executor]:
        for by_id in self.executors.values():
            yield from by_id.values()

    def used_by(self, sums: SumCache | None = None) -> dict[str, Resources]:
        """Tagged resources of live tasks and executors, per framework (allocator `used`);
        with `sums`, equal sums of the same shared values are one object."""
        parts: dict[str, list[Resources]] = {}
        for task in self.all_tasks():
            if not task.state.is_terminal:
                parts.setdefault(task.framework_id, []).append(task.resources)
        for executor in self.all_executors():
            parts.setdefault(executor.framework_id, []).append(executor.resources)
        if sums is None:
            return {framework_id: Resources.sum(p) for framework_id, p in parts.items()}
        return {framework_id: sums.total(tuple(p)) for framework_id, p in parts.items()}


@dataclass(frozen=True)
class UnreachableAgent:
    """An agent recorded unreachable (in the master and in the registry) and since when."""

    info: AgentInfo
    since: float
