"""gpu/nvidia: give each container the NVIDIA GPUs its `gpus` resource asks for (Mesos's
NvidiaGpuIsolatorProcess with its NvidiaGpuAllocator).

The agent's devices (`--gpu-devices`, or what `nvidia-smi` lists) form one pool; a
container gets as many whole devices as its `gpus` allocation, lowest minor numbers
first, so placements are deterministic and easy to read. They return to the pool at
cleanup. A container that holds GPUs sees them in its environment:

  NVIDIA_VISIBLE_DEVICES  the host's indices of its devices (what the NVIDIA container
                          tools read)
  CUDA_VISIBLE_DEVICES    the same host indices, with CUDA_DEVICE_ORDER=PCI_BUS_ID so
                          CUDA numbers devices as nvidia-smi does. Our containers share
                          the host's /dev, so CUDA enumerates every host GPU and this
                          variable narrows it to the container's ones (which the process
                          then sees as CUDA devices 0..n-1). Mesos's container-visible
                          ordering (0..n-1) would only be right with a device namespace.

A container without GPUs gets no variables (as in Mesos). Where the cgroup v1 devices
controller is mounted and real /dev/nvidia<N> nodes exist, each container also gets a
devices cgroup that denies the host's NVIDIA devices it was not given, so holding the
variable is not what keeps a process off another container's GPU.

Which devices a container holds is written to <work_dir>/gpus/<container_id> so that an
agent restart can give running containers back the same devices.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Collection, Mapping
from typing import Any

from agora.agent.containerizer.isolator import Isolator
from agora.agent.containerizer.launch_info import LaunchInfo
from agora.agent.containerizer.model import Container, ContainerError
from agora.agent.containerizer.options import ContainerizerOptions
from agora.core.resources import Resources

log = logging.getLogger("agora.agent.containerizer.gpu")

NVIDIA_MAJOR = 195
_DEVICE_NODE = re.compile(r"^nvidia(\d+)$")


def discover_gpus(timeout_s: float = 10.0) -> dict[int, int]:
    """{minor number: nvidia-smi index} of this host's GPUs; empty without nvidia-smi."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return {}
    try:
        out = subprocess.run(
            [binary, "--query-gpu=index,minor_number", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("nvidia-smi failed, no GPUs discovered: %s", error)
        return {}
    return parse_query(out)


def parse_query(text: str) -> dict[int, int]:
    """`index, minor_number` CSV lines -> {minor: index}."""
    found: dict[int, int] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            found[int(parts[1])] = int(parts[0])
    return found


def requested_gpus(resources: Resources) -> int:
    """Whole GPUs in `resources`; a fraction is refused (GPUs cannot be shared)."""
    milli = resources.scalar("gpus")
    if milli % 1000:
        raise ContainerError(f"GPUs must be requested in whole numbers: 'gpus' is {milli / 1000:g}")
    return milli // 1000


def host_device_nodes(dev: str = "/dev") -> dict[int, tuple[int, int]]:
    """Real /dev/nvidia<N> character devices: {minor: (major, minor)}."""
    nodes: dict[int, tuple[int, int]] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir(dev):
            match = _DEVICE_NODE.match(name)
            if match is None:
                continue
            with contextlib.suppress(OSError):
                info = os.stat(os.path.join(dev, name))
                if stat.S_ISCHR(info.st_mode):
                    nodes[int(match.group(1))] = (os.major(info.st_rdev), os.minor(info.st_rdev))
    return nodes


class NvidiaGpuIsolator(Isolator):
    name = "gpu/nvidia"

    def __init__(self, options: ContainerizerOptions, dev: str = "/dev") -> None:
        self.options = options
        self.dev = dev
        discovered = discover_gpus()
        minors = options.gpu_devices or tuple(sorted(discovered))
        # A declared device nvidia-smi does not know keeps its minor as its index.
        self.index: dict[int, int] = {m: discovered.get(m, m) for m in minors}
        self.free: set[int] = set(minors)
        self.held: dict[str, list[int]] = {}
        self.state_dir = os.path.join(options.work_dir, "gpus")
        # The layout of the other cgroup isolators (agora/agent/containerizer/cgroups.py).
        self.devices_root = os.path.join(
            options.cgroups_hierarchy,
            "devices",
            options.cgroups_root.strip("/") or "agora",
            options.agent_key or "default",
        )

    # ------------------------------------------------------------------ allocation

    def allocate(self, container_id: str, count: int) -> list[int]:
        """Grow or shrink the container's devices to `count` (lowest free first; the
        highest held go back first)."""
        held = self.held.setdefault(container_id, [])
        if count > len(held):
            want = count - len(held)
            if want > len(self.free):
                raise ContainerError(
                    f"Requested {count} GPUs but only {len(self.free) + len(held)} "
                    "are available to this container on the agent"
                )
            taken = sorted(self.free)[:want]
            self.free.difference_update(taken)
            held.extend(taken)
        while len(held) > count:
            self.free.add(held.pop())
        held.sort()
        return list(held)

    def release(self, container_id: str) -> None:
        self.free.update(self.held.pop(container_id, []))

    def visible(self, devices: list[int]) -> dict[str, str]:
        if not devices:
            return {}
        ids = ",".join(str(self.index.get(d, d)) for d in devices)
        return {
            "NVIDIA_VISIBLE_DEVICES": ids,
            "CUDA_VISIBLE_DEVICES": ids,
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        }

    # ------------------------------------------------------------------ phases

    def recover(self, known: Collection[str]) -> None:
        with contextlib.suppress(FileNotFoundError):
            for container_id in os.listdir(self.state_dir):
                if container_id in known:
                    self._readopt(container_id)
                else:
                    self._forget(container_id)
        with contextlib.suppress(FileNotFoundError):
            for container_id in os.listdir(self.devices_root):
                if container_id not in known:
                    self._remove_cgroup(container_id)

    def prepare(self, container: Container) -> LaunchInfo | None:
        count = requested_gpus(container.resources)
        if not self.index:
            if count:
                raise ContainerError(f"Requested {count} GPUs but this agent has none")
            return None
        devices = self.allocate(container.id, count)
        try:
            self._save(container.id)
            info = LaunchInfo(env=self.visible(devices))
            cgroup = self._make_cgroup(container.id, devices)
        except OSError as error:
            self.release(container.id)
            raise ContainerError(f"Failed to set up the container's GPUs: {error}") from None
        if cgroup is not None:
            info.cgroups.append(cgroup)
        return info

    def update(self, container: Container, resources: Resources) -> None:
        if not self.index or container.id not in self.held:
            return
        try:
            count = requested_gpus(resources)
        except ContainerError as error:  # the master let a fraction through: keep the floor
            log.warning("container %s: %s", container.id, error)
            count = resources.scalar("gpus") // 1000
        before = set(self.held[container.id])
        devices = self.allocate(container.id, count)
        self._save(container.id)
        self._set_access(container.id, before, set(devices))
        # Later processes of the container (task groups) start with this environment.
        for name in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
            container.launch_info.env.pop(name, None)
        container.launch_info.env.update(self.visible(devices))

    def usage(self, container: Container) -> dict[str, Any]:
        return {}

    def cleanup(self, container: Container) -> None:
        self._forget(container.id)
        self._remove_cgroup(container.id)

    # ------------------------------------------------------------------ state file

    def _save(self, container_id: str) -> None:
        os.makedirs(self.state_dir, exist_ok=True)
        path = os.path.join(self.state_dir, container_id)
        with open(f"{path}.tmp", "w") as out:
            out.write(",".join(str(d) for d in self.held.get(container_id, [])))
        os.replace(f"{path}.tmp", path)

    def _readopt(self, container_id: str) -> None:
        with open(os.path.join(self.state_dir, container_id)) as f:
            text = f.read().strip()
        devices = [int(d) for d in text.split(",") if d.strip().isdigit()]
        mine = [d for d in devices if d in self.free]
        self.free.difference_update(mine)
        self.held[container_id] = sorted(mine)

    def _forget(self, container_id: str) -> None:
        self.release(container_id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.state_dir, container_id))

    # ------------------------------------------------------------------ devices cgroup

    def _nodes(self) -> Mapping[int, tuple[int, int]]:
        if not os.path.isdir(os.path.join(self.options.cgroups_hierarchy, "devices")):
            return {}
        return host_device_nodes(self.dev)

    def _make_cgroup(self, container_id: str, devices: list[int]) -> str | None:
        """A devices cgroup denying the host's NVIDIA devices not given to the container
        (None where there is no devices controller or no real device node)."""
        nodes = self._nodes()
        if not nodes:
            return None
        path = os.path.join(self.devices_root, container_id)
        os.makedirs(path, exist_ok=True)
        for minor, (major, node_minor) in sorted(nodes.items()):
            if minor not in devices:
                self._write(path, "devices.deny", f"c {major}:{node_minor} rwm")
        return path

    def _set_access(self, container_id: str, before: set[int], after: set[int]) -> None:
        path = os.path.join(self.devices_root, container_id)
        if before == after or not os.path.isdir(path):
            return
        nodes = self._nodes()
        for minor in sorted(before ^ after):
            if minor in nodes:
                major, node_minor = nodes[minor]
                name = "devices.allow" if minor in after else "devices.deny"
                self._write(path, name, f"c {major}:{node_minor} rwm")

    @staticmethod
    def _write(path: str, name: str, value: str) -> None:
        with open(os.path.join(path, name), "w") as out:
            out.write(value)

    def _remove_cgroup(self, container_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(os.path.join(self.devices_root, container_id))
