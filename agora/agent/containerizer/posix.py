"""posix/cpu and posix/mem: measure a container without isolating it (Mesos's
PosixCpuIsolatorProcess / PosixMemIsolatorProcess). With no cgroups the container is
its process tree: the processes the supervisor started for it and their descendants.
A process that escaped (re-parented to init) is no longer counted: posix isolation
cannot tell, which is why the cgroups isolators exist."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psutil  # type: ignore[import-untyped]

from agora.agent.containerizer.isolator import Isolator
from agora.agent.containerizer.model import Container
from agora.agent.containerizer.options import ContainerizerOptions

MB = 1024 * 1024
MIN_MEMORY_BYTES = 32 * MB  # Mesos's MIN_MEMORY
MIN_CPUS = 0.01  # Mesos's MIN_CPUS


def cpus_limit(container: Container) -> float:
    """The container's cpus allocation (at least Mesos's minimum)."""
    return max(container.resources.scalar("cpus") / 1000.0, MIN_CPUS)


def mem_limit_bytes(container: Container) -> int:
    """The container's mem allocation in bytes (at least Mesos's 32 MB minimum)."""
    return max(container.resources.scalar("mem") * MB // 1000, MIN_MEMORY_BYTES)


USAGE_TREE_MAX_AGE_S = 0.5  # how stale the host's parent->children map may be for usage


class _ChildrenCache:
    taken_at = float("-inf")
    children: dict[int, list[int]] = {}  # noqa: RUF012 - replaced whole, never mutated


_cache = _ChildrenCache()


def host_children(max_age_s: float) -> dict[int, list[int]]:
    """pid -> child pids of every host process, from one /proc walk reused for
    `max_age_s`: psutil's children() walks all of /proc per call, which made measuring
    N containers O(N * host processes) (200 containers: 5 s per /monitor/statistics)."""
    now = time.monotonic()
    if now - _cache.taken_at > max_age_s:
        children: dict[int, list[int]] = {}
        for process in psutil.process_iter(["ppid"]):
            ppid = process.info.get("ppid")
            if ppid is not None:
                children.setdefault(ppid, []).append(process.pid)
        _cache.taken_at, _cache.children = now, children
    return _cache.children


def _cached_tree(roots: set[int], max_age_s: float) -> list[psutil.Process]:
    children = host_children(max_age_s)
    found: dict[int, psutil.Process] = {}
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        try:
            found[pid] = psutil.Process(pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        stack.extend(children.get(pid, ()))
    return list(found.values())


def process_tree(container: Container, max_age_s: float = 0.0) -> list[psutil.Process]:
    """The container's processes: its started processes and all their descendants
    (exact by default; `max_age_s` > 0 may miss children younger than that)."""
    roots = set(container.pids.values())
    if container.leader_pid is not None:
        roots.add(container.leader_pid)
    if max_age_s > 0:
        return _cached_tree(roots, max_age_s)
    found: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            children = root.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for process in [root, *children]:
            found[process.pid] = process
    return list(found.values())


class _PosixIsolator(Isolator):
    def __init__(self, options: ContainerizerOptions) -> None:
        self.options = options

    def processes(self, container: Container) -> set[int] | None:
        return {p.pid for p in process_tree(container)}


class PosixCpuIsolator(_PosixIsolator):
    name = "posix/cpu"

    def usage(self, container: Container) -> dict[str, Any]:
        user = system = 0.0
        threads = 0
        tree = process_tree(container, USAGE_TREE_MAX_AGE_S)
        for process in tree:
            with contextlib.suppress(psutil.Error):
                with process.oneshot():
                    times = process.cpu_times()
                    threads += process.num_threads()
                user += times.user
                system += times.system
        return {
            "cpus_user_time_secs": round(user, 3),
            "cpus_system_time_secs": round(system, 3),
            "cpus_limit": cpus_limit(container),
            "processes": len(tree),
            "threads": threads,
        }


class PosixMemIsolator(_PosixIsolator):
    name = "posix/mem"

    def usage(self, container: Container) -> dict[str, Any]:
        rss = 0
        tree = process_tree(container, USAGE_TREE_MAX_AGE_S)
        for process in tree:
            with contextlib.suppress(psutil.Error):
                rss += process.memory_info().rss
        return {
            "mem_rss_bytes": rss,
            "mem_limit_bytes": mem_limit_bytes(container),
            "processes": len(tree),
        }
