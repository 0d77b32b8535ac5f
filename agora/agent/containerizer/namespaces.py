"""namespaces/pid (Mesos's isolator of the same name): every container gets its own pid
namespace, with a fresh /proc in its own mount namespace, so it cannot see (or signal)
the host's processes, and its first process is pid 1: when it exits, the kernel kills
everything left in the container."""

from __future__ import annotations

from agora.agent.containerizer.isolator import Isolator
from agora.agent.containerizer.launch_info import LaunchInfo
from agora.agent.containerizer.model import Container
from agora.agent.containerizer.options import ContainerizerOptions


class PidNamespaceIsolator(Isolator):
    name = "namespaces/pid"

    def __init__(self, options: ContainerizerOptions) -> None:
        self.options = options

    def prepare(self, container: Container) -> LaunchInfo | None:
        """The launcher unshares both namespaces and mounts /proc before the exec."""
        return LaunchInfo(namespaces=["pid", "mount"], mount_proc=True)
