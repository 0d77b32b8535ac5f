"""An agent's `/monitor/statistics` and `/containers` (Mesos shape) measure its running
containers: a busy task shows CPU time and memory, its limits and its executor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import get_json, master_process, wait_for

BUSY = "python3 -c 'while True: pass'"


def test_statistics_of_a_busy_task(tmp_path: Path) -> None:
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
            fw.offer(), [command_task("busy", BUSY, cpus=0.5), command_task("idle", "sleep 60")]
        )
        fw.until(
            lambda: all("TASK_RUNNING" in fw.states(t) for t in ("busy", "idle")),
            what="both tasks running",
        )

        def busy_entry() -> dict[str, Any] | None:
            for entry in get_json(agent, "/monitor/statistics"):
                busy = entry["statistics"].get("cpus_user_time_secs", 0) >= 0.3
                if entry["executor_id"] == "busy" and busy:
                    return dict(entry)
            return None

        entry = wait_for(busy_entry, 20.0, "the busy task's CPU time")
        assert entry["framework_id"] == fw.id
        assert entry["source"] == "busy"
        assert "busy" in entry["executor_name"]
        stats = entry["statistics"]
        assert stats["cpus_limit"] == 0.5
        assert stats["mem_limit_bytes"] == 32 * 1024 * 1024
        assert stats["mem_rss_bytes"] > 1024 * 1024
        assert stats["timestamp"] > 0
        assert stats["processes"] >= 1

        aliased = get_json(agent, "/slave(1)/monitor/statistics.json")
        assert sorted(e["executor_id"] for e in aliased) == ["busy", "idle"]

        containers = get_json(agent, "/slave(1)/containers")
        by_executor = {c["executor_id"]: c for c in containers}
        assert set(by_executor) == {"busy", "idle"}
        busy = by_executor["busy"]
        assert busy["status"]["container_id"] == {"value": busy["container_id"]}
        assert busy["status"]["executor_pid"] > 0
        assert busy["statistics"]["cpus_limit"] == 0.5
        state = get_json(agent, "/state")
        directories = [
            e["container"] for f in state["frameworks"] for e in f["executors"] if e["id"] == "busy"
        ]
        assert directories == [busy["container_id"]]

        for task in ("busy", "idle"):
            fw.call({"type": "KILL", "kill": {"task_id": {"value": task}}})
        fw.until(
            lambda: all("TASK_KILLED" in fw.states(t) for t in ("busy", "idle")),
            what="both tasks killed",
        )
        wait_for(lambda: get_json(agent, "/monitor/statistics") == [], 10.0, "no containers")
        fw.close()
