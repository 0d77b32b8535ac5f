"""Container cgroups, one interface over both cgroup versions.

    v1: one mount per controller under the hierarchy (<hierarchy>/cpu, .../memory, ...);
        a container has one directory per controller:
        <hierarchy>/<controller>/<cgroups_root>/<agent_key>/<container_id>
    v2: the hierarchy itself is the unified mount (it holds cgroup.controllers); a
        container has one directory, <hierarchy>/<cgroups_root>/<agent_key>/<container_id>,
        and the controllers it needs are enabled in its ancestors' cgroup.subtree_control.

Everything hangs off `options.cgroups_hierarchy`, so tests can point it at a fake tree
of plain files. `agent_key` keeps agents sharing a host apart: recovery removes only
this agent's leftovers. The directories returned by `create` are what LaunchInfo.cgroups
carries: the launcher writes the child's pid to <dir>/cgroup.procs before exec."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import time
from collections.abc import Collection, Iterable

from agora.agent.containerizer.model import ContainerError
from agora.agent.containerizer.options import ContainerizerOptions

REMOVE_RETRY_S = 0.5  # rmdir waits this long for killed processes to leave


def read_text(path: str) -> str | None:
    """A control file's content, or None where the kernel (or fake tree) lacks it."""
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def parse_keyed(text: str | None) -> dict[str, int]:
    """Flat keyed files ("key value" lines: memory.stat, cpu.stat, memory.events)."""
    values: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                values[parts[0]] = int(parts[1])
    return values


def parse_pids(text: str | None) -> set[int]:
    return {int(word) for word in (text or "").split() if word.isdigit()}


class Cgroups:
    """The cgroups of this agent's containers for one cgroup version."""

    version = 0

    def __init__(self, options: ContainerizerOptions) -> None:
        self.hierarchy = options.cgroups_hierarchy
        self.root = options.cgroups_root.strip("/") or "agora"
        self.agent_key = options.agent_key or "default"

    # --- per version
    def mount(self, controller: str) -> str:
        """Where `controller` lives (raises ContainerError naming it when absent)."""
        raise NotImplementedError

    def has(self, controller: str) -> bool:
        try:
            self.mount(controller)
        except ContainerError:
            return False
        return True

    def _prepare_parents(self, controller: str, directory: str) -> None:
        return None

    def kill_file(self, directory: str) -> bool:
        return False

    def threads_file(self) -> str:
        raise NotImplementedError

    # --- shared
    def agent_dir(self, controller: str) -> str:
        return os.path.join(self.mount(controller), self.root, self.agent_key)

    def path(self, controller: str, container_id: str) -> str:
        return os.path.join(self.agent_dir(controller), container_id)

    def create(self, controller: str, container_id: str) -> str:
        """The container's cgroup for `controller`, created if missing."""
        directory = self.path(controller, container_id)
        self._prepare_parents(controller, directory)
        os.makedirs(directory, exist_ok=True)
        return directory

    def write(self, controller: str, container_id: str, name: str, value: object) -> None:
        with open(os.path.join(self.path(controller, container_id), name), "w") as f:
            f.write(str(value))

    def read(self, controller: str, container_id: str, name: str) -> str | None:
        return read_text(os.path.join(self.path(controller, container_id), name))

    def exists(self, controller: str, container_id: str, name: str) -> bool:
        return os.path.exists(os.path.join(self.path(controller, container_id), name))

    def procs(self, controller: str, container_id: str) -> set[int]:
        return parse_pids(self.read(controller, container_id, "cgroup.procs"))

    def threads(self, controller: str, container_id: str) -> int:
        return len(parse_pids(self.read(controller, container_id, self.threads_file())))

    def kill(self, controller: str, container_id: str) -> None:
        """SIGKILL everything in the cgroup (cgroup.kill where the kernel has it)."""
        directory = self.path(controller, container_id)
        if not os.path.isdir(directory):
            return
        if self.kill_file(directory):
            return
        for _ in range(10):
            pids = parse_pids(read_text(os.path.join(directory, "cgroup.procs")))
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self, controller: str, container_id: str) -> None:
        """Kill what is left and remove the cgroup, retrying while processes drain."""
        directory = self.path(controller, container_id)
        deadline = time.monotonic() + REMOVE_RETRY_S
        while os.path.isdir(directory):
            self.kill(controller, container_id)
            try:
                remove_dir(directory)
                return
            except OSError as error:
                if error.errno != errno.EBUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(0.01)

    def leftovers(self, controller: str, known: Collection[str]) -> list[str]:
        """This agent's container cgroups for `controller` that are not in `known`."""
        try:
            names = os.listdir(self.agent_dir(controller))
        except (FileNotFoundError, NotADirectoryError):
            return []
        base = self.agent_dir(controller)
        return sorted(n for n in names if n not in known and os.path.isdir(os.path.join(base, n)))

    def recover(self, controllers: Iterable[str], known: Collection[str]) -> list[str]:
        """Remove this agent's leftover container cgroups; returns the ids removed."""
        removed: list[str] = []
        for controller in controllers:
            if not self.has(controller):
                continue
            for container_id in self.leftovers(controller, known):
                self.remove(controller, container_id)
                if container_id not in removed:
                    removed.append(container_id)
        return removed


