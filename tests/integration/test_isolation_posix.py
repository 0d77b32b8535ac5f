"""posix/cpu, posix/mem and disk/du end to end: a real master and `agora agent
--isolation posix/cpu,posix/mem,disk/du` (no cgroups needed): the agent's
/monitor/statistics measures a task's process tree and sandbox, and an enforced disk
quota fails a task that writes beyond its disk with REASON_CONTAINER_LIMITATION_DISK."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import get_json, master_process, wait_for

POSIX = "posix/cpu,posix/mem,disk/du"
MB = 1024 * 1024


def scalar(name: str, value: float) -> dict[str, Any]:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def statistics_of(agent: str, executor_id: str) -> dict[str, Any] | None:
    for entry in get_json(agent, "/monitor/statistics"):
        if entry["executor_id"] == executor_id:
            return dict(entry["statistics"])
    return None


def test_usage_of_a_task_tree_and_its_sandbox(tmp_path: Path) -> None:
    with (
        master_process(tmp_path) as master,
        agent_process(
            tmp_path,
            master,
            "--resources",
            "cpus:2;mem:1024;disk:1024",
            "--isolation",
            POSIX,
            "--container-disk-watch-interval-s",
            "0.2",
        ) as agent,
    ):
        fw = Framework(master)
        task = command_task(
            "busy",
            "head -c 3000000 /dev/urandom > blob; while :; do :; done",
            cpus=0.5,
        )
        task["resources"].append(scalar("disk", 16))
        fw.launch(fw.offer(), [task])
        fw.until(lambda: "TASK_RUNNING" in fw.states("busy"), what="the task running")

        def measured() -> dict[str, Any] | None:
            stats = statistics_of(agent, "busy")
            cpu_s = stats.get("cpus_user_time_secs", 0) if stats else 0
            used = stats.get("disk_used_bytes", 0) if stats else 0
            return stats if cpu_s > 0.2 and used >= 3_000_000 else None

        stats = wait_for(measured, 20.0, "CPU time and disk usage in /monitor/statistics")
        assert stats["cpus_limit"] == 0.5
        assert stats["mem_limit_bytes"] == 32 * MB
        assert stats["mem_rss_bytes"] > 0
        assert stats["processes"] >= 1 and stats["threads"] >= 1
        assert stats["disk_limit_bytes"] == 16 * MB
        fw.call({"type": "KILL", "kill": {"task_id": {"value": "busy"}}})
        fw.until(lambda: "TASK_KILLED" in fw.states("busy"), what="the task killed")
        fw.close()


def test_enforced_disk_quota_fails_the_task(tmp_path: Path) -> None:
    with (
        master_process(tmp_path) as master,
        agent_process(
            tmp_path,
            master,
            "--resources",
            "cpus:2;mem:1024;disk:1024",
            "--isolation",
            POSIX,
            "--enforce-container-disk-quota",
            "--container-disk-watch-interval-s",
            "0.5",
        ),
    ):
        fw = Framework(master)
        task = command_task("writer", "head -c 4000000 /dev/zero > blob; sleep 60")
        task["resources"].append(scalar("disk", 2))
        started = time.monotonic()
        fw.launch(fw.offer(), [task])
        fw.until(lambda: "TASK_FAILED" in fw.states("writer"), 30.0, "the task to fail")
        detected_s = time.monotonic() - started
        status = fw.last("writer")
        assert status["reason"] == "REASON_CONTAINER_LIMITATION_DISK", status
        assert status["message"].startswith("Disk usage (")
        assert status["message"].endswith("exceeds quota (2MB)")
        assert detected_s < 15.0
        fw.close()
