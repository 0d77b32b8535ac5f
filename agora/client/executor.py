"""The executor driver: a custom executor's subscription to its agent (reference §3).

    driver = ExecutorDriver(MyExecutor())      # settings from MESOS_* environment variables
    await driver.run()                          # until stop(), or the agent is gone for good

The driver keeps every task it was given until one of the task's updates is acknowledged, and
every update until the agent acknowledges it, and sends both lists again when it re-subscribes
(checkpointing frameworks survive an agent restart this way).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import os
import time
import uuid as uuid_module
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agora.client.backoff import Backoff, parse_duration_s
from agora.client.http import HttpError, HttpPool, split_address
from agora.client.stream import StreamError, encode, open_stream, records
from agora.client.types import Event, Json, id_json

log = logging.getLogger("agora.client.executor")

EXECUTOR_PATH = "/api/v1/executor"


class ExecutorError(Exception):
    """The executor cannot go on (refused by the agent, or the agent is gone for good)."""


@dataclass(frozen=True, slots=True)
class ExecutorEnvironment:
    """What the agent tells an executor through its environment (reference §3.4)."""

    agent_endpoint: str
    framework_id: str
    executor_id: str
    directory: str | None = None
    sandbox: str | None = None
    agent_id: str | None = None
    checkpoint: bool = False
    recovery_timeout_s: float = 15 * 60.0
    subscription_backoff_max_s: float = 2.0
    shutdown_grace_period_s: float = 5.0
    auth_token: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ExecutorEnvironment:
        env = os.environ if environ is None else environ
        missing = [
            name
            for name in ("MESOS_AGENT_ENDPOINT", "MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID")
            if not env.get(name)
        ]
        if missing:
            raise ExecutorError(f"not started by an agent: {', '.join(missing)} not set")

        def duration(name: str, default_s: float) -> float:
            text = env.get(name)
            return default_s if not text else parse_duration_s(text)

        return cls(
            agent_endpoint=env["MESOS_AGENT_ENDPOINT"],
            framework_id=env["MESOS_FRAMEWORK_ID"],
            executor_id=env["MESOS_EXECUTOR_ID"],
            directory=env.get("MESOS_DIRECTORY"),
            sandbox=env.get("MESOS_SANDBOX"),
            agent_id=env.get("MESOS_AGENT_ID") or env.get("MESOS_SLAVE_ID"),
            checkpoint=env.get("MESOS_CHECKPOINT", "0") == "1",
            recovery_timeout_s=duration("MESOS_RECOVERY_TIMEOUT", 15 * 60.0),
            subscription_backoff_max_s=duration("MESOS_SUBSCRIPTION_BACKOFF_MAX", 2.0),
            shutdown_grace_period_s=duration("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", 5.0),
            auth_token=env.get("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"),
        )


class Executor:
    """Override what you need; each method may be a coroutine. Events arrive in order."""

    def subscribed(self, driver: ExecutorDriver, event: Event) -> Awaitable[None] | None:
        return None

    def launch(self, driver: ExecutorDriver, task: Mapping[str, Any]) -> Awaitable[None] | None:
        return None

    def launch_group(
        self, driver: ExecutorDriver, tasks: list[Mapping[str, Any]]
    ) -> Awaitable[None] | None:
        for task in tasks:
            self.launch(driver, task)
        return None

    def kill(self, driver: ExecutorDriver, task_id: str) -> Awaitable[None] | None:
        return None

    def acknowledged(
        self, driver: ExecutorDriver, task_id: str, uuid: bytes
    ) -> Awaitable[None] | None:
        return None

    def message(self, driver: ExecutorDriver, data: bytes) -> Awaitable[None] | None:
        return None

    def shutdown(self, driver: ExecutorDriver) -> Awaitable[None] | None:
        return None

    def error(self, driver: ExecutorDriver, message: str) -> Awaitable[None] | None:
        return None


class ExecutorDriver:
    def __init__(
        self,
        executor: Executor | None = None,
        environment: ExecutorEnvironment | None = None,
        *,
        pool_size: int = 8,
        call_timeout_s: float = 75.0,
    ) -> None:
        self.executor = executor or Executor()
        self.environment = environment or ExecutorEnvironment.from_environ()
        self._agent = split_address(self.environment.agent_endpoint, 5051)
        self._pool = HttpPool(*self._agent, size=pool_size, request_timeout_s=call_timeout_s)
        self._headers: dict[str, str] = {}
        if self.environment.auth_token:
            self._headers["Authorization"] = f"Bearer {self.environment.auth_token}"
        self._ids: Json = {
            "executor_id": id_json(self.environment.executor_id),
            "framework_id": id_json(self.environment.framework_id),
        }
        self.unacknowledged_tasks: dict[str, Mapping[str, Any]] = {}
        self.unacknowledged_updates: dict[bytes, Json] = {}
        self.subscribed_info: Mapping[str, Any] = {}
        self.shutdown_requested = False
        self.error: ExecutorError | None = None
        self._connected = asyncio.Event()
        self._finished = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._callbacks: dict[str, list[Callable[[Event], Awaitable[None] | None]]] = {}

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def on(self, event_type: str, callback: Callable[[Event], Awaitable[None] | None]) -> None:
        """Also call `callback(event)` for each event of this type (after the Executor)."""
        self._callbacks.setdefault(event_type, []).append(callback)

    def start(self) -> None:
        if self._run_task is None:
            self._run_task = asyncio.create_task(self._run(), name="agora-executor-driver")

    async def wait_subscribed(self, timeout_s: float = 30.0) -> None:
        self.start()
        waits = {
            asyncio.ensure_future(self._connected.wait()),
            asyncio.ensure_future(self._finished.wait()),
        }
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when="FIRST_COMPLETED")
        finally:
            for wait in waits:
                wait.cancel()
        if self.error is not None:
            raise self.error
        if not self._connected.is_set():
            raise TimeoutError(f"not subscribed to the agent within {timeout_s:g}s")

    async def run(self) -> None:
        """Run until stop() or until the agent is gone for good (then ExecutorError)."""
        self.start()
        await self._finished.wait()
        if self.error is not None:
            raise self.error

    async def stop(self) -> None:
        self._stopping = True
        if self._run_task is not None:
            self._run_task.cancel()
            await asyncio.gather(self._run_task, return_exceptions=True)
        self._connected.clear()
        self._finished.set()
        await self._pool.close()

    # ------------------------------------------------------------------ calls

    def _status(
        self,
        task_id: str,
        state: str,
        *,
        message: str | None,
        reason: str | None,
        data: bytes | None,
        healthy: bool | None,
        uuid: bytes,
    ) -> Json:
        status: Json = {
            "task_id": id_json(task_id),
            "state": state,
            "source": "SOURCE_EXECUTOR",
            "executor_id": self._ids["executor_id"],
            "timestamp": time.time(),
            "uuid": base64.b64encode(uuid).decode("ascii"),
        }
        if self.environment.agent_id:
            status["agent_id"] = id_json(self.environment.agent_id)
        if message is not None:
            status["message"] = message
        if reason is not None:
            status["reason"] = reason
        if data is not None:
            status["data"] = base64.b64encode(data).decode("ascii")
        if healthy is not None:
            status["healthy"] = healthy
        return status

    async def send_status_update(
        self,
        task_id: str,
        state: str,
        *,
        message: str | None = None,
        reason: str | None = None,
        data: bytes | None = None,
        healthy: bool | None = None,
    ) -> bytes:
        """Send an update (kept until the agent acknowledges it); returns its uuid."""
        if state == "TASK_STAGING":
            raise ValueError("executors may not send TASK_STAGING")
        uuid = uuid_module.uuid4().bytes
        status = self._status(
            task_id,
            state,
            message=message,
            reason=reason,
            data=data,
            healthy=healthy,
            uuid=uuid,
        )
        self.unacknowledged_updates[uuid] = status
        try:
            await self._call({"type": "UPDATE", "update": {"status": status}})
        except HttpError as error:
            # Kept, and sent again with the next SUBSCRIBE.
            log.info("update for %s not delivered yet: %s", task_id, error)
        return uuid

    async def send_message(self, data: bytes) -> None:
        """A framework message to the scheduler (unreliable)."""
        await self._call(
            {"type": "MESSAGE", "message": {"data": base64.b64encode(data).decode("ascii")}}
        )

    async def _call(self, body: Json) -> None:
        body.update(self._ids)
        response = await self._pool.request("POST", EXECUTOR_PATH, encode(body), self._headers)
        if response.status == 400:
            raise ExecutorError(f"{body['type']} invalid: {response.text()}")
        if response.status not in (200, 202):
            # 403 (not subscribed yet) or 503 (agent recovering): sent again on re-subscribe.
            raise HttpError(f"{body['type']} refused ({response.status}): {response.text()}")

    # ------------------------------------------------------------------ the stream

    def _subscribe_body(self) -> bytes:
        subscribe = {
            "unacknowledged_tasks": list(self.unacknowledged_tasks.values()),
            "unacknowledged_updates": [
                {"status": status} for status in self.unacknowledged_updates.values()
            ],
        }
        return encode({"type": "SUBSCRIBE", **self._ids, "subscribe": subscribe})

    async def _run(self) -> None:
        env = self.environment
        backoff = Backoff(initial_s=0.05, max_s=max(0.05, env.subscription_backoff_max_s))
        loop = asyncio.get_running_loop()
        lost_since: float | None = None
        try:
            while not self._stopping:
                try:
                    await self._subscribe_once()
                except ExecutorError as error:
                    self.error = error
                    return
                except (HttpError, StreamError, OSError) as error:
                    log.info("executor stream lost: %s", error)
                was_connected = self._connected.is_set()
                self._connected.clear()
                if self.stopping:
                    return
                if was_connected:
                    backoff.reset()
                    lost_since = loop.time()
                lost_since = lost_since if lost_since is not None else loop.time()
                if not env.checkpoint and was_connected:
                    self.error = ExecutorError("disconnected from the agent (no checkpointing)")
                    return
                if loop.time() - lost_since > env.recovery_timeout_s:
                    self.error = ExecutorError(
                        f"agent gone for more than {env.recovery_timeout_s:g}s"
                    )
                    return
                await asyncio.sleep(backoff.next_delay_s())
        finally:
            self._connected.clear()
            self._finished.set()

    async def _subscribe_once(self) -> None:
        host, port = self._agent
        connection, head = await open_stream(
            host, port, EXECUTOR_PATH, self._subscribe_body(), headers=self._headers or None
        )
        try:
            if head.status == 503:
                raise HttpError(f"agent not ready: {head.text()}")
            if head.status != 200:
                raise ExecutorError(f"SUBSCRIBE refused ({head.status}): {head.text()}")
            async for record in records(connection, head, lambda: None):
                await self._dispatch(Event.from_json(record))
        finally:
            connection.close()

    async def _dispatch(self, event: Event) -> None:
        kind = event.type
        data = event.data
        executor = self.executor
        result: Awaitable[None] | None = None
        if kind == "SUBSCRIBED":
            self.subscribed_info = data
            self._connected.set()
            result = executor.subscribed(self, event)
        elif kind == "LAUNCH":
            task = data["task"]
            self.unacknowledged_tasks[task["task_id"]["value"]] = task
            result = executor.launch(self, task)
        elif kind == "LAUNCH_GROUP":
            tasks = list(data["task_group"]["tasks"])
            for task in tasks:
                self.unacknowledged_tasks[task["task_id"]["value"]] = task
            result = executor.launch_group(self, tasks)
        elif kind == "KILL":
            result = executor.kill(self, data["task_id"]["value"])
        elif kind == "ACKNOWLEDGED":
            task_id = data["task_id"]["value"]
            uuid = base64.b64decode(data["uuid"])
            self.unacknowledged_updates.pop(uuid, None)
            self.unacknowledged_tasks.pop(task_id, None)
            result = executor.acknowledged(self, task_id, uuid)
        elif kind == "MESSAGE":
            result = executor.message(self, base64.b64decode(data.get("data", "")))
        elif kind == "SHUTDOWN":
            self.shutdown_requested = True
            result = executor.shutdown(self)
        elif kind == "ERROR":
            result = executor.error(self, event.message)
        if inspect.isawaitable(result):
            await result
        for callback in self._callbacks.get(kind, ()):
            outcome = callback(event)
            if inspect.isawaitable(outcome):
                await outcome
