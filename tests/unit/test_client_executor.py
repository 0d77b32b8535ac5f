"""The executor driver against an in-process fake agent: environment, SUBSCRIBE, updates kept
until ACKNOWLEDGED and resent with the next SUBSCRIBE, callbacks."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp import web

from agora.client import Executor, ExecutorDriver, ExecutorEnvironment, ExecutorError
from agora.wire.recordio import encode_record
from tests.async_wait import until


def record(value: dict[str, Any]) -> bytes:
    return encode_record(json.dumps(value).encode())


TASK = {"name": "t", "task_id": {"value": "t1"}, "agent_id": {"value": "a1"}, "resources": []}


class FakeAgent:
    def __init__(self) -> None:
        self.subscribes: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.streams: list[web.StreamResponse] = []
        self.address = ""
        self._runner: web.AppRunner | None = None
        self.close_first_stream = asyncio.Event()
        self.stopped = asyncio.Event()  # open streams stay open until stop()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["type"] == "UPDATE":
            self.updates.append(body)
            return web.Response(status=202)
        if body["type"] == "MESSAGE":
            self.messages.append(body)
            return web.Response(status=202)
        n = len(self.subscribes)
        self.subscribes.append(body)
        response = web.StreamResponse()
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(record({"type": "SUBSCRIBED", "subscribed": {"executor_info": {}}}))
        self.streams.append(response)
        if n == 0:
            await response.write(record({"type": "LAUNCH", "launch": {"task": TASK}}))
            await self.close_first_stream.wait()
            return response
        await self.stopped.wait()
        return response

    async def send(self, n: int, event: dict[str, Any]) -> None:
        await self.streams[n].write(record(event))

    async def start(self) -> FakeAgent:
        app = web.Application()
        app.router.add_post("/api/v1/executor", self.handle)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.address = f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self.stopped.set()
        assert self._runner is not None
        await self._runner.cleanup()


def test_environment_is_read_like_mesos_sets_it() -> None:
    env = ExecutorEnvironment.from_environ(
        {
            "MESOS_AGENT_ENDPOINT": "127.0.0.1:5051",
            "MESOS_FRAMEWORK_ID": "fw",
            "MESOS_EXECUTOR_ID": "ex",
            "MESOS_CHECKPOINT": "0",
            "MESOS_SUBSCRIPTION_BACKOFF_MAX": "250ms",
            "MESOS_RECOVERY_TIMEOUT": "15mins",
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "5secs",
        }
    )
    assert env.checkpoint is False  # "0" is a string, and false
    assert env.subscription_backoff_max_s == pytest.approx(0.25)
    assert env.recovery_timeout_s == 900 and env.shutdown_grace_period_s == 5
    with pytest.raises(ExecutorError, match="MESOS_EXECUTOR_ID"):
        ExecutorEnvironment.from_environ({"MESOS_AGENT_ENDPOINT": "x:1", "MESOS_FRAMEWORK_ID": "f"})


class Recorder(Executor):
    def __init__(self) -> None:
        self.launched: list[str] = []
        self.killed: list[str] = []
        self.acked: list[str] = []
        self.messages: list[bytes] = []
        self.shutdowns = 0

    async def launch(self, driver: ExecutorDriver, task: Mapping[str, Any]) -> None:
        self.launched.append(task["task_id"]["value"])
        await driver.send_status_update(task["task_id"]["value"], "TASK_RUNNING")

    def kill(self, driver: ExecutorDriver, task_id: str) -> None:
        self.killed.append(task_id)

    def acknowledged(self, driver: ExecutorDriver, task_id: str, uuid: bytes) -> None:
        self.acked.append(task_id)

    def message(self, driver: ExecutorDriver, data: bytes) -> None:
        self.messages.append(data)

    def shutdown(self, driver: ExecutorDriver) -> None:
        self.shutdowns += 1


def test_unacknowledged_tasks_and_updates_are_resent_on_resubscribe() -> None:
    async def main() -> None:
        agent = await FakeAgent().start()
        recorder = Recorder()
        driver = ExecutorDriver(
            recorder,
            ExecutorEnvironment(
                agent_endpoint=agent.address,
                framework_id="fw",
                executor_id="ex",
                checkpoint=True,
                subscription_backoff_max_s=0.05,
            ),
        )
        try:
            await driver.wait_subscribed(5.0)
            await until(lambda: len(agent.updates) == 1)
            status = agent.updates[0]["update"]["status"]
            assert agent.updates[0]["executor_id"] == {"value": "ex"}
            assert agent.updates[0]["framework_id"] == {"value": "fw"}
            assert status["source"] == "SOURCE_EXECUTOR" and status["state"] == "TASK_RUNNING"
            assert len(base64.b64decode(status["uuid"])) == 16 and status["timestamp"] > 0
            assert recorder.launched == ["t1"]
            # The agent goes away before acknowledging: both lists come back with SUBSCRIBE.
            agent.close_first_stream.set()
            await until(lambda: len(agent.subscribes) == 2)
            again = agent.subscribes[1]["subscribe"]
            assert [t["task_id"]["value"] for t in again["unacknowledged_tasks"]] == ["t1"]
            assert [u["status"]["uuid"] for u in again["unacknowledged_updates"]] == [
                status["uuid"]
            ]
            await until(lambda: driver.connected)
            await agent.send(
                1,
                {
                    "type": "ACKNOWLEDGED",
                    "acknowledged": {"task_id": {"value": "t1"}, "uuid": status["uuid"]},
                },
            )
            await agent.send(1, {"type": "KILL", "kill": {"task_id": {"value": "t1"}}})
            await agent.send(1, {"type": "MESSAGE", "message": {"data": "aGk="}})
            await agent.send(1, {"type": "SHUTDOWN"})
            await until(lambda: recorder.shutdowns == 1)
            assert recorder.acked == ["t1"] and recorder.killed == ["t1"]
            assert recorder.messages == [b"hi"]
            assert driver.unacknowledged_tasks == {} and driver.unacknowledged_updates == {}
            assert driver.shutdown_requested
            await driver.send_message(b"to the scheduler")
            assert (
                agent.messages[0]["message"]["data"]
                == base64.b64encode(b"to the scheduler").decode()
            )
        finally:
            await driver.stop()
            await agent.stop()

    asyncio.run(main())


def test_without_checkpointing_a_lost_agent_ends_the_executor() -> None:
    async def main() -> None:
        agent = await FakeAgent().start()
        driver = ExecutorDriver(
            Executor(),
            ExecutorEnvironment(agent_endpoint=agent.address, framework_id="fw", executor_id="ex"),
        )
        try:
            await driver.wait_subscribed(5.0)
            agent.close_first_stream.set()
            with pytest.raises(ExecutorError, match="no checkpointing"):
                await asyncio.wait_for(driver.run(), 5.0)
        finally:
            await driver.stop()
            await agent.stop()

    asyncio.run(main())
