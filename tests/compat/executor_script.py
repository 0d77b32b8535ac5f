"""A custom executor written with the unmodified pymesos MesosExecutorDriver.

Run by the agent as the ExecutorInfo command (`<venv python> executor_script.py`). On LAUNCH it
sends the scheduler a framework message `launched:<task id>` and TASK_RUNNING; it answers every
framework message `X` with `echo:X`; the message `finish` makes it send TASK_FINISHED.
It runs until the agent tells it to shut down (framework teardown)."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from pymesos import (  # type: ignore[import-untyped]
    Executor,
    MesosExecutorDriver,
    decode_data,
    encode_data,
)


class EchoExecutor(Executor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.task_id: Any = None
        self.lock = threading.Lock()

    def registered(
        self, driver: Any, executor_info: Any, framework_info: Any, agent_info: Any
    ) -> None:
        logging.info("registered: %s on %s", executor_info["executor_id"], agent_info)

    def launchTask(self, driver: Any, task: Any) -> None:
        self.task_id = task["task_id"]
        driver.sendFrameworkMessage(encode_data(b"launched:" + task["task_id"]["value"].encode()))
        driver.sendStatusUpdate(
            {"task_id": task["task_id"], "state": "TASK_RUNNING", "message": "executor running"}
        )

    def frameworkMessage(self, driver: Any, message: str) -> None:
        data = decode_data(message)
        logging.info("framework message %r", data)
        if data == b"finish":
            driver.sendStatusUpdate(
                {
                    "task_id": self.task_id,
                    "state": "TASK_FINISHED",
                    "message": "finished on request",
                }
            )
        else:
            driver.sendFrameworkMessage(encode_data(b"echo:" + data))

    def killTask(self, driver: Any, task_id: Any) -> None:
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED"})

    def shutdown(self, driver: Any) -> None:
        logging.info("shutdown")


def main() -> int:
    logging.basicConfig(
        level=logging.DEBUG,
        stream=sys.stderr,
        format="%(asctime)s %(threadName)s %(name)s %(message)s",
    )
    driver = MesosExecutorDriver(EchoExecutor(), use_addict=True)
    driver.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
