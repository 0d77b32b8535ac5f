"""The containerizer's flags (Mesos agent flags of the same names, durations in `_s`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

CGROUPS_ISOLATION = ("cgroups/cpu", "cgroups/mem", "cgroups/pids", "disk/du", "filesystem/linux")
POSIX_ISOLATION = ("posix/cpu", "posix/mem", "disk/du")


@dataclass(frozen=True)
class ContainerizerOptions:
    work_dir: str
    isolation: tuple[str, ...] = POSIX_ISOLATION
    agent_key: str = ""  # separates this agent's cgroups from other agents' on the host
    cgroups_hierarchy: str = "/sys/fs/cgroup"
    cgroups_root: str = "agora"
    cgroups_enable_cfs: bool = False
    cgroups_limit_swap: bool = False
    enforce_container_disk_quota: bool = False
    container_disk_watch_interval_s: float = 15.0
    sandbox_directory: str = "/mnt/mesos/sandbox"
    image_providers: tuple[str, ...] = ("docker",)
    docker_registry: str | None = None  # a directory of `docker save` tarballs
    docker_store_dir: str | None = None  # default <work_dir>/store/docker
    image_provisioner_backend: str | None = None  # overlay | copy (None: overlay if possible)
    fetcher_cache_dir: str | None = None  # default <work_dir>/fetcher-cache
    fetcher_cache_size_bytes: int = 2 * 1024**3
    fetcher_stall_timeout_s: float = 60.0
    frameworks_home: str | None = None  # relative URIs are resolved against it
    switch_user: bool = True
    gpu_devices: tuple[int, ...] = ()  # NVIDIA minor numbers given out as `gpus`

    @property
    def store_dir(self) -> str:
        return self.docker_store_dir or os.path.join(self.work_dir, "store", "docker")

    @property
    def cache_dir(self) -> str:
        return self.fetcher_cache_dir or os.path.join(self.work_dir, "fetcher-cache")

    @property
    def provisioner_dir(self) -> str:
        return os.path.join(self.work_dir, "provisioner")


def cgroups_usable(hierarchy: str = "/sys/fs/cgroup") -> bool:
    """Root, and the cpu and memory controllers mounted writable (v1 or v2)."""
    if os.geteuid() != 0:
        return False
    v1 = all(os.access(os.path.join(hierarchy, c), os.W_OK) for c in ("cpu", "memory"))
    controllers = os.path.join(hierarchy, "cgroup.controllers")
    v2 = False
    if os.path.exists(controllers):
        with open(controllers) as f:
            names = f.read().split()
        v2 = "cpu" in names and "memory" in names and os.access(hierarchy, os.W_OK)
    return v1 or v2


def default_isolation(hierarchy: str = "/sys/fs/cgroup") -> tuple[str, ...]:
    return CGROUPS_ISOLATION if cgroups_usable(hierarchy) else POSIX_ISOLATION
