"""agora.client: the public asyncio library for writing Mesos-style frameworks and executors.

- `SchedulerDriver`: subscribe a framework to the master, receive events, make calls.
- `ExecutorDriver` / `Executor`: a custom executor's side of the agent's executor API.
- `StateClient`: read `/master/state`, an agent's `/state` and sandbox files.
- builders in `agora.client.types` (`FrameworkInfo`, `task_info`, `command_info`, ...).
"""

from agora.client.backoff import Backoff, parse_duration_s
from agora.client.executor import Executor, ExecutorDriver, ExecutorEnvironment, ExecutorError
from agora.client.http import HttpError, HttpPool
from agora.client.scheduler import CallError, SchedulerDriver, SchedulerError, new_task_id
from agora.client.state import StateClient, UnreachableError, agent_address
from agora.client.types import (
    TERMINAL_STATES,
    Event,
    FrameworkInfo,
    command_info,
    launch,
    offer_attributes,
    offer_role,
    offer_scalars,
    scalar_resources,
    task_info,
)

__all__ = [
    "TERMINAL_STATES",
    "Backoff",
    "CallError",
    "Event",
    "Executor",
    "ExecutorDriver",
    "ExecutorEnvironment",
    "ExecutorError",
    "FrameworkInfo",
    "HttpError",
    "HttpPool",
    "SchedulerDriver",
    "SchedulerError",
    "StateClient",
    "UnreachableError",
    "agent_address",
    "command_info",
    "launch",
    "new_task_id",
    "offer_attributes",
    "offer_role",
    "offer_scalars",
    "parse_duration_s",
    "scalar_resources",
    "task_info",
]
