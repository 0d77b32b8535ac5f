"""Health checks and checks of command tasks, run by a real agent against real task
processes: HTTP and TCP probes against a server the task starts, COMMAND probes in the
task's sandbox, and check_status updates only when a check's result changes."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import master_process

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(port: int) -> str:
    return f"exec {PYTHON} -m http.server {port} --bind 127.0.0.1"


@contextmanager
def cluster(tmp_path: Path) -> Iterator[Framework]:
    with (
        master_process(tmp_path) as master,
        agent_process(
            tmp_path, master, "--resources", "cpus:2;mem:1024", "--isolation", "posix/cpu,posix/mem"
        ),
    ):
        fw = Framework(master)
        try:
            yield fw
        finally:
            fw.close()


def health_updates(fw: Framework, task_id: str) -> list[bool]:
    return [
        u["healthy"]
        for u in fw.updates
        if u["task_id"]["value"] == task_id
        and u.get("reason") == "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
    ]


def fast(**fields: Any) -> dict[str, Any]:
    return {"delay_seconds": 0, "interval_seconds": 0.3, "timeout_seconds": 2, **fields}


def test_http_health_check_turns_unhealthy_and_kills_the_task(tmp_path: Path) -> None:
    port = free_port()
    check = fast(type="HTTP", http={"port": port, "path": "/ok"}, consecutive_failures=2)
    task = command_task(
        "web",
        f"echo fine > ok; (sleep 2; rm ok) & {serve(port)}",
        health_check={**check, "grace_period_seconds": 20},
    )
    with cluster(tmp_path) as fw:
        fw.launch(fw.offer(), [task])
        fw.until(lambda: fw.states("web")[-1:] == ["TASK_KILLED"], 30.0, "the unhealthy kill")
        # The first success, then one unhealthy update per failure up to the kill.
        assert health_updates(fw, "web") == [True, False, False]
        killed = fw.last("web")
        assert killed["healthy"] is False and "reason" not in killed
        running = [u for u in fw.updates if u["state"] == "TASK_RUNNING"]
        assert all(u["source"] == "SOURCE_EXECUTOR" and "uuid" in u for u in running)


def test_tcp_and_command_health_checks(tmp_path: Path) -> None:
    port = free_port()
    tcp = command_task(
        "tcp",
        serve(port),
        health_check=fast(type="TCP", tcp={"port": port}, grace_period_seconds=20),
    )
    cmd = command_task(
        "cmd",
        "touch here; sleep 2; rm here; sleep 100",
        health_check=fast(
            type="COMMAND",
            command={"value": "test -f here"},
            consecutive_failures=1000,
            grace_period_seconds=0,
        ),
    )
    with cluster(tmp_path) as fw:
        fw.launch(fw.offer(), [tcp, cmd])
        fw.until(lambda: health_updates(fw, "tcp") == [True], 20.0, "a healthy TCP check")
        fw.until(lambda: health_updates(fw, "cmd")[:3] == [True, False, False], 20.0, "cmd")
        assert fw.states("cmd")[-1] == "TASK_RUNNING"
        for task_id in ("tcp", "cmd"):
            fw.call({"type": "KILL", "kill": {"task_id": {"value": task_id}}})
        fw.until(
            lambda: fw.states("tcp")[-1:] == fw.states("cmd")[-1:] == ["TASK_KILLED"],
            what="both tasks killed",
        )
        # A kill by the framework does not mark the task unhealthy.
        assert "healthy" not in fw.last("tcp") and "healthy" not in fw.last("cmd")


def test_check_reports_exit_codes_only_when_they_change(tmp_path: Path) -> None:
    task = command_task(
        "checked",
        "sleep 1.5; touch flag; sleep 100",
        check=fast(type="COMMAND", command={"command": {"value": "test -f flag"}}),
    )
    with cluster(tmp_path) as fw:
        fw.launch(fw.offer(), [task])

        def codes() -> list[int | None]:
            return [
                u["check_status"]["command"].get("exit_code")
                for u in fw.updates
                if u.get("reason") == "REASON_TASK_CHECK_STATUS_UPDATED"
            ]

        fw.until(lambda: codes() == [1, 0], 20.0, "check status 1, then 0")
        # More probes ran meanwhile (every 0.3 s) without updates: nothing changed.
        fw.call({"type": "KILL", "kill": {"task_id": {"value": "checked"}}})
        fw.until(lambda: fw.states("checked")[-1:] == ["TASK_KILLED"], what="the kill")
        assert codes() == [1, 0]
        for status in fw.updates:
            assert status["check_status"]["type"] == "COMMAND"
        assert fw.last("checked")["check_status"] == {"type": "COMMAND", "command": {}}
