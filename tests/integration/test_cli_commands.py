"""The CLI against a real cluster: `agora run`, `agora ps`, `agora agents`, `agora frameworks`,
and one clear line when no master answers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agora.testing.cluster import LocalCluster


def agora(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agora", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        check=False,
    )


def test_run_prints_output_and_exits_with_the_command_status(shared_cluster: LocalCluster) -> None:
    result = agora(
        "run", "--master", shared_cluster.master_address, "--", "sh", "-c", "echo hello; exit 3"
    )
    assert result.returncode == 3, result.stderr
    assert "hello" in result.stdout
    assert "TASK_FAILED" in result.stderr


def test_run_a_finishing_command_exits_0_and_streams_stderr(shared_cluster: LocalCluster) -> None:
    result = agora(
        "run",
        "--master",
        shared_cluster.master_address,
        "--env",
        "GREETING=bonjour",
        "--",
        "sh -c 'echo $GREETING; echo oops >&2'",
    )
    assert result.returncode == 0, result.stderr
    assert "bonjour" in result.stdout
    assert "oops" in result.stderr
    assert "TASK_FINISHED" in result.stderr


def test_inspection_commands_show_the_cluster(shared_cluster: LocalCluster) -> None:
    master = shared_cluster.master_address
    agents = agora("agents", "--master", master)
    assert agents.returncode == 0, agents.stderr
    state = shared_cluster.master_state()
    for agent in state["slaves"]:
        assert agent["id"] in agents.stdout
    frameworks = agora("frameworks", "--master", master, "--all")
    assert frameworks.returncode == 0, frameworks.stderr
    ps = agora("ps", "--master", master, "--all")
    assert ps.returncode == 0, ps.stderr
    env_ps = subprocess.run(
        [sys.executable, "-m", "agora", "ps"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AGORA_MASTER": master, "COLUMNS": "200"},
        check=False,
    )
    assert env_ps.returncode == 0, env_ps.stderr


def test_ps_lists_a_running_task(shared_cluster: LocalCluster) -> None:
    master = shared_cluster.master_address
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agora",
            "run",
            "--master",
            master,
            "--name",
            "sleeper",
            "--",
            "sleep 30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        from agora.testing.cluster import wait_until

        def running() -> bool:
            return any(
                t["state"] == "TASK_RUNNING" and t["name"] == "sleeper"
                for f in shared_cluster.master_state()["frameworks"]
                for t in f["tasks"]
            )

        wait_until(running, 60.0, "the task to run")
        ps = agora("ps", "--master", master)
        assert "sleeper" in ps.stdout and "TASK_RUNNING" in ps.stdout, ps.stdout
        frameworks = agora("frameworks", "--master", master)
        assert "agora run sleeper" in frameworks.stdout
        process.send_signal(2)  # Ctrl-C kills the task and exits 130
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "TASK_KILLED" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("command", ["ps", "agents", "frameworks"])
def test_unreachable_master_gets_one_clear_line(command: str) -> None:
    result = agora(command, "--master", "127.0.0.1:1", timeout_s=30)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agora: error:") and "127.0.0.1:1" in lines[0]
    assert "Traceback" not in result.stderr


def test_run_against_an_unreachable_master_fails_cleanly() -> None:
    result = agora("run", "--master", "127.0.0.1:1", "--", "true", timeout_s=30)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
