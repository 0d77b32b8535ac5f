"""The containerizer's record of one container and the errors its phases raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agora.agent.containerizer.launch_info import LaunchInfo, Overlay
from agora.core.container.config import ContainerConfig, Limitation
from agora.core.resources import Resources


class ContainerError(Exception):
    """A container could not be prepared: the message says what and why (it becomes the
    task's TASK_FAILED message, REASON_CONTAINER_LAUNCH_FAILED)."""


@dataclass
class Provisioned:
    """An image made ready for one container by the provisioner."""

    rootfs: str  # the container's root: the overlay's mount point, or a copied tree
    overlay: Overlay | None = None  # mounted at `rootfs` inside the container's namespace
    env: dict[str, str] = field(default_factory=dict)  # the image config's Env
    working_dir: str | None = None  # the image config's WorkingDir
    digest: str = ""  # the image's identity in the store


@dataclass
class Container:
    id: str
    config: ContainerConfig  # of its first process
    resources: Resources
    launch_info: LaunchInfo = field(default_factory=LaunchInfo)
    pids: dict[str, int] = field(default_factory=dict)  # proc id -> pid, while running
    leader_pid: int | None = None  # its first process (its namespaces are the container's)
    provisioned: Provisioned | None = None  # its image, if it has one
    uid: int | None = None  # resolved user (None: the agent's)
    gid: int | None = None
    limitation: Limitation | None = None
    destroyed: bool = False
    data: dict[str, Any] = field(default_factory=dict)  # isolators' own state, by name
    started_at: float = 0.0
    recovered: bool = False  # adopted after an agent restart
