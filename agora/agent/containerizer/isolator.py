"""The isolator contract (Mesos's Isolator): every phase is optional; the base class
does nothing, an isolator overrides what it needs. Phases are synchronous and cheap (they
write a few cgroup files or read counters); anything slow belongs in the fetcher or
the provisioner, which the containerizer awaits before preparing.

    adopt(container)    after an agent restart, for each container that outlived the
                        agent (before `recover`): track it again as `prepare` would have
    recover(known)      after an agent restart: keep `known` container ids, remove
                        leftovers of this agent that are not in it
    prepare(container)  before the first process: create what the container needs and
                        return what the launcher must do in the child (LaunchInfo)
    isolate(container, pid)  after a process started (for what cannot be done before)
    update(container, resources)  the allocation changed
    usage(container)    ResourceStatistics keys (Mesos /monitor/statistics)
    watch(container)    polled every `watch_interval_s`: a Limitation stops the container
    limitation_at_exit(container)  the leader exited: was it a limit (e.g. the OOM killer)?
    processes(container)  the pids it knows to be in the container (None: it cannot tell),
                        so a destroy can kill what escaped the process group
    cleanup(container)  every process is gone: release everything
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

from agora.agent.containerizer.launch_info import LaunchInfo
from agora.agent.containerizer.model import Container
from agora.core.container.config import Limitation
from agora.core.resources import Resources


class Isolator:
    name: ClassVar[str] = ""
    watch_interval_s: ClassVar[float | None] = None

    def adopt(self, container: Container) -> None:
        return None

    def recover(self, known: Collection[str]) -> None:
        return None

    def prepare(self, container: Container) -> LaunchInfo | None:
        return None

    def isolate(self, container: Container, pid: int) -> None:
        return None

    def update(self, container: Container, resources: Resources) -> None:
        return None

    def usage(self, container: Container) -> dict[str, Any]:
        return {}

    def watch(self, container: Container) -> Limitation | None:
        return None

    def limitation_at_exit(self, container: Container) -> Limitation | None:
        return None

    def processes(self, container: Container) -> set[int] | None:
        return None

    def cleanup(self, container: Container) -> None:
        return None
