"""Both drivers end to end: a framework launches tasks on a custom executor written with
agora.client.ExecutorDriver (this file, run by the agent as the executor's command)."""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agora.client import (
    TERMINAL_STATES,
    Event,
    Executor,
    ExecutorDriver,
    FrameworkInfo,
    SchedulerDriver,
    offer_role,
    offer_scalars,
    scalar_resources,
    task_info,
)
from agora.testing.cluster import LocalCluster

TASKS = 20


class EchoExecutor(Executor):
    """Every task: STARTING, RUNNING, FINISHED (data = the task's data); echoes messages."""

    async def launch(self, driver: ExecutorDriver, task: Mapping[str, Any]) -> None:
        task_id = task["task_id"]["value"]
        data = base64.b64decode(task.get("data", ""))
        await driver.send_status_update(task_id, "TASK_STARTING")
        await driver.send_status_update(task_id, "TASK_RUNNING")
        await driver.send_status_update(task_id, "TASK_FINISHED", data=data)

    async def message(self, driver: ExecutorDriver, data: bytes) -> None:
        await driver.send_message(b"echo:" + data)

    def shutdown(self, driver: ExecutorDriver) -> None:
        asyncio.get_running_loop().create_task(driver.stop())


def executor_info() -> dict[str, Any]:
    return {
        "type": "CUSTOM",
        "executor_id": {"value": "echo"},
        "name": "echo executor",
        "command": {
            "shell": False,
            "value": sys.executable,
            "arguments": [sys.executable, str(Path(__file__).resolve())],
        },
        "resources": scalar_resources(0.1, 32),
    }


def test_tasks_on_a_custom_executor_finish_and_messages_round_trip(cluster: LocalCluster) -> None:
    async def main() -> None:
        driver = SchedulerDriver(cluster.master_address, FrameworkInfo(name="echo-framework"))
        finished: dict[str, bytes] = {}
        states: dict[str, list[str]] = {}
        all_done = asyncio.Event()
        launched = asyncio.Event()
        replies: list[bytes] = []
        agent_of_executor: list[str] = []

        async def offers(event: Event) -> None:
            for offer in event.offers:
                have = offer_scalars(offer)
                if (
                    launched.is_set()
                    or have.get("cpus", 0) < 0.1 + 0.05 * TASKS
                    or have.get("mem", 0) < 32 + 16 * TASKS
                ):
                    await driver.decline([offer["id"]["value"]])
                    continue
                launched.set()
                agent_id = offer["agent_id"]["value"]
                agent_of_executor.append(agent_id)
                info = executor_info()
                for resource in info["resources"]:
                    resource["allocation_info"] = {"role": offer_role(offer)}
                tasks = [
                    task_info(
                        f"echo-{i}",
                        agent_id,
                        executor=info,
                        resources=scalar_resources(0.05, 16, role=offer_role(offer)),
                        data=f"payload-{i}".encode(),
                    )
                    for i in range(TASKS)
                ]
                await driver.launch([offer["id"]["value"]], tasks)

        def update(event: Event) -> None:
            status = event.status
            task_id = status["task_id"]["value"]
            states.setdefault(task_id, []).append(status["state"])
            if status["state"] in TERMINAL_STATES:
                finished[task_id] = base64.b64decode(status.get("data", ""))
                if len(finished) == TASKS:
                    all_done.set()

        driver.on("OFFERS", offers)
        driver.on("UPDATE", update)
        replied = asyncio.Event()

        def on_message(event: Event) -> None:
            replies.append(base64.b64decode(event.data["data"]))
            replied.set()

        driver.on("MESSAGE", on_message)
        try:
            await driver.wait_subscribed(30.0)
            await asyncio.wait_for(all_done.wait(), 90.0)
            assert finished == {f"echo-{i}": f"payload-{i}".encode() for i in range(TASKS)}
            for task_id, seen in states.items():
                assert seen[-1] == "TASK_FINISHED", (task_id, seen)
                assert "TASK_RUNNING" in seen
            await driver.message(agent_of_executor[0], "echo", b"ping")
            await asyncio.wait_for(replied.wait(), 30.0)
            assert replies == [b"echo:ping"]
        finally:
            await driver.stop(teardown=True)

    asyncio.run(main())


if __name__ == "__main__":  # run by the agent as the executor

    async def _serve() -> None:
        driver = ExecutorDriver(EchoExecutor())
        await driver.run()

    asyncio.run(_serve())
