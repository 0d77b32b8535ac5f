"""cgroups/cpu, cgroups/mem and cgroups/pids (Mesos's cgroups isolators).

cgroups/cpu   shares = 1024 * cpus (min 2): v1 cpu.shares, v2 cpu.weight; with
              --cgroups-enable-cfs a hard cap of cpus * 100 ms per 100 ms period
              (min 1 ms): v1 cpu.cfs_quota_us, v2 cpu.max. v1 accounts in cpuacct.
cgroups/mem   hard limit max(mem, 32 MB) (v1 memory.limit_in_bytes, v2 memory.max)
              and a soft limit of the same size (v1 memory.soft_limit_in_bytes,
              v2 memory.low); with --cgroups-limit-swap no swap beyond it (v1
              memory.memsw.limit_in_bytes, v2 memory.swap.max 0). An OOM kill in the
              container is REASON_CONTAINER_LIMITATION_MEMORY.
cgroups/pids  pids.max: the container's `pids` scalar resource where it has one,
              else DEFAULT_MAX_PIDS, so a fork bomb stays inside its container
              (Mesos's pids isolator only counts; a cap is what stops a fork bomb).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from typing import Any, ClassVar

from agora.agent.containerizer.cgroups import Cgroups, open_cgroups, parse_keyed
from agora.agent.containerizer.disk import format_bytes
from agora.agent.containerizer.isolator import Isolator
from agora.agent.containerizer.launch_info import LaunchInfo
from agora.agent.containerizer.model import Container
from agora.agent.containerizer.options import ContainerizerOptions
from agora.agent.containerizer.posix import MIN_CPUS, MIN_MEMORY_BYTES
from agora.core.container.config import Limitation
from agora.core.resources import Resources
from agora.core.task_states import Reason

log = logging.getLogger("agora.agent.containerizer.cgroups")

MB = 1024 * 1024
CPU_SHARES_PER_CPU = 1024
MIN_CPU_SHARES = 2
CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000
DEFAULT_MAX_PIDS = 4096  # per container without a `pids` resource: far above real jobs
STATS_MESSAGE_CHARS = 2000  # memory statistics appended to an OOM message, at most


class _CgroupIsolator(Isolator):
    """One container cgroup per controller this isolator owns."""

    controllers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: ContainerizerOptions) -> None:
        self.options = options
        self.cgroups: Cgroups = open_cgroups(options)
        self.used = self._controllers()

    def _controllers(self) -> tuple[str, ...]:
        """The controllers to use here: all of them must exist (a ContainerError names
        the missing one); on v1 a controller co-mounted with another is used once."""
        seen: dict[str, str] = {}
        for controller in self.wanted():
            mount = os.path.realpath(self.cgroups.mount(controller))
            if self.cgroups.version == 1:
                seen.setdefault(mount, controller)
            else:
                seen[controller] = controller
        return tuple(seen.values())

    def wanted(self) -> tuple[str, ...]:
        return self.controllers

    @property
    def main(self) -> str:
        return self.used[0]

    def recover(self, known: Collection[str]) -> None:
        removed = self.cgroups.recover(self.used, known)
        if removed:
            log.info("%s removed leftover cgroups of %s", self.name, ", ".join(removed))

    def prepare(self, container: Container) -> LaunchInfo | None:
        dirs = [self.cgroups.create(c, container.id) for c in self.used]
        self.update(container, container.resources)
        return LaunchInfo(cgroups=dirs)

    def processes(self, container: Container) -> set[int] | None:
        return self.cgroups.procs(self.main, container.id)

    def cleanup(self, container: Container) -> None:
        for controller in self.used:
            self.cgroups.remove(controller, container.id)

    def _read(self, container: Container, name: str, controller: str | None = None) -> str | None:
        return self.cgroups.read(controller or self.main, container.id, name)

    def _int(self, container: Container, name: str, controller: str | None = None) -> int | None:
        text = self._read(container, name, controller)
        if text is None:
            return None
        word = text.split()[0] if text.split() else ""
        return int(word) if word.isdigit() else None

    def _write(self, container: Container, name: str, value: object) -> None:
        self.cgroups.write(self.main, container.id, name, value)


# ---------------------------------------------------------------------- cpu


def cpu_shares(cpus: float) -> int:
    return max(int(CPU_SHARES_PER_CPU * cpus), MIN_CPU_SHARES)


def cpu_weight(shares: int) -> int:
    """The usual cgroup v1 shares -> v2 weight conversion ([2, 262144] -> [1, 10000])."""
    return 1 + ((shares - 2) * 9999) // 262142


def cfs_quota_us(cpus: float) -> int:
    return max(int(CFS_PERIOD_US * cpus), MIN_CFS_QUOTA_US)


class CpuIsolator(_CgroupIsolator):
    name = "cgroups/cpu"

    def wanted(self) -> tuple[str, ...]:
        """v1 accounts CPU time in cpuacct (often its own mount); v2 in cpu itself."""
        return ("cpu", "cpuacct") if self.cgroups.version == 1 else ("cpu",)

    def update(self, container: Container, resources: Resources) -> None:
        cpus = max(resources.scalar("cpus") / 1000.0, MIN_CPUS)
        shares = cpu_shares(cpus)
        v1 = self.cgroups.version == 1
        if v1:
            self._write(container, "cpu.shares", shares)
        else:
            self._write(container, "cpu.weight", cpu_weight(shares))
        if not self.options.cgroups_enable_cfs:
            return
        if v1:
            self._write(container, "cpu.cfs_period_us", CFS_PERIOD_US)
            self._write(container, "cpu.cfs_quota_us", cfs_quota_us(cpus))
        else:
            self._write(container, "cpu.max", f"{cfs_quota_us(cpus)} {CFS_PERIOD_US}")

    def usage(self, container: Container) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "cpus_limit": max(container.resources.scalar("cpus") / 1000.0, MIN_CPUS)
        }
        cpu_stat = parse_keyed(self._read(container, "cpu.stat"))
        if self.cgroups.version == 1:
            ticks = os.sysconf("SC_CLK_TCK")
            acct = parse_keyed(self._read(container, "cpuacct.stat", self.used[-1]))
            if acct:
                stats["cpus_user_time_secs"] = acct.get("user", 0) / ticks
                stats["cpus_system_time_secs"] = acct.get("system", 0) / ticks
            throttled_s = cpu_stat.get("throttled_time", 0) / 1e9
        else:
            if cpu_stat:
                stats["cpus_user_time_secs"] = cpu_stat.get("user_usec", 0) / 1e6
                stats["cpus_system_time_secs"] = cpu_stat.get("system_usec", 0) / 1e6
            throttled_s = cpu_stat.get("throttled_usec", 0) / 1e6
        if "nr_periods" in cpu_stat:
            stats["cpus_nr_periods"] = cpu_stat["nr_periods"]
            stats["cpus_nr_throttled"] = cpu_stat.get("nr_throttled", 0)
            stats["cpus_throttled_time_secs"] = throttled_s
        stats["processes"] = len(self.cgroups.procs(self.main, container.id))
        stats["threads"] = self.cgroups.threads(self.main, container.id)
        return stats


# ---------------------------------------------------------------------- memory


def mem_limit(resources: Resources) -> int:
    return max(resources.scalar("mem") * MB // 1000, MIN_MEMORY_BYTES)


class MemoryIsolator(_CgroupIsolator):
    name = "cgroups/mem"
    controllers = ("memory",)
    watch_interval_s = 0.5

    def update(self, container: Container, resources: Resources) -> None:
        limit = mem_limit(resources)
        if self.cgroups.version == 1:
            self._update_v1(container, limit)
        else:
            self._write(container, "memory.low", limit)
            self._write(container, "memory.max", limit)
            if self.options.cgroups_limit_swap and self._exists(container, "memory.swap.max"):
                self._write(container, "memory.swap.max", 0)

    def _exists(self, container: Container, name: str) -> bool:
        return self.cgroups.exists(self.main, container.id, name)

    def _update_v1(self, container: Container, limit: int) -> None:
        """Mesos: the soft limit always follows; the hard limit only grows (lowering it
        under the current usage would fail or force reclaim), except the first time."""
        self._write(container, "memory.soft_limit_in_bytes", limit)
        current = self._int(container, "memory.limit_in_bytes")
        first = not container.pids and container.leader_pid is None
        if current is not None and limit < current and not first:
            return
        swap = self.options.cgroups_limit_swap and self._exists(
            container, "memory.memsw.limit_in_bytes"
        )
        if not swap:
            self._write(container, "memory.limit_in_bytes", limit)
            return
        # memsw must stay >= the memory limit: raise it first, lower it last.
        memsw = self._int(container, "memory.memsw.limit_in_bytes")
        if memsw is not None and limit > memsw:
            self._write(container, "memory.memsw.limit_in_bytes", limit)
            self._write(container, "memory.limit_in_bytes", limit)
        else:
            self._write(container, "memory.limit_in_bytes", limit)
            self._write(container, "memory.memsw.limit_in_bytes", limit)

    # --- out of memory

    def oom_kills(self, container: Container) -> int | None:
        """OOM kills in the container (None: this kernel does not count them)."""
        if self.cgroups.version == 1:
            control = parse_keyed(self._read(container, "memory.oom_control"))
            return control.get("oom_kill")
        events = parse_keyed(self._read(container, "memory.events"))
        return events.get("oom_kill")

    def watch(self, container: Container) -> Limitation | None:
        """One small file read per container and interval."""
        if self.oom_kills(container):
            return self._limitation(container)
        return None

    def limitation_at_exit(self, container: Container) -> Limitation | None:
        kills = self.oom_kills(container)
        if kills:
            return self._limitation(container)
        if kills is None and self.cgroups.version == 1 and self._hit_limit_v1(container):
            return self._limitation(container)
        return None

    def _hit_limit_v1(self, container: Container) -> bool:
        """Old v1 kernels without an oom_kill count: the leader died after the cgroup
        failed to charge memory while it was at its limit (failcnt also counts reclaim,
        so this is used at exit only, never while the container runs)."""
        failcnt = self._int(container, "memory.failcnt") or 0
        peak = self._int(container, "memory.max_usage_in_bytes") or 0
        limit = self._int(container, "memory.limit_in_bytes") or 0
        return failcnt > 0 and limit > 0 and peak >= limit - 4 * 4096

    def _limitation(self, container: Container) -> Limitation:
        limit = mem_limit(container.resources)
        v1 = self.cgroups.version == 1
        peak = self._int(container, "memory.max_usage_in_bytes" if v1 else "memory.peak")
        if peak is None:
            peak = self._int(container, "memory.usage_in_bytes" if v1 else "memory.current")
        message = f"Memory limit exceeded: Requested: {format_bytes(limit)}"
        if peak is not None:
            message += f" Maximum Used: {format_bytes(peak)}"
        stat = (self._read(container, "memory.stat") or "").strip()
        if stat:
            message += "\n\nMEMORY STATISTICS: \n" + stat[:STATS_MESSAGE_CHARS]
        log.info("container %s: %s", container.id, message.splitlines()[0])
        return Limitation(Reason.CONTAINER_LIMITATION_MEMORY, message)

    # --- usage

    def usage(self, container: Container) -> dict[str, Any]:
        stat = parse_keyed(self._read(container, "memory.stat"))
        if self.cgroups.version == 1:
            stats = self._usage_v1(container, stat)
        else:
            stats = self._usage_v2(container, stat)
        return {k: v for k, v in stats.items() if v is not None}

    def _usage_v1(self, container: Container, stat: dict[str, int]) -> dict[str, Any]:
        def total(*names: str) -> int | None:
            found = [stat[f"total_{n}"] for n in names if f"total_{n}" in stat]
            return sum(found) if found else None

        return {
            "mem_total_bytes": self._int(container, "memory.usage_in_bytes"),
            "mem_limit_bytes": self._int(container, "memory.limit_in_bytes"),
            "mem_soft_limit_bytes": self._int(container, "memory.soft_limit_in_bytes"),
            "mem_total_memsw_bytes": (
                self._int(container, "memory.memsw.usage_in_bytes")
                if self.options.cgroups_limit_swap
                else None
            ),
            "mem_rss_bytes": total("rss"),
            "mem_cache_bytes": total("cache"),
            "mem_anon_bytes": total("active_anon", "inactive_anon"),
            "mem_file_bytes": total("active_file", "inactive_file"),
            "mem_mapped_file_bytes": total("mapped_file"),
            "mem_swap_bytes": total("swap"),
            "mem_unevictable_bytes": total("unevictable"),
        }

    def _usage_v2(self, container: Container, stat: dict[str, int]) -> dict[str, Any]:
        return {
            "mem_total_bytes": self._int(container, "memory.current"),
            "mem_limit_bytes": self._int(container, "memory.max"),
            "mem_soft_limit_bytes": self._int(container, "memory.low"),
            "mem_rss_bytes": stat.get("anon"),
            "mem_cache_bytes": stat.get("file"),
            "mem_anon_bytes": stat.get("anon"),
            "mem_file_bytes": stat.get("file"),
            "mem_mapped_file_bytes": stat.get("file_mapped"),
            "mem_swap_bytes": self._int(container, "memory.swap.current"),
            "mem_unevictable_bytes": stat.get("unevictable"),
        }


# ---------------------------------------------------------------------- pids


def max_pids(resources: Resources) -> int:
    """The container's `pids` resource where it has one, else the default cap."""
    if "pids" in resources.names():
        return max(resources.scalar("pids") // 1000, 1)
    return DEFAULT_MAX_PIDS


class PidsIsolator(_CgroupIsolator):
    name = "cgroups/pids"
    controllers = ("pids",)

    def update(self, container: Container, resources: Resources) -> None:
        self._write(container, "pids.max", max_pids(resources))

    def usage(self, container: Container) -> dict[str, Any]:
        stats: dict[str, Any] = {"processes": len(self.processes(container) or ())}
        current = self._int(container, "pids.current")
        if current is not None:
            stats["threads"] = current  # pids.current counts tasks: threads included
        return stats
