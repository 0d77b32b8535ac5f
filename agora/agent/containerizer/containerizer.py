"""The containerizer: turns the agent core's LaunchProcess into a supervised process
inside a container, and runs the container's life (Mesos's MesosContainerizer).

Launch, for a container's first process: provision its image and fetch its URIs (only
when it has them: the common case stays synchronous), then every isolator's
`prepare`, merged into one LaunchInfo that the supervisor's launcher applies between
fork and exec, then `isolate` once the pid is known. Later processes of the same
container (task groups) join its cgroups and namespaces. A leader's exit asks the
isolators whether a limit ended it (reported before the exit itself); a periodic watch
does the same for running containers. DestroyContainer kills what is left and
releases everything (cgroups, the image's writable layer).

Recovery: a checkpointing framework's container keeps its LaunchInfo in
`<work_dir>/meta/containers/<id>/launch.info`, so that after an agent restart `adopt`
can take the container back as it was (later task-group processes join its cgroups and
namespaces again); `start` then lets every isolator remove the leftovers of containers
that were not adopted (a framework that does not checkpoint, or a run that ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import pwd
import shutil
import signal
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from agora.agent.checkpoint import replace_file
from agora.agent.containerizer.isolator import Isolator
from agora.agent.containerizer.launch_info import LaunchInfo
from agora.agent.containerizer.model import Container, ContainerError
from agora.agent.containerizer.options import ContainerizerOptions
from agora.core.agent import commands as cmd
from agora.core.container.config import ContainerConfig, Limitation
from agora.core.resources import Resources

log = logging.getLogger("agora.agent.containerizer")

Json = Mapping[str, Any]

ISOLATORS: dict[str, str] = {
    "cgroups/cpu": "agora.agent.containerizer.cgroup_isolators:CpuIsolator",
    "cgroups/mem": "agora.agent.containerizer.cgroup_isolators:MemoryIsolator",
    "cgroups/pids": "agora.agent.containerizer.cgroup_isolators:PidsIsolator",
    "posix/cpu": "agora.agent.containerizer.posix:PosixCpuIsolator",
    "posix/mem": "agora.agent.containerizer.posix:PosixMemIsolator",
    "disk/du": "agora.agent.containerizer.disk:DiskIsolator",
    "namespaces/pid": "agora.agent.containerizer.namespaces:PidNamespaceIsolator",
    "filesystem/linux": "agora.agent.containerizer.filesystem:LinuxFilesystemIsolator",
    "gpu/nvidia": "agora.agent.containerizer.gpu:NvidiaGpuIsolator",
}
# Mesos names whose work another isolator here already does (or that need nothing).
ALIASES: dict[str, str | None] = {
    "volume/host_path": "filesystem/linux",
    "volume/sandbox_path": "filesystem/linux",
    "docker/runtime": "filesystem/linux",
    "filesystem/posix": None,
    "cgroups/devices": None,  # gpu/nvidia sets the devices cgroup itself
}


class UnknownIsolatorError(ValueError):
    pass


class Supervisor(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


def isolator_names(isolation: Collection[str]) -> list[str]:
    """--isolation values in order, aliases resolved, duplicates dropped."""
    names: list[str] = []
    for raw in isolation:
        name = raw.strip()
        if not name:
            continue
        if name in ALIASES:
            resolved = ALIASES[name]
            if resolved is None:
                continue
            name = resolved
        if name not in ISOLATORS:
            known = ", ".join(sorted([*ISOLATORS, *ALIASES]))
            raise UnknownIsolatorError(f"unknown isolator '{name}' (known: {known})")
        if name not in names:
            names.append(name)
    return names


def load_isolators(options: ContainerizerOptions) -> list[Isolator]:
    isolators = []
    for name in isolator_names(options.isolation):
        module_name, _, class_name = ISOLATORS[name].partition(":")
        factory = getattr(importlib.import_module(module_name), class_name)
        isolators.append(factory(options))
    return isolators


def image_of(config: ContainerConfig) -> Json | None:
    """The MESOS container's image, or None; a DOCKER container is refused."""
    info = config.container_info
    if info is None:
        return None
    kind = info.get("type", "MESOS")
    if kind != "MESOS":
        raise ContainerError(
            f"ContainerInfo.type {kind} is not supported: this agent runs the Mesos "
            "containerizer only (use type MESOS with an image)"
        )
    mesos = info.get("mesos")
    image = mesos.get("image") if isinstance(mesos, Mapping) else None
    return image if isinstance(image, Mapping) else None


