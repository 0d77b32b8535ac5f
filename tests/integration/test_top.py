"""`agora top --once`: two samples of a real cluster show a busy task's CPU % and memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agora.cli.top import cpu_percent
from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import get_json, master_process, wait_for

BUSY = "python3 -c 'while True: pass'"


def top_once(master: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agora", "top", "--once", "--master", master, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "160", "NO_COLOR": "1"},
    )


def cells(output: str, task_id: str) -> list[str]:
    for line in output.splitlines():
        parts = [p.strip() for p in line.split("│")]
        if len(parts) > 2 and parts[1] == task_id:
            return parts[1:-1]
    raise AssertionError(f"no row for {task_id} in:\n{output}")


def test_cpu_percent_uses_the_statistics_timestamps() -> None:
    before = {"timestamp": 10.0, "cpus_user_time_secs": 1.0, "cpus_system_time_secs": 0.5}
    after = {"timestamp": 12.0, "cpus_user_time_secs": 2.0, "cpus_system_time_secs": 1.5}
    assert cpu_percent(before, after, wall_s=5.0) == 100.0
    assert cpu_percent(None, after, wall_s=2.0) is None
    assert cpu_percent({"timestamp": 12.0}, after, wall_s=2.0) is None


def test_top_once_shows_a_busy_task(tmp_path: Path) -> None:
    with (
        master_process(tmp_path) as master,
        agent_process(
            tmp_path,
            master,
            "--resources",
            "cpus:2;mem:1024",
            "--isolation",
            "posix/cpu,posix/mem,disk/du",
        ) as agent,
    ):
        fw = Framework(master)
        fw.launch(
            fw.offer(),
            [command_task("busy", BUSY, cpus=0.5), command_task("idle", "sleep 60", cpus=0.25)],
        )
        fw.until(
            lambda: all("TASK_RUNNING" in fw.states(t) for t in ("busy", "idle")),
            what="both tasks running",
        )
        wait_for(
            lambda: any(
                e["statistics"].get("cpus_user_time_secs", 0) > 0.1
                for e in get_json(agent, "/monitor/statistics")
            ),
            20.0,
            "the busy task to burn CPU",
        )
        result = top_once(master, "--interval-s", "1")
        assert result.returncode == 0, result.stderr
        _task, framework, agent_host, state, cpu, cpus, memory, _disk = cells(result.stdout, "busy")
        assert (framework, agent_host, state, cpus) == ("agent-test", "127.0.0.1", "RUNNING", "0.5")
        assert float(cpu) > 20.0, result.stdout  # one spinning core is ~100 %
        rss, limit = memory.split(" / ")
        assert rss.endswith("M") and float(rss[:-1]) > 1.0
        assert limit == "32.0M"
        idle = cells(result.stdout, "idle")
        assert float(idle[4]) < float(cpu)
        lines = [
            line for line in result.stdout.splitlines() if "│ busy" in line or "│ idle" in line
        ]
        assert "busy" in lines[0], "sorted by CPU, busiest first"

        by_mem = top_once(master, "--interval-s", "0.2", "--sort", "mem")
        assert by_mem.returncode == 0 and "idle" in by_mem.stdout
        fw.close()


def test_top_says_when_the_master_is_unreachable() -> None:
    result = top_once("127.0.0.1:1")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("agora: error: master 127.0.0.1:1")
    assert len(result.stderr.strip().splitlines()) == 1
