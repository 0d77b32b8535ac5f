"""posix/cpu and posix/mem measure a container's real process tree (no cgroups)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from agora.agent.containerizer.model import Container
from agora.agent.containerizer.options import ContainerizerOptions
from agora.agent.containerizer.posix import PosixCpuIsolator, PosixMemIsolator
from agora.core.container.config import ContainerConfig
from agora.core.resource_text import parse_resources


def make_container(resources: str, directory: str = "/tmp") -> Container:
    res = parse_resources(resources)
    config = ContainerConfig("c1", "f1", "e1", "t1", directory, directory, res)
    return Container("c1", config, res)


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[bytes]]:
    """A shell with a busy child: a two-process tree."""
    script = "python3 -c 'while True: pass' & wait"
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def test_usage_counts_the_tree(tree: subprocess.Popen[bytes]) -> None:
    container = make_container("cpus:0.5;mem:16")
    container.pids["p1"] = tree.pid
    container.leader_pid = tree.pid
    cpu = PosixCpuIsolator(ContainerizerOptions(work_dir="/tmp"))
    mem = PosixMemIsolator(ContainerizerOptions(work_dir="/tmp"))
    deadline = time.monotonic() + 10
    while cpu.usage(container)["cpus_user_time_secs"] < 0.2:
        assert time.monotonic() < deadline, "the busy child never showed CPU time"
        time.sleep(0.05)
    stats = cpu.usage(container)
    assert stats["cpus_limit"] == 0.5
    assert stats["processes"] == 2
    assert stats["threads"] >= 2
    memory = mem.usage(container)
    assert memory["mem_rss_bytes"] > 1024 * 1024
    assert memory["mem_limit_bytes"] == 32 * 1024 * 1024  # 16 MB raised to the minimum
    pids = cpu.processes(container)
    assert pids is not None and tree.pid in pids and len(pids) == 2


def test_gone_processes_measure_as_empty() -> None:
    container = make_container("cpus:1;mem:128")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    container.pids["p1"] = proc.pid
    cpu = PosixCpuIsolator(ContainerizerOptions(work_dir="/tmp"))
    assert cpu.usage(container)["processes"] == 0
    assert (
        PosixMemIsolator(ContainerizerOptions(work_dir="/tmp")).usage(container)["mem_limit_bytes"]
        == 128 * 1024 * 1024
    )
    assert cpu.processes(container) == set()
