"""The agent core's records: configuration, frameworks' executors and their tasks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from agora.core.agent.launch import DEFAULT_EXECUTOR_SHUTDOWN_GRACE_S
from agora.core.container.config import Limitation
from agora.core.master import commands as mcmd
from agora.core.master.info import AgentInfo
from agora.core.resources import Resources
from agora.core.task_states import TaskState

Json = Mapping[str, Any]
VERSION = "1.11.0"


@dataclass(frozen=True)
class AgentConfig:
    work_dir: str
    info: AgentInfo
    ip: str
    port: int
    capabilities: frozenset[str] = frozenset()
    version: str = VERSION
    base_env: Mapping[str, str] = field(default_factory=dict)
    executor_registration_timeout_s: float = 60.0
    executor_shutdown_grace_period_s: float = DEFAULT_EXECUTOR_SHUTDOWN_GRACE_S
    recovery_timeout_s: float = 900.0
    executor_reregistration_timeout_s: float = 2.0
    completed_tasks_kept: int = 1000
    switch_user: bool = False  # run tasks as CommandInfo.user / FrameworkInfo.user

    @property
    def endpoint(self) -> str:
        return f"{self.ip}:{self.port}"


class TimerKind(Enum):
    RETRY = 1  # a status update's retry is due (key: (framework, task))
    KILL = 2  # a built-in task's kill grace period is over (key: (framework, task))
    REGISTRATION = 3  # a launched executor's time to subscribe is up (key: container)
    SHUTDOWN = 4  # an executor's shutdown grace period is over (key: container)
    CHECK = 5  # a health check or check is due (key: health.Key)
    REREGISTRATION = 6  # recovered executors' time to re-subscribe is up (key: container)


class ExecutorKind(Enum):
    COMMAND = "command"  # the built-in command executor: one task, one process
    DEFAULT = "default"  # the built-in default executor: task groups, a process per task
    CUSTOM = "custom"  # the framework's own program, speaking the executor API


class ExecutorState(Enum):
    LAUNCHING = "launching"  # started, not yet subscribed (custom only)
    RUNNING = "running"
    TERMINATING = "terminating"  # shutdown or destroy in progress
    TERMINATED = "terminated"


@dataclass
class Task:
    framework_id: str
    task_id: str
    launch: mcmd.TaskLaunch
    executor_id: str
    state: TaskState = TaskState.STAGING
    proc_id: str | None = None  # built-in executors: its own process
    group: int = 0  # task group number inside the executor (0: none)
    killing: bool = False
    kill_deadline: float | None = None
    delivered: bool = False  # custom executors: LAUNCH sent
    exited: bool = False  # its process ended (built-in executors)
    container_id: str = ""  # its executor run's container

    @property
    def key(self) -> tuple[str, str]:
        return (self.framework_id, self.task_id)


@dataclass
class Executor:
    framework_id: str
    executor_id: str
    kind: ExecutorKind
    container_id: str
    directory: str
    raw: Json
    resources: Resources
    state: ExecutorState = ExecutorState.LAUNCHING
    subscribed: bool = False
    tasks: dict[str, Task] = field(default_factory=dict)
    completed_tasks: list[Task] = field(default_factory=list)
    registration_deadline: float | None = None
    shutdown_deadline: float | None = None
    proc_exited: bool = False
    wait_status: int | None = None
    next_group: int = 1
    limitation: Limitation | None = None  # why the containerizer stopped it
    destroyed: bool = False  # DestroyContainer sent
    recovered: bool = False  # rebuilt from the checkpoint after an agent restart
    reregistering: bool = False  # recovered custom executor, not yet re-subscribed

    @property
    def key(self) -> tuple[str, str]:
        return (self.framework_id, self.executor_id)

    @property
    def proc_id(self) -> str:
        return self.container_id
