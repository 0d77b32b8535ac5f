"""Real agent processes (with their real supervisor) for integration tests, and a small
framework driver speaking the scheduler API to a real master."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.master_process import RawStream, call, wait_for


def supervisor_pid(work_dir: Path) -> int | None:
    try:
        return int((work_dir / "supervisor.pid").read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_supervisor(work_dir: Path) -> None:
    pid = supervisor_pid(work_dir)
    if pid is not None and alive(pid):
        os.kill(pid, signal.SIGTERM)  # it kills its process groups and exits
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not alive(pid), 10.0, "the supervisor to exit")


@contextlib.contextmanager
def agent_process(tmp: Path, master: str, *args: str, name: str = "agent") -> Iterator[str]:
    ready = tmp / f"{name}.ready"
    work_dir = tmp / f"{name}-work"
    log = (tmp / f"{name}.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agora",
            "agent",
            "--master",
            master,
            "--port",
            "0",
            "--work-dir",
            str(work_dir),
            "--ready-file",
            str(ready),
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:

        def address() -> str | None:
            if process.poll() is not None:
                raise RuntimeError(f"agent exited: {(tmp / f'{name}.log').read_text()}")
            if ready.exists():
                return str(json.loads(ready.read_text())["address"])
            return None

        yield wait_for(address, 20.0, "the agent to serve")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        kill_supervisor(work_dir)


class Framework:
    """A scheduler on a raw SUBSCRIBE stream that acknowledges every update, except
    those of the tasks in `held` (until `release`)."""

    def __init__(
        self, master: str, capabilities: tuple[str, ...] = (), *, checkpoint: bool = False
    ) -> None:
        self.master = master
        info: dict[str, Any] = {"user": "root", "name": "agent-test", "checkpoint": checkpoint}
        if capabilities:
            info["capabilities"] = [{"type": c} for c in capabilities]
        self.stream = RawStream(
            master, {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}
        )
        assert self.stream.status == 200
        subscribed = self.stream.wait_event("SUBSCRIBED")
        self.id: str = subscribed["subscribed"]["framework_id"]["value"]
        self.updates: list[dict[str, Any]] = []
        self.offers: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.held: set[str] = set()  # task ids whose updates are not acknowledged yet
        self.unacknowledged: list[dict[str, Any]] = []

    def call(self, body: dict[str, Any]) -> None:
        status, data = call(self.master, self.stream, self.id, body)
        assert status == 202, (status, data)

    def pump(self, timeout_s: float = 10.0) -> None:
        event = self.stream.next_event(timeout_s=timeout_s)
        self.events.append(event)
        if event["type"] == "OFFERS":
            self.offers.extend(event["offers"]["offers"])
        elif event["type"] == "UPDATE":
            status = event["update"]["status"]
            self.updates.append(status)
            if "uuid" in status and status["task_id"]["value"] in self.held:
                self.unacknowledged.append(status)
            elif "uuid" in status:
                self.acknowledge(status)

    def acknowledge(self, status: dict[str, Any]) -> None:
        self.call(
            {
                "type": "ACKNOWLEDGE",
                "acknowledge": {
                    "agent_id": status["agent_id"],
                    "task_id": status["task_id"],
                    "uuid": status["uuid"],
                },
            }
        )

    def release(self, task_id: str) -> None:
        """Acknowledge the held updates of `task_id` (the newest copy of each) and stop
        holding its updates back."""
        self.held.discard(task_id)
        mine = [s for s in self.unacknowledged if s["task_id"]["value"] == task_id]
        self.unacknowledged = [s for s in self.unacknowledged if s not in mine]
        for status in {s["uuid"]: s for s in mine}.values():
            self.acknowledge(status)

    def until(self, predicate: Any, timeout_s: float = 20.0, what: str = "events") -> Any:
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {what}; updates: {self.updates}")
            self.pump(max(0.1, remaining))

    def offer(self) -> dict[str, Any]:
        self.until(lambda: self.offers, what="an offer")
        return self.offers.pop(0)

    def launch(self, offer: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
        for task in tasks:
            task.setdefault("agent_id", offer["agent_id"])
            task.setdefault("name", task["task_id"]["value"])
        self.call(
            {
                "type": "ACCEPT",
                "accept": {
                    "offer_ids": [offer["id"]],
                    "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
                    "filters": {"refuse_seconds": 0.1},
                },
            }
        )

    def states(self, task_id: str) -> list[str]:
        return [u["state"] for u in self.updates if u["task_id"]["value"] == task_id]

    def last(self, task_id: str) -> dict[str, Any]:
        return [u for u in self.updates if u["task_id"]["value"] == task_id][-1]

    def close(self) -> None:
        self.stream.close()


def command_task(task_id: str, command: str, cpus: float = 0.1, **extra: Any) -> dict[str, Any]:
    return {
        "task_id": {"value": task_id},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
        ],
        "command": {"value": command},
        **extra,
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