class Containerizer:
    def __init__(
        self,
        options: ContainerizerOptions,
        supervisor: Supervisor,
        on_limited: Callable[[str, Limitation], object],
        on_failed: Callable[[str, str], object],
    ) -> None:
        self.options = options
        self.supervisor = supervisor
        self.on_limited = on_limited
        self.on_failed = on_failed
        self.isolators = load_isolators(options)
        self.names = isolator_names(options.isolation)
        self.containers: dict[str, Container] = {}
        self.proc_container: dict[str, str] = {}
        self._fetcher: Any = None
        self._provisioner: Any = None
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch_task: asyncio.Task[None] | None = None
        self._last_watch: dict[int, float] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self, known: Collection[str] | None = None) -> None:
        """Start watching; isolators remove what is left of containers not in `known`
        (default: the adopted ones)."""
        if known is None:
            known = dict(self.containers)
        with contextlib.suppress(FileNotFoundError):
            for container_id in os.listdir(self.launch_infos_dir):
                if container_id not in known:
                    shutil.rmtree(os.path.join(self.launch_infos_dir, container_id), True)
        for isolator in self.isolators:
            try:
                isolator.recover(known)
            except OSError as error:
                log.warning("%s could not recover: %s", isolator.name, error)
        intervals = [i.watch_interval_s for i in self.isolators if i.watch_interval_s]
        if intervals:
            self._watch_task = asyncio.get_running_loop().create_task(
                self._watch_loop(min(intervals))
            )

    async def stop(self) -> None:
        for task in [*self._tasks, *([self._watch_task] if self._watch_task else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def fetcher(self) -> Any:
        if self._fetcher is None:
            from agora.agent.containerizer.fetcher import Fetcher

            self._fetcher = Fetcher(self.options)
        return self._fetcher

    @property
    def provisioner(self) -> Any:
        if self._provisioner is None:
            from agora.agent.containerizer.provisioner import Provisioner

            self._provisioner = Provisioner(self.options)
        return self._provisioner

    # ------------------------------------------------------------------ recovery

    @property
    def launch_infos_dir(self) -> str:
        return os.path.join(self.options.work_dir, "meta", "containers")

    def launch_info_path(self, container_id: str) -> str:
        return os.path.join(self.launch_infos_dir, container_id, "launch.info")

    def _save_launch_info(self, container: Container) -> None:
        path = self.launch_info_path(container.id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        replace_file(path, json.dumps(container.launch_info.to_json()).encode())

    def _saved_launch_info(self, container_id: str) -> LaunchInfo:
        try:
            with open(self.launch_info_path(container_id), "rb") as f:
                return LaunchInfo.from_json(json.loads(f.read()))
        except FileNotFoundError:
            return LaunchInfo()
        except (OSError, ValueError, TypeError) as error:
            log.warning("the launch info of %s is unreadable: %s", container_id, error)
            return LaunchInfo()

    def adopt(self, config: ContainerConfig, pids: Mapping[str, int]) -> None:
        """Take back a container that outlived the agent, with its running processes."""
        container = Container(config.container_id, config, config.resources, recovered=True)
        container.launch_info = self._saved_launch_info(container.id)
        container.uid, container.gid = container.launch_info.uid, container.launch_info.gid
        container.pids = dict(pids)
        container.leader_pid = next(iter(pids.values()), None)
        container.started_at = time.time()
        self.containers[container.id] = container
        for proc_id in pids:
            self.proc_container[proc_id] = container.id
        for isolator in self.isolators:
            try:
                isolator.adopt(container)
            except OSError as error:
                log.warning("%s could not adopt %s: %s", isolator.name, container.id, error)

    # ------------------------------------------------------------------ launch

    def launch(self, command: cmd.LaunchProcess) -> None:
        config = command.container
        if config is None:
            self._send(command, None)
            return
        container = self.containers.get(config.container_id)
        first = container is None
        if container is None:
            container = Container(config.container_id, config, config.resources)
            container.started_at = time.time()
            self.containers[container.id] = container
        self.proc_container[command.proc_id] = container.id
        try:
            slow = bool(config.uris) or container.id in self._ready
            if first:
                slow = slow or image_of(config) is not None
        except ContainerError as error:
            self._fail(command.proc_id, str(error))
            return
        if not slow:
            self._launch_now(command, container, first)
            return
        if first:
            self._ready[container.id] = asyncio.get_running_loop().create_future()
        task = asyncio.get_running_loop().create_task(self._launch_later(command, container, first))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _launch_later(
        self, command: cmd.LaunchProcess, container: Container, first: bool
    ) -> None:
        config = command.container
        assert config is not None
        ready = self._ready.get(container.id)
        try:
            if first:
                image = image_of(config)
                if image is not None:
                    if "filesystem/linux" not in self.names:
                        raise ContainerError(
                            "Container images need the filesystem/linux isolator "
                            "(agent --isolation)"
                        )
                    container.provisioned = await self.provisioner.provision(container.id, image)
            elif ready is not None:
                await asyncio.shield(ready)
            if config.uris:
                uid, gid = self._user_ids(config.user)
                await self.fetcher.fetch(config.uris, config.sandbox, uid, gid)
            if container.destroyed:
                raise ContainerError("The container was destroyed during its launch")
            self._launch_now(command, container, first)
        except ContainerError as error:
            self._fail(command.proc_id, str(error))
        except Exception as error:  # a bug must fail the task, not lose it
            log.exception("launching %s failed", command.proc_id)
            self._fail(command.proc_id, f"Failed to launch container: {error}")
        finally:
            if first and ready is not None:
                self._ready.pop(container.id, None)
                if not ready.done():
                    ready.set_result(None)

    def _launch_now(self, command: cmd.LaunchProcess, container: Container, first: bool) -> None:
        config = command.container
        assert config is not None
        try:
            if first:
                info = self._prepare(container)
            else:
                self.update(container.id, config.resources)
                info = self._join(container, config)
        except ContainerError as error:
            self._fail(command.proc_id, str(error))
            return
        except OSError as error:
            self._fail(command.proc_id, f"Failed to prepare the container: {error}")
            return
        self._send(command, info)

    def _prepare(self, container: Container) -> LaunchInfo:
        uid, gid = self._user_ids(container.config.user)
        container.uid, container.gid = uid, gid
        if uid is not None:
            os.makedirs(container.config.sandbox, exist_ok=True)
            for directory in {container.config.directory, container.config.sandbox}:
                os.chown(directory, uid, gid if gid is not None else -1)
        info = LaunchInfo(uid=uid, gid=gid, groups=self._groups(container.config.user))
        for isolator in self.isolators:
            info.merge(isolator.prepare(container))
        container.launch_info = info
        if container.config.checkpoint:
            self._save_launch_info(container)
        return info

    def _join(self, container: Container, config: ContainerConfig) -> LaunchInfo:
        """A later process of a running container: same cgroups, same namespaces."""
        base = container.launch_info
        uid, gid = self._user_ids(config.user)
        info = LaunchInfo(
            cgroups=list(base.cgroups),
            env=dict(base.env),
            uid=uid,
            gid=gid,
            groups=self._groups(config.user),
        )
        if base.namespaces and container.leader_pid is not None:
            info.join_namespaces_of = container.leader_pid
            if base.rootfs is not None:
                sandbox = config.sandbox
                relative = os.path.relpath(sandbox, container.config.directory)
                info.working_directory = os.path.normpath(
                    os.path.join(self.options.sandbox_directory, relative)
                )
        return info

    def _user_ids(self, user: str | None) -> tuple[int | None, int | None]:
        if user is None or not self.options.switch_user:
            return None, None
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise ContainerError(
                f"Failed to launch container: the user '{user}' does not exist on this agent"
            ) from None
        if entry.pw_uid == os.geteuid():
            return None, None  # already running as that user
        if os.geteuid() != 0:
            raise ContainerError(
                f"Failed to launch container: cannot switch to user '{user}': "
                "the agent does not run as root"
            )
        return entry.pw_uid, entry.pw_gid

    def _groups(self, user: str | None) -> list[int]:
        if user is None or not self.options.switch_user or os.geteuid() != 0:
            return []
        try:
            entry = pwd.getpwnam(user)
            return os.getgrouplist(user, entry.pw_gid)
        except (KeyError, OSError):
            return []

    def _send(self, command: cmd.LaunchProcess, info: LaunchInfo | None) -> None:
        env = dict(command.env)
        request: dict[str, Any] = {
            "op": "launch",
            "id": command.proc_id,
            "argv": list(command.argv),
            "env": env,
            "cwd": command.sandbox,
        }
        if command.executable is not None:
            request["exe"] = command.executable
        if info is not None:
            env.update(info.env)
            spec = info.to_json()
            spec.pop("env", None)
            if spec:
                request["container"] = spec
        self.supervisor.send(request)

    def _fail(self, proc_id: str, error: str) -> None:
        """Reported on the next loop turn: never inside the core's own dispatch."""
        self.proc_container.pop(proc_id, None)
        asyncio.get_running_loop().call_soon(self.on_failed, proc_id, error)

    # ------------------------------------------------------------------ processes

    def launched(self, proc_id: str, pid: int) -> None:
        container = self.containers.get(self.proc_container.get(proc_id, ""))
        if container is None:
            return
        container.pids[proc_id] = pid
        if container.leader_pid is None:
            container.leader_pid = pid
        for isolator in self.isolators:
            try:
                isolator.isolate(container, pid)
            except OSError as error:
                log.warning("%s could not isolate pid %d: %s", isolator.name, pid, error)

    def launch_failed(self, proc_id: str) -> None:
        self.proc_container.pop(proc_id, None)

    def exited(self, proc_id: str) -> Limitation | None:
        """A process ended. Returns a newly found limitation (report it first)."""
        container = self.containers.get(self.proc_container.pop(proc_id, ""))
        if container is None:
            return None
        pid = container.pids.pop(proc_id, None)
        if container.limitation is not None or (pid != container.leader_pid and container.pids):
            return None
        for isolator in self.isolators:
            try:
                limitation = isolator.limitation_at_exit(container)
            except OSError:
                continue
            if limitation is not None:
                container.limitation = limitation
                return limitation
        return None

    # ------------------------------------------------------------------ container ops

    def update(self, container_id: str, resources: Resources) -> None:
        container = self.containers.get(container_id)
        if container is None or container.resources == resources:
            return
        container.resources = resources
        for isolator in self.isolators:
            try:
                isolator.update(container, resources)
            except OSError as error:
                log.warning("%s could not update %s: %s", isolator.name, container_id, error)

    def processes(self, container: Container) -> set[int]:
        pids = set(container.pids.values())
        for isolator in self.isolators:
            with contextlib.suppress(OSError):
                pids |= isolator.processes(container) or set()
        return pids

    def kill(self, container_id: str) -> None:
        container = self.containers.get(container_id)
        if container is None:
            return
        for proc_id in container.pids:
            self.supervisor.send({"op": "signal", "id": proc_id, "signal": int(signal.SIGKILL)})
        for pid in self.processes(container) - set(container.pids.values()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def destroy(self, container_id: str) -> None:
        container = self.containers.get(container_id)
        if container is None or container.destroyed:
            return
        container.destroyed = True
        if not self.processes(container):
            self._cleanup(container)
            return
        task = asyncio.get_running_loop().create_task(self._destroy_later(container))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _destroy_later(self, container: Container) -> None:
        deadline = time.monotonic() + 10.0
        while self.processes(container) and time.monotonic() < deadline:
            self.kill(container.id)
            await asyncio.sleep(0.01)
        self._cleanup(container)

    def _cleanup(self, container: Container) -> None:
        for isolator in reversed(self.isolators):
            try:
                isolator.cleanup(container)
            except OSError as error:
                log.warning("%s could not clean up %s: %s", isolator.name, container.id, error)
        if container.provisioned is not None or container.recovered:
            try:
                self.provisioner.destroy(container.id)
            except OSError as error:
                log.warning("could not remove the rootfs of %s: %s", container.id, error)
        if container.config.checkpoint:
            shutil.rmtree(os.path.dirname(self.launch_info_path(container.id)), ignore_errors=True)
        self.containers.pop(container.id, None)
        for proc_id in [p for p, c in self.proc_container.items() if c == container.id]:
            del self.proc_container[proc_id]

    # ------------------------------------------------------------------ usage, limits

    def usage(self, container_id: str) -> dict[str, Any]:
        """ResourceStatistics of one container (Mesos /monitor/statistics)."""
        container = self.containers.get(container_id)
        stats: dict[str, Any] = {"timestamp": time.time()}
        if container is None:
            return stats
        for isolator in self.isolators:
            try:
                stats.update(isolator.usage(container))
            except OSError as error:
                log.debug("%s usage of %s: %s", isolator.name, container_id, error)
        return stats

    async def _watch_loop(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            now = time.monotonic()
            due = [
                i
                for i in self.isolators
                if i.watch_interval_s
                and now - self._last_watch.get(id(i), 0.0) >= i.watch_interval_s - 1e-3
            ]
            for isolator in due:
                self._last_watch[id(isolator)] = now
            for container in list(self.containers.values()):
                if container.destroyed or container.limitation is not None or not container.pids:
                    continue
                for isolator in due:
                    try:
                        limitation = isolator.watch(container)
                    except OSError:
                        continue
                    if limitation is not None:
                        container.limitation = limitation
                        self.on_limited(container.id, limitation)
                        break
