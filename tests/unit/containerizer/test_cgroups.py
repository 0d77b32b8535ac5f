"""The cgroups isolators against fake v1 and v2 trees (plain files in a tmp dir): what
they write, what they parse, OOM detection, recovery and cleanup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agora.agent.containerizer.cgroup_isolators import (
    DEFAULT_MAX_PIDS,
    CpuIsolator,
    MemoryIsolator,
    PidsIsolator,
    cpu_weight,
)
from agora.agent.containerizer.model import Container, ContainerError
from agora.agent.containerizer.options import ContainerizerOptions
from agora.core.container.config import ContainerConfig
from agora.core.resource_text import parse_resources
from agora.core.task_states import Reason

MB = 1024 * 1024
KEY = "agentA"


def make_container(resources: str, container_id: str = "c1") -> Container:
    res = parse_resources(resources)
    config = ContainerConfig(container_id, "f1", "e1", "t1", "/tmp", "/tmp", res)
    return Container(container_id, config, res)


def v1_tree(tmp_path: Path) -> Path:
    for controller in ("cpu", "cpuacct", "memory", "pids"):
        (tmp_path / controller).mkdir(parents=True)
    return tmp_path


def v2_tree(tmp_path: Path, controllers: str = "cpu memory pids") -> Path:
    (tmp_path / "cgroup.controllers").write_text(controllers + "\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    return tmp_path


def options(root: Path, **kw: object) -> ContainerizerOptions:
    return ContainerizerOptions(
        work_dir="/tmp",
        cgroups_hierarchy=str(root),
        agent_key=KEY,
        **kw,  # type: ignore[arg-type]
    )


def v1_dir(root: Path, controller: str, cid: str = "c1", key: str = KEY) -> Path:
    return root / controller / "agora" / key / cid


def v2_dir(root: Path, cid: str = "c1", key: str = KEY) -> Path:
    return root / "agora" / key / cid


# ---------------------------------------------------------------------- cpu


def test_v1_cpu_shares_and_cfs(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    isolator = CpuIsolator(options(root, cgroups_enable_cfs=True))
    container = make_container("cpus:0.5;mem:64")
    info = isolator.prepare(container)
    assert info is not None
    assert info.cgroups == [str(v1_dir(root, "cpu")), str(v1_dir(root, "cpuacct"))]
    cpu = v1_dir(root, "cpu")
    assert (cpu / "cpu.shares").read_text() == "512"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    isolator.update(container, parse_resources("cpus:2.5"))
    assert (cpu / "cpu.shares").read_text() == "2560"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "250000"
    isolator.update(container, parse_resources("cpus:0.001"))
    assert (cpu / "cpu.shares").read_text() == "10"  # Mesos's MIN_CPUS 0.01
    assert (cpu / "cpu.cfs_quota_us").read_text() == "1000"  # min 1 ms


def test_v1_cpu_without_cfs_sets_only_shares(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    CpuIsolator(options(root)).prepare(make_container("cpus:1"))
    assert sorted(os.listdir(v1_dir(root, "cpu"))) == ["cpu.shares"]


def test_v1_cpu_usage(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    isolator = CpuIsolator(options(root))
    container = make_container("cpus:1.5")
    isolator.prepare(container)
    ticks = os.sysconf("SC_CLK_TCK")
    (v1_dir(root, "cpuacct") / "cpuacct.stat").write_text(f"user {3 * ticks}\nsystem {ticks}\n")
    (v1_dir(root, "cpu") / "cpu.stat").write_text(
        "nr_periods 40\nnr_throttled 7\nthrottled_time 2500000000\n"
    )
    (v1_dir(root, "cpu") / "cgroup.procs").write_text("11\n12\n")
    (v1_dir(root, "cpu") / "tasks").write_text("11\n12\n13\n")
    stats = isolator.usage(container)
    assert stats == {
        "cpus_limit": 1.5,
        "cpus_user_time_secs": 3.0,
        "cpus_system_time_secs": 1.0,
        "cpus_nr_periods": 40,
        "cpus_nr_throttled": 7,
        "cpus_throttled_time_secs": 2.5,
        "processes": 2,
        "threads": 3,
    }
    assert isolator.processes(container) == {11, 12}


def test_v2_cpu_weight_max_and_subtree_control(tmp_path: Path) -> None:
    root = v2_tree(tmp_path)
    isolator = CpuIsolator(options(root, cgroups_enable_cfs=True))
    container = make_container("cpus:0.5")
    info = isolator.prepare(container)
    assert info is not None and info.cgroups == [str(v2_dir(root))]
    assert (v2_dir(root) / "cpu.weight").read_text() == str(cpu_weight(512)) == "20"
    assert (v2_dir(root) / "cpu.max").read_text() == "50000 100000"
    for parent in (root, root / "agora", root / "agora" / KEY):
        assert "+cpu" in (parent / "cgroup.subtree_control").read_text()
    (v2_dir(root) / "cpu.stat").write_text(
        "usage_usec 4000000\nuser_usec 3000000\nsystem_usec 1000000\n"
        "nr_periods 10\nnr_throttled 2\nthrottled_usec 500000\n"
    )
    stats = isolator.usage(container)
    assert stats["cpus_user_time_secs"] == 3.0
    assert stats["cpus_system_time_secs"] == 1.0
    assert stats["cpus_throttled_time_secs"] == 0.5
    assert stats["cpus_nr_throttled"] == 2


def test_weight_conversion_bounds() -> None:
    assert cpu_weight(2) == 1
    assert cpu_weight(262144) == 10000
    assert cpu_weight(1024) == 39


# ---------------------------------------------------------------------- memory


def test_v1_memory_limits(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    isolator = MemoryIsolator(options(root))
    container = make_container("cpus:1;mem:64")
    isolator.prepare(container)
    mem = v1_dir(root, "memory")
    assert (mem / "memory.limit_in_bytes").read_text() == str(64 * MB)
    assert (mem / "memory.soft_limit_in_bytes").read_text() == str(64 * MB)
    container.leader_pid = 42
    isolator.update(container, parse_resources("mem:48"))  # the hard limit never shrinks
    assert (mem / "memory.limit_in_bytes").read_text() == str(64 * MB)
    assert (mem / "memory.soft_limit_in_bytes").read_text() == str(48 * MB)
    isolator.update(container, parse_resources("mem:128"))
    assert (mem / "memory.limit_in_bytes").read_text() == str(128 * MB)


def test_v1_memory_minimum_and_swap(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    isolator = MemoryIsolator(options(root, cgroups_limit_swap=True))
    container = make_container("mem:8")
    mem = v1_dir(root, "memory")
    mem.mkdir(parents=True)
    (mem / "memory.memsw.limit_in_bytes").write_text("9223372036854771712\n")
    isolator.prepare(container)
    assert (mem / "memory.limit_in_bytes").read_text() == str(32 * MB)
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == str(32 * MB)


def test_v2_memory_limits(tmp_path: Path) -> None:
    root = v2_tree(tmp_path)
    directory = v2_dir(root)
    directory.mkdir(parents=True)
    (directory / "memory.swap.max").write_text("max\n")
    MemoryIsolator(options(root, cgroups_limit_swap=True)).prepare(make_container("mem:64"))
    assert (directory / "memory.max").read_text() == str(64 * MB)
    assert (directory / "memory.low").read_text() == str(64 * MB)
    assert (directory / "memory.swap.max").read_text() == "0"


def test_v1_oom_kill_is_a_memory_limitation(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    isolator = MemoryIsolator(options(root))
    container = make_container("mem:64")
    isolator.prepare(container)
    mem = v1_dir(root, "memory")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert isolator.watch(container) is None
    assert isolator.limitation_at_exit(container) is None
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (mem / "memory.max_usage_in_bytes").write_text(f"{64 * MB}\n")
    (mem / "memory.stat").write_text("cache 0\nrss 67108864\n")
    limitation = isolator.watch(container)
    assert limitation is not None
    assert limitation.reason == Reason.CONTAINER_LIMITATION_MEMORY
    assert limitation.message.startswith(
        "Memory limit exceeded: Requested: 64MB Maximum Used: 64MB\n\nMEMORY STATISTICS: \n"
    )
    assert "rss 67108864" in limitation.message
    assert isolator.limitation_at_exit(container) == limitation


def test_v1_without_oom_count_uses_failcnt_at_exit_only(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    isolator = MemoryIsolator(options(root))
    container = make_container("mem:64")
    isolator.prepare(container)
    mem = v1_dir(root, "memory")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")
    (mem / "memory.failcnt").write_text("3\n")
    (mem / "memory.max_usage_in_bytes").write_text(f"{32 * MB}\n")
    assert isolator.limitation_at_exit(container) is None  # never reached the limit
    (mem / "memory.max_usage_in_bytes").write_text(f"{64 * MB}\n")
    assert isolator.watch(container) is None
    limitation = isolator.limitation_at_exit(container)
    assert limitation is not None and limitation.reason == Reason.CONTAINER_LIMITATION_MEMORY


def test_v2_oom_kill_is_a_memory_limitation(tmp_path: Path) -> None:
    root = v2_tree(tmp_path)
    isolator = MemoryIsolator(options(root))
    container = make_container("mem:100")
    isolator.prepare(container)
    events = v2_dir(root) / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n")
    assert isolator.watch(container) is None
    events.write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    (v2_dir(root) / "memory.peak").write_text(f"{100 * MB}\n")
    limitation = isolator.limitation_at_exit(container)
    assert limitation is not None
    assert limitation.message.startswith(
        "Memory limit exceeded: Requested: 100MB Maximum Used: 100MB"
    )


def test_memory_usage_v1_and_v2(tmp_path: Path) -> None:
    root = v1_tree(tmp_path / "v1")
    isolator = MemoryIsolator(options(root))
    container = make_container("mem:64")
    isolator.prepare(container)
    mem = v1_dir(root, "memory")
    (mem / "memory.usage_in_bytes").write_text("5000\n")
    (mem / "memory.stat").write_text(
        "rss 1\ncache 2\ntotal_rss 100\ntotal_cache 200\ntotal_active_anon 30\n"
        "total_inactive_anon 70\ntotal_active_file 150\ntotal_inactive_file 50\n"
        "total_mapped_file 20\ntotal_swap 0\ntotal_unevictable 0\n"
    )
    assert isolator.usage(container) == {
        "mem_total_bytes": 5000,
        "mem_limit_bytes": 64 * MB,
        "mem_soft_limit_bytes": 64 * MB,
        "mem_rss_bytes": 100,
        "mem_cache_bytes": 200,
        "mem_anon_bytes": 100,
        "mem_file_bytes": 200,
        "mem_mapped_file_bytes": 20,
        "mem_swap_bytes": 0,
        "mem_unevictable_bytes": 0,
    }
    root2 = v2_tree(tmp_path)
    isolator2 = MemoryIsolator(options(root2))
    isolator2.prepare(container)
    directory = v2_dir(root2)
    (directory / "memory.current").write_text("7000\n")
    (directory / "memory.stat").write_text("anon 300\nfile 400\nfile_mapped 10\n")
    stats = isolator2.usage(container)
    assert stats["mem_total_bytes"] == 7000
    assert stats["mem_rss_bytes"] == stats["mem_anon_bytes"] == 300
    assert stats["mem_cache_bytes"] == 400
    assert stats["mem_limit_bytes"] == 64 * MB


# ---------------------------------------------------------------------- pids


def test_pids_cap_from_resource_or_default(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    isolator = PidsIsolator(options(root))
    isolator.prepare(make_container("cpus:1;pids:50", "c1"))
    isolator.prepare(make_container("cpus:1", "c2"))
    assert (v1_dir(root, "pids", "c1") / "pids.max").read_text() == "50"
    assert (v1_dir(root, "pids", "c2") / "pids.max").read_text() == str(DEFAULT_MAX_PIDS)
    (v1_dir(root, "pids", "c1") / "pids.current").write_text("3\n")
    (v1_dir(root, "pids", "c1") / "cgroup.procs").write_text("5\n6\n")
    assert isolator.usage(make_container("cpus:1", "c1")) == {"processes": 2, "threads": 3}


def test_missing_controller_is_named(tmp_path: Path) -> None:
    root = v2_tree(tmp_path, "cpu memory")
    with pytest.raises(ContainerError, match="'pids'"):
        PidsIsolator(options(root))
    (tmp_path / "v1").mkdir()
    with pytest.raises(ContainerError, match="'memory' is not mounted"):
        MemoryIsolator(options(tmp_path / "v1"))


# ---------------------------------------------------------------------- recover, cleanup


def test_recover_removes_only_own_leftovers(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    for cid, key in (("known", KEY), ("stale", KEY), ("theirs", "agentB")):
        v1_dir(root, "memory", cid, key).mkdir(parents=True)
        (v1_dir(root, "memory", cid, key) / "memory.limit_in_bytes").write_text("1\n")
    MemoryIsolator(options(root)).recover({"known"})
    assert v1_dir(root, "memory", "known").is_dir()
    assert not v1_dir(root, "memory", "stale").exists()
    assert v1_dir(root, "memory", "theirs", "agentB").is_dir()


def test_recover_v2(tmp_path: Path) -> None:
    root = v2_tree(tmp_path)
    for cid, key in (("known", KEY), ("stale", KEY), ("theirs", "agentB")):
        v2_dir(root, cid, key).mkdir(parents=True)
    CpuIsolator(options(root)).recover({"known"})
    assert sorted(os.listdir(root / "agora" / KEY)) == ["known"]
    assert v2_dir(root, "theirs", "agentB").is_dir()


def test_cleanup_removes_every_controller_dir(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    isolator = CpuIsolator(options(root, cgroups_enable_cfs=True))
    container = make_container("cpus:1")
    isolator.prepare(container)
    isolator.cleanup(container)
    assert not v1_dir(root, "cpu").exists() and not v1_dir(root, "cpuacct").exists()
    assert (root / "cpu" / "agora" / KEY).is_dir()
    isolator.cleanup(container)  # twice is harmless