def remove_dir(directory: str) -> None:
    """rmdir a cgroup. A real cgroupfs refuses with EBUSY while it is in use; a fake
    tree of plain files (tests) says ENOTEMPTY and is removed as a tree."""
    try:
        os.rmdir(directory)
    except OSError as error:
        if error.errno != errno.ENOTEMPTY:
            raise
        if any(entry.is_dir() for entry in os.scandir(directory)):
            raise
        shutil.rmtree(directory)


class CgroupsV1(Cgroups):
    version = 1

    def mount(self, controller: str) -> str:
        mount = os.path.join(self.hierarchy, controller)
        if not os.path.isdir(mount):
            raise ContainerError(
                f"The cgroup controller '{controller}' is not mounted at {mount} "
                "(cgroup v1 hierarchy)"
            )
        return mount

    def threads_file(self) -> str:
        return "tasks"


class CgroupsV2(Cgroups):
    version = 2

    def controllers(self) -> set[str]:
        text = read_text(os.path.join(self.hierarchy, "cgroup.controllers"))
        return set((text or "").split())

    def mount(self, controller: str) -> str:
        if controller not in self.controllers() and controller != "unified":
            raise ContainerError(
                f"The cgroup controller '{controller}' is not available in the cgroup v2 "
                f"hierarchy {self.hierarchy} (cgroup.controllers lacks it)"
            )
        return self.hierarchy

    def _prepare_parents(self, controller: str, directory: str) -> None:
        """Enable the controller from the hierarchy root down to the container's parent
        (cgroup v2 hands a controller to children through cgroup.subtree_control)."""
        if controller == "unified":
            return
        relative = os.path.relpath(os.path.dirname(directory), self.hierarchy)
        current = self.hierarchy
        for part in ["", *relative.split(os.sep)]:
            current = os.path.join(current, part) if part else current
            os.makedirs(current, exist_ok=True)
            subtree = os.path.join(current, "cgroup.subtree_control")
            if controller in (read_text(subtree) or "").split():
                continue
            try:
                with open(subtree, "w") as f:
                    f.write(f"+{controller}")
            except OSError as error:
                raise ContainerError(
                    f"Could not enable the cgroup controller '{controller}' in {current}: "
                    f"{error.strerror}"
                ) from None

    def kill_file(self, directory: str) -> bool:
        path = os.path.join(directory, "cgroup.kill")
        if not os.path.exists(path):
            return False
        try:
            with open(path, "w") as f:
                f.write("1")
        except OSError:
            return False
        return True

    def threads_file(self) -> str:
        return "cgroup.threads"


def open_cgroups(options: ContainerizerOptions) -> Cgroups:
    """v2 when the hierarchy is itself a unified mount (it holds cgroup.controllers)."""
    if os.path.exists(os.path.join(options.cgroups_hierarchy, "cgroup.controllers")):
        return CgroupsV2(options)
    return CgroupsV1(options)
