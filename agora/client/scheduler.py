"""The scheduler driver: one framework's subscription to the master (reference §2).

    driver = SchedulerDriver("127.0.0.1:5050", FrameworkInfo(name="hello"))
    async with driver:
        async for event in driver.events():
            if event.type == "OFFERS": ...

The driver keeps the subscription alive: a broken or silent stream (about five missed
heartbeats) is re-subscribed with exponential backoff under the framework id it got, a 307
moves it to the leading master, a 503 is retried. Calls are methods; they travel over a pool
of keep-alive connections, so many can be in flight at once. Status updates that carry a uuid
are acknowledged automatically after the callbacks saw them, unless `auto_acknowledge=False`,
in which case the framework calls `acknowledge_update(status)` itself.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import uuid as uuid_module
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from agora.client.backoff import Backoff
from agora.client.http import (
    Connection,
    HttpError,
    HttpPool,
    Response,
    redirect_target,
    split_address,
)
from agora.client.stream import StreamError, encode, open_stream, records
from agora.client.types import Event, FrameworkInfo, Json, id_json, launch
from agora.zookeeper.leader import LeaderAddress, is_zk_url

log = logging.getLogger("agora.client.scheduler")

SCHEDULER_PATH = "/api/v1/scheduler"
EventCallback = Callable[[Event], Awaitable[None] | None]
_DONE = object()


class SchedulerError(Exception):
    """The framework cannot go on: the master refused it (ERROR event, 4xx on SUBSCRIBE)."""


class CallError(Exception):
    """A call was refused (e.g. 400 with the master's reason)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if message else str(status))
        self.status = status
        self.message = message


class SchedulerDriver:
    def __init__(
        self,
        master: str,
        framework: FrameworkInfo | Mapping[str, Any],
        *,
        on_event: EventCallback | None = None,
        auto_acknowledge: bool = True,
        suppressed_roles: Sequence[str] = (),
        missed_heartbeats: float = 5.0,
        backoff: Backoff | None = None,
        pool_size: int = 8,
        call_timeout_s: float = 75.0,
        subscribe_timeout_s: float = 30.0,
    ) -> None:
        # A zk:// master: follow whichever master ZooKeeper says leads.
        self._leader = LeaderAddress(master) if is_zk_url(master) else None
        self._master = ("", 0) if self._leader is not None else split_address(master)
        self._stream_connection: Connection | None = None
        info = framework.to_json() if isinstance(framework, FrameworkInfo) else dict(framework)
        self._framework_info: Json = info
        self.framework_id: str | None = info.get("id", {}).get("value")
        self.stream_id: str | None = None
        self.master_info: Mapping[str, Any] = {}
        self.heartbeat_interval_s = 15.0
        self.auto_acknowledge = auto_acknowledge
        self.error: SchedulerError | None = None
        self.subscriptions = 0  # SUBSCRIBED events seen (1 + re-subscriptions)
        self._suppressed_roles = list(suppressed_roles)
        self._missed_heartbeats = missed_heartbeats
        self._backoff = backoff or Backoff(initial_s=0.1, max_s=15.0)
        self._pool_size = pool_size
        self._call_timeout_s = call_timeout_s
        self._subscribe_timeout_s = subscribe_timeout_s
        self._pool = HttpPool(*self._master, size=pool_size, request_timeout_s=call_timeout_s)
        self._callbacks: dict[str | None, list[EventCallback]] = {}
        if on_event is not None:
            self._callbacks[None] = [on_event]
        self._queues: list[asyncio.Queue[Event | object]] = []
        self._connected = asyncio.Event()
        self._finished = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def master(self) -> str:
        """The master's `host:port` (the zk:// URL given, until a leader is found)."""
        if self._leader is not None and not self._master[0]:
            return self._leader.master
        return f"{self._master[0]}:{self._master[1]}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        if self._run_task is None:
            self._run_task = asyncio.create_task(self._run(), name="agora-scheduler-driver")

    async def wait_subscribed(self, timeout_s: float = 30.0) -> str:
        """Wait for SUBSCRIBED; returns the framework id. Raises SchedulerError if refused."""
        self.start()
        connected = asyncio.ensure_future(self._connected.wait())
        finished = asyncio.ensure_future(self._finished.wait())
        try:
            await asyncio.wait(
                {connected, finished}, timeout=timeout_s, return_when="FIRST_COMPLETED"
            )
        finally:
            connected.cancel()
            finished.cancel()
        if self.error is not None:
            raise self.error
        if not self._connected.is_set() or self.framework_id is None:
            raise TimeoutError(f"not subscribed to {self.master} within {timeout_s:g}s")
        return self.framework_id

    async def stop(self, *, teardown: bool = False, failover: bool = False) -> None:
        """Stop the driver. `teardown` removes the framework (kills its tasks); otherwise
        the master keeps it for its failover timeout so a new driver may take it over."""
        del failover  # closing the stream is the failover; kept for pymesos-like call sites
        if teardown and self.framework_id is not None and self._connected.is_set():
            self._stopping = True
            try:
                await self.teardown()
            except (CallError, HttpError) as error:
                log.warning("TEARDOWN failed: %s", error)
        self._stopping = True
        if self._background:
            await asyncio.wait(set(self._background), timeout=5.0)
        if self._run_task is not None:
            self._run_task.cancel()
            await asyncio.gather(self._run_task, return_exceptions=True)
        self._finish()
        await self._pool.close()
        if self._leader is not None:
            await self._leader.close()

    async def join(self) -> None:
        """Wait until the driver stops (stop() or a fatal error); re-raises the error."""
        await self._finished.wait()
        if self.error is not None:
            raise self.error

    async def __aenter__(self) -> SchedulerDriver:
        self.start()
        await self.wait_subscribed(self._subscribe_timeout_s)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ events

    def on(self, event_type: str | None, callback: EventCallback) -> None:
        """Call `callback(event)` for each event of `event_type` (None: every event).
        Callbacks run in stream order; a coroutine callback is awaited before the next event."""
        self._callbacks.setdefault(event_type, []).append(callback)

    async def events(self) -> AsyncIterator[Event]:
        """Every event from now on, until the driver stops (re-raises a fatal error)."""
        queue: asyncio.Queue[Event | object] = asyncio.Queue()
        self._queues.append(queue)
        self.start()
        try:
            while True:
                if self._finished.is_set() and queue.empty():
                    break
                item = await queue.get()
                if item is _DONE:
                    break
                assert isinstance(item, Event)
                yield item
        finally:
            self._queues.remove(queue)
        if self.error is not None:
            raise self.error

    # ------------------------------------------------------------------ the stream

    def _finish(self) -> None:
        self._connected.clear()
        if not self._finished.is_set():
            self._finished.set()
            for queue in self._queues:
                queue.put_nowait(_DONE)

    async def _run(self) -> None:
        if self._leader is not None:
            self._leader.add_listener(self._on_leader)
            await self._leader.start()
        try:
            while not self._stopping:
                try:
                    if self._leader is not None:
                        self._move_to(await self._leader.wait())
                    await self._subscribe_once()
                except SchedulerError as error:
                    self.error = error
                    log.error("framework %s stopped: %s", self.framework_id, error)
                    return
                except (HttpError, StreamError, OSError) as error:
                    log.info("scheduler stream to %s lost: %s", self.master, error)
                self._connected.clear()
                self.stream_id = None
                if self.stopping:
                    return
                await asyncio.sleep(self._backoff.next_delay_s())
        finally:
            self._finish()

    def _subscribe_body(self) -> bytes:
        info = dict(self._framework_info)
        body: Json = {
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": info, "suppressed_roles": self._suppressed_roles},
        }
        if self.framework_id is not None:
            info["id"] = id_json(self.framework_id)
            body["framework_id"] = id_json(self.framework_id)
        return encode(body)

    def _idle_timeout_s(self) -> float:
        if not self._connected.is_set():
            return self._subscribe_timeout_s
        return max(1.0, self._missed_heartbeats * self.heartbeat_interval_s)

    async def _subscribe_once(self) -> None:
        host, port = self._master
        connection, head = await open_stream(
            host, port, SCHEDULER_PATH, self._subscribe_body(), timeout_s=self._subscribe_timeout_s
        )
        self._stream_connection = connection
        try:
            if head.status in (301, 302, 307, 308):
                self._move_to(redirect_target(head.headers.get("location", ""), self._master))
                return
            if head.status == 503:
                raise HttpError(f"master {self.master} unavailable: {head.text()}")
            if head.status != 200:
                raise SchedulerError(f"SUBSCRIBE refused ({head.status}): {head.text()}")
            self.stream_id = head.headers.get("mesos-stream-id")
            async for record in records(connection, head, self._idle_timeout_s):
                await self._dispatch(Event.from_json(record))
        finally:
            self._stream_connection = None
            connection.close()

    def _on_leader(self, address: tuple[str, int] | None) -> None:
        """ZooKeeper names another leader (or none): leave the old master's stream; the
        run loop re-subscribes with the new one."""
        if address is not None:
            self._move_to(address)
        if self._stream_connection is not None:
            self._stream_connection.close()

    def _move_to(self, address: tuple[str, int]) -> None:
        if address != self._master:
            log.info("following the leading master to %s:%d", *address)
            old = self._pool
            self._master = address
            self._pool = HttpPool(
                *address, size=self._pool_size, request_timeout_s=self._call_timeout_s
            )
            task = asyncio.ensure_future(old.close())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _dispatch(self, event: Event) -> None:
        kind = event.type
        if kind == "SUBSCRIBED":
            self.framework_id = str(event.data["framework_id"]["value"])
            self.heartbeat_interval_s = float(event.data.get("heartbeat_interval_seconds", 15.0))
            self.master_info = event.data.get("master_info", {})
            self.subscriptions += 1
            self._backoff.reset()
            self._connected.set()
        await self._deliver(event)
        if kind == "ERROR":
            raise SchedulerError(event.message or "the master sent ERROR")
        if kind == "UPDATE" and self.auto_acknowledge and event.status.get("uuid"):
            self._spawn(self.acknowledge_update(event.status))

    async def _deliver(self, event: Event) -> None:
        for key in (event.type, None):
            for callback in self._callbacks.get(key, ()):
                try:
                    result = callback(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("%s callback failed", event.type)
        for queue in self._queues:
            queue.put_nowait(event)

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("background call failed: %s", error)

    # ------------------------------------------------------------------ calls

    async def call(self, body: Json) -> Response:
        """Send one call (framework id and stream id are filled in); 202/200 or CallError."""
        if self.framework_id is None or not self._connected.is_set():
            await self.wait_subscribed(self._call_timeout_s)
        body["framework_id"] = {"value": self.framework_id}
        payload = encode(body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._call_timeout_s
        backoff = Backoff(initial_s=0.05, max_s=2.0)
        while True:
            headers = {"Mesos-Stream-Id": self.stream_id or ""}
            response = await self._pool.request("POST", SCHEDULER_PATH, payload, headers)
            status = response.status
            if status in (200, 202):
                return response
            if status in (301, 302, 307, 308):
                self._move_to(redirect_target(response.headers.get("location", ""), self._master))
            elif status != 503:
                raise CallError(status, response.text())
            delay = backoff.next_delay_s()
            if loop.time() + delay > deadline:
                raise CallError(
                    status, f"gave up after {self._call_timeout_s:g}s: {response.text()}"
                )
            await asyncio.sleep(delay)

    async def accept(
        self,
        offer_ids: Iterable[str],
        operations: Sequence[Json],
        *,
        refuse_seconds: float | None = None,
    ) -> None:
        accept: Json = {
            "offer_ids": [id_json(o) for o in offer_ids],
            "operations": list(operations),
        }
        if refuse_seconds is not None:
            accept["filters"] = {"refuse_seconds": refuse_seconds}
        await self.call({"type": "ACCEPT", "accept": accept})

    async def launch(
        self,
        offer_ids: Iterable[str],
        tasks: Sequence[Json],
        *,
        refuse_seconds: float | None = None,
    ) -> None:
        """ACCEPT the offers with one LAUNCH of `tasks` (TaskInfo dicts)."""
        await self.accept(offer_ids, [launch(tasks)], refuse_seconds=refuse_seconds)

    async def decline(
        self, offer_ids: Iterable[str], *, refuse_seconds: float | None = None
    ) -> None:
        decline: Json = {"offer_ids": [id_json(o) for o in offer_ids]}
        if refuse_seconds is not None:
            decline["filters"] = {"refuse_seconds": refuse_seconds}
        await self.call({"type": "DECLINE", "decline": decline})

    async def revive(self, roles: Sequence[str] = ()) -> None:
        await self.call({"type": "REVIVE", "revive": {"roles": list(roles)}})

    async def suppress(self, roles: Sequence[str] = ()) -> None:
        await self.call({"type": "SUPPRESS", "suppress": {"roles": list(roles)}})

    async def kill(
        self, task_id: str, agent_id: str | None = None, *, grace_period_s: float | None = None
    ) -> None:
        kill: Json = {"task_id": id_json(task_id)}
        if agent_id is not None:
            kill["agent_id"] = id_json(agent_id)
        if grace_period_s is not None:
            kill["kill_policy"] = {"grace_period": {"nanoseconds": round(grace_period_s * 1e9)}}
        await self.call({"type": "KILL", "kill": kill})

    async def shutdown(self, executor_id: str, agent_id: str) -> None:
        await self.call(
            {
                "type": "SHUTDOWN",
                "shutdown": {"executor_id": id_json(executor_id), "agent_id": id_json(agent_id)},
            }
        )

    async def acknowledge(self, agent_id: str, task_id: str, uuid: str | bytes) -> None:
        """ACKNOWLEDGE one status update; `uuid` is its base64 text or its 16 bytes."""
        text = base64.b64encode(uuid).decode("ascii") if isinstance(uuid, bytes) else uuid
        await self.call(
            {
                "type": "ACKNOWLEDGE",
                "acknowledge": {
                    "agent_id": id_json(agent_id),
                    "task_id": id_json(task_id),
                    "uuid": text,
                },
            }
        )

    async def acknowledge_update(self, status: Mapping[str, Any]) -> None:
        """ACKNOWLEDGE the update that carried `status` (no-op for updates without a uuid)."""
        uuid = status.get("uuid")
        agent = status.get("agent_id")
        if not uuid or agent is None:
            return
        await self.acknowledge(agent["value"], status["task_id"]["value"], uuid)

    async def reconcile(self, tasks: Iterable[tuple[str, str | None]] = ()) -> None:
        """RECONCILE (task_id, agent_id) pairs; no pairs asks about every task (implicit)."""
        entries = []
        for task_id, agent_id in tasks:
            entry: Json = {"task_id": id_json(task_id)}
            if agent_id is not None:
                entry["agent_id"] = id_json(agent_id)
            entries.append(entry)
        await self.call({"type": "RECONCILE", "reconcile": {"tasks": entries}})

    async def message(self, agent_id: str, executor_id: str, data: bytes) -> None:
        await self.call(
            {
                "type": "MESSAGE",
                "message": {
                    "agent_id": id_json(agent_id),
                    "executor_id": id_json(executor_id),
                    "data": base64.b64encode(data).decode("ascii"),
                },
            }
        )

    async def teardown(self) -> None:
        self._stopping = True
        await self.call({"type": "TEARDOWN"})

    async def update_framework(
        self,
        framework: FrameworkInfo | Mapping[str, Any],
        *,
        suppressed_roles: Sequence[str] | None = None,
    ) -> None:
        info = framework.to_json() if isinstance(framework, FrameworkInfo) else dict(framework)
        if self.framework_id is not None:
            info["id"] = id_json(self.framework_id)
        if suppressed_roles is not None:
            self._suppressed_roles = list(suppressed_roles)
        await self.call(
            {
                "type": "UPDATE_FRAMEWORK",
                "update_framework": {
                    "framework_info": info,
                    "suppressed_roles": self._suppressed_roles,
                },
            }
        )
        self._framework_info = info


def new_task_id(prefix: str = "task") -> str:
    return f"{prefix}-{uuid_module.uuid4().hex[:12]}"
