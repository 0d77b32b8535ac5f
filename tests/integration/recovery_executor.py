"""A custom executor for the agent recovery tests, run by the agent as its command:
`python recovery_executor.py [--give-up]`.

Each task it is given goes RUNNING and stays so until it is killed (then KILLED). It
writes its pid to `executor.pid` in its sandbox. With `--give-up` it does not wait for a
restarted agent: once its agent is gone it stops trying and just sleeps (alive, never
re-subscribing), like an executor that cannot reconnect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Any

from agora.client import Executor, ExecutorDriver, ExecutorError
from agora.client.executor import ExecutorEnvironment


class HoldingExecutor(Executor):
    async def launch(self, driver: ExecutorDriver, task: Mapping[str, Any]) -> None:
        await driver.send_status_update(task["task_id"]["value"], "TASK_RUNNING")

    async def kill(self, driver: ExecutorDriver, task_id: str) -> None:
        await driver.send_status_update(task_id, "TASK_KILLED")


async def main(give_up: bool) -> None:
    with open("executor.pid", "w") as out:
        out.write(str(os.getpid()))
    environment = ExecutorEnvironment.from_environ()
    if give_up:
        environment = dataclasses.replace(environment, recovery_timeout_s=0.01)
    driver = ExecutorDriver(HoldingExecutor(), environment)
    try:
        await driver.run()
    except ExecutorError:
        if give_up:
            await asyncio.Event().wait()  # alive until killed, never re-subscribing
        raise


if __name__ == "__main__":
    asyncio.run(main("--give-up" in sys.argv[1:]))
