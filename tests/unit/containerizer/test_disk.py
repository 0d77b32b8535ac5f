"""disk/du measures sandboxes off the event loop and reports a container over its disk
allocation only when the quota is enforced."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agora.agent.containerizer.disk import DiskIsolator, disk_usage_bytes, format_bytes
from agora.agent.containerizer.model import Container
from agora.agent.containerizer.options import ContainerizerOptions
from agora.core.container.config import ContainerConfig
from agora.core.resource_text import parse_resources
from agora.core.task_states import Reason

MB = 1024 * 1024


def make_container(resources: str, directory: str) -> Container:
    res = parse_resources(resources)
    config = ContainerConfig("c1", "f1", "e1", "t1", directory, directory, res)
    return Container("c1", config, res)


def write(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.write(os.urandom(size))


def wait_for_measure(isolator: DiskIsolator, container: Container, at_least: int) -> int:
    deadline = time.monotonic() + 5
    while True:
        used = isolator.usage(container).get("disk_used_bytes")
        if used is not None and used >= at_least:
            return int(used)
        assert time.monotonic() < deadline, f"disk/du measured {used}, wanted {at_least}"
        time.sleep(0.02)


def test_format_bytes_is_mesos_like() -> None:
    assert format_bytes(2 * MB) == "2MB"
    assert format_bytes(3 * 1024**3) == "3GB"
    assert format_bytes(1536) == "1536B"
    assert format_bytes(4096) == "4KB"


def test_du_counts_blocks_and_hard_links_once(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "a", MB)
    os.link(tmp_path / "d" / "a", tmp_path / "b")
    os.symlink("/usr", tmp_path / "link")
    used = disk_usage_bytes(str(tmp_path))
    assert MB <= used < MB + 64 * 1024


def test_over_quota_is_a_disk_limitation_when_enforced(tmp_path: Path) -> None:
    options = ContainerizerOptions(
        work_dir=str(tmp_path),
        enforce_container_disk_quota=True,
        container_disk_watch_interval_s=0.05,
    )
    isolator = DiskIsolator(options)
    container = make_container("disk:1", str(tmp_path))
    isolator.prepare(container)
    assert isolator.watch(container) is None
    write(tmp_path / "big", 2 * MB)
    wait_for_measure(isolator, container, 2 * MB)
    limitation = isolator.watch(container)
    assert limitation is not None
    assert limitation.reason == Reason.CONTAINER_LIMITATION_DISK
    assert limitation.message.startswith("Disk usage (")
    assert limitation.message.endswith("exceeds quota (1MB)")
    assert isolator.usage(container)["disk_limit_bytes"] == MB
    isolator.cleanup(container)
    assert "disk_used_bytes" not in isolator.usage(container)


def test_over_quota_only_measured_without_enforcement(tmp_path: Path) -> None:
    options = ContainerizerOptions(work_dir=str(tmp_path), container_disk_watch_interval_s=0.05)
    isolator = DiskIsolator(options)
    container = make_container("disk:1", str(tmp_path))
    write(tmp_path / "big", 2 * MB)
    isolator.prepare(container)
    wait_for_measure(isolator, container, 2 * MB)
    assert isolator.watch(container) is None


def test_the_measuring_thread_ends_with_the_last_container(tmp_path: Path) -> None:
    options = ContainerizerOptions(work_dir=str(tmp_path), container_disk_watch_interval_s=0.02)
    isolator = DiskIsolator(options)
    container = make_container("disk:1", str(tmp_path))
    isolator.prepare(container)
    thread = isolator._thread
    assert thread is not None
    isolator.cleanup(container)
    thread.join(5)
    assert not thread.is_alive()
    isolator.prepare(container)  # a new container gets a new thread
    write(tmp_path / "f", MB)
    wait_for_measure(isolator, container, MB)
    isolator.cleanup(container)
