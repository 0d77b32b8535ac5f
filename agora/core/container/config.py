"""What the agent core asks the containerizer for: one ContainerConfig per process it
launches. Processes of one executor run share a container (its cgroups, namespaces and
root filesystem); the first launch creates it, later ones join it (task groups)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agora.core.resources import Resources
from agora.core.task_states import Reason

Json = Mapping[str, Any]


@dataclass(frozen=True)
class ContainerConfig:
    container_id: str  # the executor run's container
    framework_id: str
    executor_id: str
    task_id: str | None  # None: a custom executor's own process
    directory: str  # the run's sandbox on the host
    sandbox: str  # this process's sandbox (a task's own directory in task groups)
    resources: Resources  # everything allocated to the container so far
    user: str | None = None  # run as this user (None: as the agent itself)
    container_info: Json | None = None  # Mesos ContainerInfo (type MESOS: image, volumes)
    uris: tuple[Json, ...] = ()  # CommandInfo.uris, fetched into `sandbox` first
    checkpoint: bool = False  # its framework checkpoints: the container must survive a restart


@dataclass(frozen=True)
class Limitation:
    """Why the containerizer stopped a container: the reason and message the task's
    terminal update carries (Mesos's ContainerLimitation)."""

    reason: Reason
    message: str


def task_user(command: object, framework_user: str | None, switch_user: bool) -> str | None:
    """Mesos: CommandInfo.user, else FrameworkInfo.user, only with --switch_user."""
    if not switch_user:
        return None
    if isinstance(command, Mapping):
        user = command.get("user")
        if isinstance(user, str) and user:
            return user
    return framework_user or None
