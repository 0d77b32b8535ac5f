"""disk/du: measure each container's sandbox every `container_disk_watch_interval_s`
and, with `enforce_container_disk_quota`, stop a container that uses more than its
`disk` allocation (Mesos's PosixDiskIsolatorProcess).

Walking a big sandbox can take a while, so it never runs on the agent's event loop: one
background thread measures every container on the interval and keeps the last size;
`watch` (called from the loop) and `usage` only read that cached value."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from typing import Any

from agora.agent.containerizer.isolator import Isolator
from agora.agent.containerizer.model import Container
from agora.agent.containerizer.options import ContainerizerOptions
from agora.core.container.config import Limitation
from agora.core.task_states import Reason

log = logging.getLogger("agora.agent.containerizer.disk")

MB = 1024 * 1024
UNITS = (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024))


def format_bytes(value: int) -> str:
    """Mesos's Bytes output: the largest unit that divides the value, else bytes."""
    for unit, size in UNITS:
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}B"


def disk_usage_bytes(path: str) -> int:
    """What `du -s` counts: allocated blocks of everything under `path`, hard links
    once, without following symlinks or crossing into other filesystems (mounts)."""
    try:
        top = os.lstat(path)
    except OSError:
        return 0
    seen: set[tuple[int, int]] = set()
    total = top.st_blocks * 512
    stack = [path] if stat.S_ISDIR(top.st_mode) else []
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_dev != top.st_dev:
                continue
            if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += info.st_blocks * 512
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
    return total


@dataclass
class _Watched:
    directory: str
    used_bytes: int | None = None  # None: not measured yet


class DiskIsolator(Isolator):
    name = "disk/du"
    # The loop only compares cached sizes, so it can look often; the measuring thread
    # keeps to container_disk_watch_interval_s.
    watch_interval_s = 0.5

    def __init__(self, options: ContainerizerOptions) -> None:
        self.options = options
        self.interval_s = max(options.container_disk_watch_interval_s, 0.05)
        self._watched: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ phases

    def prepare(self, container: Container) -> None:
        with self._lock:
            self._watched[container.id] = _Watched(container.config.directory)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._measure_loop, name="disk-du", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def adopt(self, container: Container) -> None:
        self.prepare(container)  # only starts watching the sandbox

    def usage(self, container: Container) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        limit = self._limit_bytes(container)
        if limit is not None:
            stats["disk_limit_bytes"] = limit
        used = self._used(container)
        if used is not None:
            stats["disk_used_bytes"] = used
        return stats

    def watch(self, container: Container) -> Limitation | None:
        limit = self._limit_bytes(container)
        used = self._used(container)
        if limit is None or used is None or used <= limit:
            return None
        if not self.options.enforce_container_disk_quota:
            return None
        message = f"Disk usage ({format_bytes(used)}) exceeds quota ({format_bytes(limit)})"
        log.info("container %s: %s", container.id, message)
        return Limitation(Reason.CONTAINER_LIMITATION_DISK, message)

    def cleanup(self, container: Container) -> None:
        with self._lock:
            self._watched.pop(container.id, None)

    # ------------------------------------------------------------------ measuring

    def _limit_bytes(self, container: Container) -> int | None:
        if "disk" not in container.resources.names():
            return None
        return container.resources.scalar("disk") * MB // 1000

    def _used(self, container: Container) -> int | None:
        with self._lock:
            watched = self._watched.get(container.id)
            return watched.used_bytes if watched is not None else None

    def _measure_loop(self) -> None:
        """Measure every watched sandbox, then sleep the interval (or until a new
        container arrives, so its first size is known early). Ends when no container
        is left; the next prepare starts another."""
        while True:
            with self._lock:
                pending = list(self._watched.items())
                if not pending:
                    self._thread = None
                    return
            started = time.monotonic()
            for container_id, watched in pending:
                used = disk_usage_bytes(watched.directory)
                with self._lock:
                    if self._watched.get(container_id) is watched:
                        watched.used_bytes = used
            spent_s = time.monotonic() - started
            self._wake.wait(max(self.interval_s - spent_s, 0.01))
            self._wake.clear()
