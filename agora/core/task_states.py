"""Task states, reasons and sources (Mesos `TaskState`, `TaskStatus.Reason`), and the
transition table the master applies.

Terminal states are absorbing: once the master records one, the task never changes
state again, and asking it to raises IllegalTransition. TASK_UNREACHABLE is not
terminal: the agent may come back. TASK_UNKNOWN is only ever a reconciliation answer
and is never stored.
"""

from __future__ import annotations

from enum import StrEnum

from agora.core.errors import IllegalTransition


class TaskState(StrEnum):
    STAGING = "TASK_STAGING"
    STARTING = "TASK_STARTING"
    RUNNING = "TASK_RUNNING"
    KILLING = "TASK_KILLING"
    FINISHED = "TASK_FINISHED"
    FAILED = "TASK_FAILED"
    KILLED = "TASK_KILLED"
    ERROR = "TASK_ERROR"
    LOST = "TASK_LOST"
    DROPPED = "TASK_DROPPED"
    UNREACHABLE = "TASK_UNREACHABLE"
    GONE = "TASK_GONE"
    GONE_BY_OPERATOR = "TASK_GONE_BY_OPERATOR"
    UNKNOWN = "TASK_UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        TaskState.FINISHED,
        TaskState.FAILED,
        TaskState.KILLED,
        TaskState.ERROR,
        TaskState.LOST,
        TaskState.DROPPED,
        TaskState.GONE,
        TaskState.GONE_BY_OPERATOR,
    }
)

# States a framework without PARTITION_AWARE never sees: the master reports TASK_LOST.
PARTITION_AWARE_STATES = frozenset(
    {
        TaskState.DROPPED,
        TaskState.UNREACHABLE,
        TaskState.GONE,
        TaskState.GONE_BY_OPERATOR,
        TaskState.UNKNOWN,
    }
)

_LIVE = (TaskState.STARTING, TaskState.RUNNING, TaskState.KILLING, TaskState.UNREACHABLE)

TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.STAGING: frozenset({*_LIVE, *TERMINAL_STATES}),
    TaskState.STARTING: frozenset({*_LIVE, *TERMINAL_STATES}),
    TaskState.RUNNING: frozenset(
        {TaskState.RUNNING, TaskState.KILLING, TaskState.UNREACHABLE, *TERMINAL_STATES}
    ),
    TaskState.KILLING: frozenset(
        {TaskState.KILLING, TaskState.RUNNING, TaskState.UNREACHABLE, *TERMINAL_STATES}
    ),
    # An unreachable agent that comes back reports whatever its tasks are doing now.
    TaskState.UNREACHABLE: frozenset({*_LIVE, *TERMINAL_STATES}),
    **{state: frozenset({state}) for state in TERMINAL_STATES},  # absorbing
    TaskState.UNKNOWN: frozenset(),
}


def can_transition(current: TaskState, new: TaskState) -> bool:
    return new in TRANSITIONS[current]


def transition(current: TaskState, new: TaskState) -> TaskState:
    """Return the next state, or raise IllegalTransition naming both states."""
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"task cannot go from {current.value} to {new.value}")
    return new


def visible_state(state: TaskState, partition_aware: bool) -> TaskState:
    """The state a framework is told: PARTITION_AWARE states become TASK_LOST for others."""
    if not partition_aware and state in PARTITION_AWARE_STATES:
        return TaskState.LOST
    return state


class Source(StrEnum):
    MASTER = "SOURCE_MASTER"
    AGENT = "SOURCE_AGENT"
    EXECUTOR = "SOURCE_EXECUTOR"


class Reason(StrEnum):
    COMMAND_EXECUTOR_FAILED = "REASON_COMMAND_EXECUTOR_FAILED"
    CONTAINER_LAUNCH_FAILED = "REASON_CONTAINER_LAUNCH_FAILED"
    CONTAINER_LIMITATION = "REASON_CONTAINER_LIMITATION"
    CONTAINER_LIMITATION_DISK = "REASON_CONTAINER_LIMITATION_DISK"
    CONTAINER_LIMITATION_MEMORY = "REASON_CONTAINER_LIMITATION_MEMORY"
    CONTAINER_PREEMPTED = "REASON_CONTAINER_PREEMPTED"
    CONTAINER_UPDATE_FAILED = "REASON_CONTAINER_UPDATE_FAILED"
    MAX_COMPLETION_TIME_REACHED = "REASON_MAX_COMPLETION_TIME_REACHED"
    EXECUTOR_REGISTRATION_TIMEOUT = "REASON_EXECUTOR_REGISTRATION_TIMEOUT"
    EXECUTOR_REREGISTRATION_TIMEOUT = "REASON_EXECUTOR_REREGISTRATION_TIMEOUT"
    EXECUTOR_TERMINATED = "REASON_EXECUTOR_TERMINATED"
    EXECUTOR_UNREGISTERED = "REASON_EXECUTOR_UNREGISTERED"
    FRAMEWORK_REMOVED = "REASON_FRAMEWORK_REMOVED"
    GC_ERROR = "REASON_GC_ERROR"
    INVALID_FRAMEWORKID = "REASON_INVALID_FRAMEWORKID"
    INVALID_OFFERS = "REASON_INVALID_OFFERS"
    IO_SWITCHBOARD_EXITED = "REASON_IO_SWITCHBOARD_EXITED"
    MASTER_DISCONNECTED = "REASON_MASTER_DISCONNECTED"
    RECONCILIATION = "REASON_RECONCILIATION"
    RESOURCES_UNKNOWN = "REASON_RESOURCES_UNKNOWN"
    AGENT_DISCONNECTED = "REASON_AGENT_DISCONNECTED"
    AGENT_DRAINING = "REASON_AGENT_DRAINING"
    AGENT_REMOVED = "REASON_AGENT_REMOVED"
    AGENT_REMOVED_BY_OPERATOR = "REASON_AGENT_REMOVED_BY_OPERATOR"
    AGENT_REREGISTERED = "REASON_AGENT_REREGISTERED"
    AGENT_RESTARTED = "REASON_AGENT_RESTARTED"
    AGENT_UNKNOWN = "REASON_AGENT_UNKNOWN"
    TASK_KILLED_DURING_LAUNCH = "REASON_TASK_KILLED_DURING_LAUNCH"
    TASK_CHECK_STATUS_UPDATED = "REASON_TASK_CHECK_STATUS_UPDATED"
    TASK_HEALTH_CHECK_STATUS_UPDATED = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
    TASK_GROUP_INVALID = "REASON_TASK_GROUP_INVALID"
    TASK_GROUP_UNAUTHORIZED = "REASON_TASK_GROUP_UNAUTHORIZED"
    TASK_INVALID = "REASON_TASK_INVALID"
    TASK_UNAUTHORIZED = "REASON_TASK_UNAUTHORIZED"
    TASK_UNKNOWN = "REASON_TASK_UNKNOWN"
