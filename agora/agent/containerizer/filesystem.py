"""filesystem/linux (with volume/host_path and volume/sandbox_path): a container with
an image gets its own mount namespace and root filesystem; volumes are bind mounts.

With an image the launcher, inside the container's new mount namespace: mounts the
overlay at the rootfs, then a tmpfs /dev with the harmless devices bound in (null, zero,
full, random, urandom, tty) and a tmpfs /dev/shm, a read-only sysfs, the host's
/etc/resolv.conf and /etc/hosts read-only, the sandbox at --sandbox_directory
(/mnt/mesos/sandbox), then the volumes; a fresh /proc; pivot_root. The process starts in
the sandbox with MESOS_SANDBOX pointing at it and the image's Env (Mesos's own variables
excepted).

Without an image, volumes still get a private mount namespace (the host's tree, with
the volumes bound over it): absolute container paths must exist on the host, relative
ones are created in the sandbox. Without either, nothing: no namespace, the launch stays
a plain posix_spawn.

Volumes (ContainerInfo.volumes): {container_path, mode RW|RO, host_path} (a relative
host_path is inside the sandbox), or {container_path, mode, source: {type: HOST_PATH,
host_path: {path}}} or {source: {type: SANDBOX_PATH, sandbox_path: {type: SELF|PARENT,
path}}}; SELF is the process's own sandbox, PARENT the executor run's (they differ for
task-group tasks). A relative container_path is relative to the sandbox."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

from agora.agent.containerizer.isolator import Isolator
from agora.agent.containerizer.launch_info import LaunchInfo, Mount
from agora.agent.containerizer.model import Container, ContainerError
from agora.agent.containerizer.options import ContainerizerOptions
from agora.agent.containerizer.provisioner import Provisioner

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts")
RESERVED_ENV_PREFIXES = ("MESOS_", "LIBPROCESS_")


class LinuxFilesystemIsolator(Isolator):
    name = "filesystem/linux"

    def __init__(self, options: ContainerizerOptions) -> None:
        self.options = options
        self.devices = [f"/dev/{d}" for d in DEVICES if os.path.exists(f"/dev/{d}")]
        self.host_files = [f for f in HOST_FILES if os.path.isfile(f)]

    def recover(self, known: Collection[str]) -> None:
        """Remove the provisioned directories of containers that did not survive."""
        provisioner = Provisioner(self.options)
        for container_id in provisioner.leftovers(set(known)):
            provisioner.destroy(container_id)

    def prepare(self, container: Container) -> LaunchInfo | None:
        volumes = parse_volumes(container)
        provisioned = container.provisioned
        if provisioned is None and not volumes:
            return None
        info = LaunchInfo(namespaces=["mount"])
        if provisioned is None:
            info.mounts = [self._host_volume_mount(container, v) for v in volumes]
            return info
        config = container.config
        inside = self._sandbox_inside(container)
        info.rootfs = provisioned.rootfs
        info.overlay = provisioned.overlay
        info.mount_proc = True
        info.mounts = [
            *self._system_mounts(),
            Mount(config.directory, self.options.sandbox_directory),
            *(self._image_volume_mount(container, v) for v in volumes),
        ]
        info.working_directory = inside
        info.env = {
            key: value
            for key, value in provisioned.env.items()
            if not key.startswith(RESERVED_ENV_PREFIXES)
        }
        info.env["MESOS_SANDBOX"] = inside
        return info

    # ------------------------------------------------------------------ mounts

    def _system_mounts(self) -> list[Mount]:
        mounts = [Mount("tmpfs", "/dev", "tmpfs", "mode=755,size=65536k")]
        mounts += [Mount(device, device, recursive=False) for device in self.devices]
        mounts.append(Mount("tmpfs", "/dev/shm", "tmpfs", "mode=1777"))
        mounts.append(Mount("sysfs", "/sys", "sysfs", read_only=True))
        mounts += [Mount(f, f, read_only=True, recursive=False) for f in self.host_files]
        return mounts

    def _sandbox_inside(self, container: Container) -> str:
        """The process's sandbox as the container sees it (a task's tasks/<id> subdir
        in a task group)."""
        config = container.config
        relative = os.path.relpath(config.sandbox, config.directory)
        return os.path.normpath(os.path.join(self.options.sandbox_directory, relative))

    def _image_volume_mount(self, container: Container, volume: Volume) -> Mount:
        source = volume.source_on_host(container)
        target = volume.container_path
        if not os.path.isabs(target):
            target = os.path.join(self._sandbox_inside(container), target)
        return Mount(source, os.path.normpath(target), read_only=volume.read_only)

    def _host_volume_mount(self, container: Container, volume: Volume) -> Mount:
        source = volume.source_on_host(container)
        target = volume.container_path
        if os.path.isabs(target):
            if not os.path.exists(target):
                raise ContainerError(
                    f"Volume container_path '{target}' does not exist on the host (without "
                    "an image the mount point must exist)"
                )
        else:
            target = os.path.join(container.config.sandbox, target)
            if not os.path.exists(target):
                if os.path.isdir(source):
                    os.makedirs(target)
                else:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    open(target, "a").close()
        return Mount(source, os.path.normpath(target), read_only=volume.read_only)


class Volume:
    """One checked ContainerInfo.volumes entry."""

    def __init__(
        self, index: int, container_path: str, read_only: bool, kind: str, path: str, which: str
    ) -> None:
        self.index = index
        self.container_path = container_path
        self.read_only = read_only
        self.kind = kind  # "host" | "sandbox"
        self.path = path
        self.which = which  # sandbox volumes: SELF | PARENT

    def source_on_host(self, container: Container) -> str:
        config = container.config
        if self.kind == "host":
            if not os.path.isabs(self.path):
                return self._in_sandbox(config.sandbox, container)
            if not os.path.exists(self.path):
                raise ContainerError(
                    f"ContainerInfo.volumes[{self.index}]: host path '{self.path}' does not exist"
                )
            return self.path
        base = config.sandbox if self.which == "SELF" else config.directory
        return self._in_sandbox(base, container)

    def _in_sandbox(self, base: str, container: Container) -> str:
        """A directory inside a sandbox, created (for the container's user) if missing."""
        source = os.path.normpath(os.path.join(base, self.path))
        if not os.path.exists(source):
            os.makedirs(source)
            if container.uid is not None:
                os.chown(source, container.uid, container.gid if container.gid is not None else -1)
        return source


def parse_volumes(container: Container) -> list[Volume]:
    info = container.config.container_info
    raw = info.get("volumes") if info is not None else None
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ContainerError("ContainerInfo.volumes is not a list")
    return [_volume(i, v) for i, v in enumerate(raw)]


def _volume(index: int, raw: Any) -> Volume:
    where = f"ContainerInfo.volumes[{index}]"
    if not isinstance(raw, Mapping):
        raise ContainerError(f"{where} is not an object")
    container_path = raw.get("container_path")
    if not isinstance(container_path, str) or not container_path:
        raise ContainerError(f"{where}.container_path is missing")
    if ".." in container_path.split("/"):
        raise ContainerError(f"{where}.container_path '{container_path}' contains '..'")
    mode = raw.get("mode", "RW")
    if mode not in ("RW", "RO"):
        raise ContainerError(f"{where}.mode '{mode}' is not RW or RO")
    if "image" in raw:
        raise ContainerError(f"{where}.image: image volumes are not supported")
    source = raw.get("source")
    if source is None:
        host_path = raw.get("host_path")
        if not isinstance(host_path, str) or not host_path:
            raise ContainerError(f"{where} has neither host_path nor source")
        _no_climb(host_path, f"{where}.host_path", absolute_ok=True)
        return Volume(index, container_path, mode == "RO", "host", host_path, "")
    if not isinstance(source, Mapping):
        raise ContainerError(f"{where}.source is not an object")
    kind = source.get("type")
    if kind == "HOST_PATH":
        path = _nested_path(source, "host_path", f"{where}.source.host_path.path")
        if not os.path.isabs(path):
            raise ContainerError(f"{where}.source.host_path.path '{path}' is not absolute")
        return Volume(index, container_path, mode == "RO", "host", path, "")
    if kind == "SANDBOX_PATH":
        path = _nested_path(source, "sandbox_path", f"{where}.source.sandbox_path.path")
        _no_climb(path, f"{where}.source.sandbox_path.path", absolute_ok=False)
        which = source["sandbox_path"].get("type", "SELF")
        if which not in ("SELF", "PARENT"):
            raise ContainerError(f"{where}.source.sandbox_path.type '{which}' is not SELF/PARENT")
        return Volume(index, container_path, mode == "RO", "sandbox", path, str(which))
    raise ContainerError(f"{where}.source.type {kind} is not supported (HOST_PATH, SANDBOX_PATH)")


def _nested_path(source: Mapping[str, Any], key: str, where: str) -> str:
    nested = source.get(key)
    path = nested.get("path") if isinstance(nested, Mapping) else None
    if not isinstance(path, str) or not path:
        raise ContainerError(f"{where} is missing")
    return path


def _no_climb(path: str, where: str, absolute_ok: bool) -> None:
    if os.path.isabs(path):
        if not absolute_ok:
            raise ContainerError(f"{where} '{path}' must be relative to the sandbox")
        return
    if ".." in path.split("/"):
        raise ContainerError(f"{where} '{path}' climbs out of the sandbox")
