"""Health checks and checks of command tasks, run by a real agent against real task
processes: HTTP and TCP probes against a server the task starts, COMMAND probes in the
task's sandbox, and check_status updates only when a check's result changes."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agora.agent.checks import CheckRunner
from agora.agent.containerizer.model import Container
from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent.health import HEALTH, CheckSpec, Probe, parse_spec
from agora.core.resources import Resources
from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import master_process, wait_for

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
        f"echo fine > ok; (sleep 4; rm ok) & {serve(port)}",
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
    # Healthy until the task creates `gone`: the check cannot run before the task's
    # shell does its first step and see it unhealthy first.
    cmd = command_task(
        "cmd",
        "sleep 3; touch gone; sleep 100",
        health_check=fast(
            type="COMMAND",
            command={"value": "test ! -e gone"},
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


# ------------------------------------------------------------------ the probes themselves


@dataclass
class Containers:
    containers: dict[str, Container] = field(default_factory=dict)


def run_probe(spec: CheckSpec, containers: Containers | None = None, sandbox: str = "/") -> Probe:
    async def main() -> Probe:
        results: list[ev.AgentEvent] = []
        runner = CheckRunner(containers or Containers(), results.append)
        runner.run(cmd.RunCheck("c1", "f", "t", "cid", spec, dict(os.environ), sandbox))
        while not results:
            await asyncio.sleep(0.01)
        result = results[0]
        assert isinstance(result, ev.CheckResult) and result.check_id == "c1"
        return result.probe

    return asyncio.run(main())


def spec_of(raw: dict[str, Any]) -> CheckSpec:
    return parse_spec(raw, HEALTH)


def test_probes_time_out_and_kill_their_command(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    spec = spec_of(
        {
            "type": "COMMAND",
            "command": {"value": f"sleep 1; touch {marker}"},
            "timeout_seconds": 0.2,
        }
    )
    started = time.monotonic()
    probe = run_probe(spec)
    assert probe.error is not None and "timed out" in probe.error
    assert time.monotonic() - started < 1.0
    time.sleep(1.2)
    assert not marker.exists()  # its process group was killed
    assert run_probe(spec_of({"type": "COMMAND", "command": {"value": "exit 4"}})).exit_code == 4
    refused = run_probe(spec_of({"type": "HTTP", "http": {"port": free_port()}}))
    assert refused.error is not None and refused.status_code is None
    assert run_probe(spec_of({"type": "TCP", "tcp": {"port": free_port()}})).connected is False


def test_command_probe_runs_in_the_containers_mount_namespace(tmp_path: Path) -> None:
    if shutil.which("nsenter") is None or shutil.which("unshare") is None:
        pytest.skip("needs util-linux nsenter and unshare")
    inside = "mount -t tmpfs none /mnt && touch /mnt/inside && cd /mnt && exec sleep 30"
    leader = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", inside]
    )
    try:
        wait_for(lambda: os.readlink(f"/proc/{leader.pid}/cwd") == "/mnt", 5.0, "the container")
        container = Container(id="cid", config=None, resources=Resources())  # type: ignore[arg-type]
        container.launch_info.namespaces.append("mount")
        container.leader_pid = leader.pid
        probe = run_probe(
            spec_of({"type": "COMMAND", "command": {"value": "test -f inside"}}),
            Containers({"cid": container}),
        )
        assert probe.exit_code == 0  # in the namespace, from the task's working directory
        assert not Path("/mnt/inside").exists()
    finally:
        leader.kill()
        leader.wait()
