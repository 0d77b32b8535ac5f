"""A custom executor written with pymesos's MesosExecutorDriver, driven by its scheduler driver.

The executor (tests/compat/executor_script.py) runs under this interpreter; framework messages
go both ways: scheduler -> executor with driver.sendFrameworkMessage, executor -> scheduler
with the executor driver's sendFrameworkMessage."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from pymesos import decode_data, encode_data  # type: ignore[import-untyped]

from agora.testing.cluster import wait_until
from tests.compat.conftest import framework_in_state
from tests.compat.harness import LaunchOnce, resources

SCRIPT = Path(__file__).with_name("executor_script.py")


def executor_task(task_id: str, executor_id: str, offer: Any) -> dict[str, Any]:
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": offer["agent_id"]["value"]},
        "resources": resources(0.1, 32),
        "executor": {
            "executor_id": {"value": executor_id},
            "name": "compat echo executor",
            "command": {
                "shell": True,
                "value": f"exec {shlex.quote(sys.executable)} {shlex.quote(str(SCRIPT))}",
            },
            "resources": resources(0.1, 64),
        },
    }


def test_custom_executor_round_trips_framework_messages(cluster, recorder, start_scheduler):
    address = cluster.master_address
    recorder.on_offers = LaunchOnce(lambda offer: [executor_task("ex-task", "echo-exec", offer)])

    def on_update(driver, status):
        if status["state"] == "TASK_RUNNING":
            driver.sendFrameworkMessage(
                {"value": "echo-exec"}, status["agent_id"], encode_data(b"ping")
            )

    def on_message(driver, executor_id, agent_id, data):
        if decode_data(data) == b"echo:ping":
            driver.sendFrameworkMessage(executor_id, agent_id, encode_data(b"finish"))

    recorder.on_update = on_update
    recorder.on_message = on_message
    driver = start_scheduler(recorder, address, use_addict=True)
    framework_id = recorder.wait_for_kind("registered").args[0]["value"]

    running = recorder.wait_for_state("ex-task", "TASK_RUNNING")
    assert running["source"] == "SOURCE_EXECUTOR"
    assert running["executor_id"]["value"] == "echo-exec"
    assert running["message"] == "executor running"
    finished = recorder.wait_for_state("ex-task", "TASK_FINISHED")
    assert finished["message"] == "finished on request"

    messages = [
        (e.args[0]["value"], decode_data(e.args[2])) for e in recorder.of_kind("frameworkMessage")
    ]
    assert ("echo-exec", b"launched:ex-task") in messages
    assert ("echo-exec", b"echo:ping") in messages
    agent_ids = {e.args[1]["value"] for e in recorder.of_kind("frameworkMessage")}
    assert agent_ids == {running["agent_id"]["value"]}

    # Teardown shuts the executor down (SHUTDOWN event); the framework completes.
    driver.stop()
    driver.join()
    wait_until(
        lambda: framework_in_state(address, framework_id)[0] == "completed_frameworks",
        15,
        "the framework to be completed",
    )
    state = framework_in_state(address, framework_id)[1]
    assert any(
        t["id"] == "ex-task" and t["state"] == "TASK_FINISHED" for t in state["completed_tasks"]
    )

    def executor_gone() -> bool:
        return not [p for p in cluster.leftover_processes() if SCRIPT.name in " ".join(p.cmdline())]

    wait_until(executor_gone, 15, "the executor process to exit after SHUTDOWN")
