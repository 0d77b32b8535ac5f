"""The scheduler driver against a small in-process fake master (aiohttp): subscription,
automatic acknowledgements, re-subscription, heartbeat timeout, redirects, 503, ERROR."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from agora.client import Backoff, CallError, FrameworkInfo, SchedulerDriver, SchedulerError
from agora.wire.recordio import encode_record
from tests.async_wait import until

UUID_B64 = "AAECAwQFBgcICQoLDA0ODw=="


def record(value: dict[str, Any]) -> bytes:
    return encode_record(json.dumps(value, separators=(",", ":")).encode())


def subscribed(framework_id: str, heartbeat_s: float = 15.0) -> dict[str, Any]:
    return {
        "type": "SUBSCRIBED",
        "subscribed": {
            "framework_id": {"value": framework_id},
            "heartbeat_interval_seconds": heartbeat_s,
        },
    }


class FakeMaster:
    """Scripted: `script(n)` gives the events of the n-th SUBSCRIBE (0-based) and whether
    to keep the stream open afterwards; `before(n)` may answer the SUBSCRIBE itself."""

    def __init__(self) -> None:
        self.subscribes: list[dict[str, Any]] = []
        self.calls: list[tuple[dict[str, Any], str | None]] = []
        self.script: Callable[[int], tuple[list[dict[str, Any]], bool]] = lambda n: (
            [subscribed("fw-1")],
            True,
        )
        self.before: Callable[[int], web.Response | None] = lambda n: None
        self.call_status = 202
        self.address = ""
        self._runner: web.AppRunner | None = None
        self.stopped = asyncio.Event()  # open streams stay open until stop()
        self.streams: list[web.StreamResponse] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["type"] != "SUBSCRIBE":
            self.calls.append((body, request.headers.get("Mesos-Stream-Id")))
            return web.Response(
                status=self.call_status, text="nope" if self.call_status >= 400 else ""
            )
        n = len(self.subscribes)
        self.subscribes.append(body)
        early = self.before(n)
        if early is not None:
            return early
        response = web.StreamResponse(headers={"Mesos-Stream-Id": f"stream-{n}"})
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        events, keep_open = self.script(n)
        for event in events:
            await response.write(record(event))
        if keep_open:
            self.streams.append(response)
            await self.stopped.wait()
        return response

    async def start(self) -> FakeMaster:
        app = web.Application()
        app.router.add_post("/api/v1/scheduler", self.handle)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.address = f"127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self.stopped.set()
        assert self._runner is not None
        await self._runner.cleanup()


def run(test: Callable[[FakeMaster], Awaitable[None]]) -> None:
    async def main() -> None:
        master = await FakeMaster().start()
        try:
            await test(master)
        finally:
            await master.stop()

    asyncio.run(main())


def fast_backoff() -> Backoff:
    return Backoff(initial_s=0.01, max_s=0.05)


def test_subscribes_and_acknowledges_updates_automatically() -> None:
    update = {
        "type": "UPDATE",
        "update": {
            "status": {
                "task_id": {"value": "t1"},
                "state": "TASK_RUNNING",
                "agent_id": {"value": "a1"},
                "uuid": UUID_B64,
            }
        },
    }
    no_uuid = {
        "type": "UPDATE",
        "update": {"status": {"task_id": {"value": "t2"}, "state": "TASK_LOST"}},
    }

    async def test(master: FakeMaster) -> None:
        master.script = lambda n: ([subscribed("fw-1"), update, no_uuid], True)
        seen: list[str] = []
        driver = SchedulerDriver(master.address, FrameworkInfo(name="t", user="u"))
        driver.on("UPDATE", lambda e: seen.append(e.status["state"]))
        async with driver:
            assert driver.framework_id == "fw-1"
            await until(lambda: len(seen) == 2 and len(master.calls) == 1)
        body, stream_id = master.calls[0]
        assert stream_id == "stream-0"
        assert body == {
            "type": "ACKNOWLEDGE",
            "acknowledge": {
                "agent_id": {"value": "a1"},
                "task_id": {"value": "t1"},
                "uuid": UUID_B64,
            },
            "framework_id": {"value": "fw-1"},
        }
        assert master.subscribes[0]["subscribe"]["framework_info"]["name"] == "t"
        assert "framework_id" not in master.subscribes[0]

    run(test)


def test_manual_acknowledgement_sends_nothing_by_itself() -> None:
    update = {
        "type": "UPDATE",
        "update": {
            "status": {
                "task_id": {"value": "t1"},
                "state": "TASK_RUNNING",
                "agent_id": {"value": "a1"},
                "uuid": UUID_B64,
            }
        },
    }

    async def test(master: FakeMaster) -> None:
        master.script = lambda n: ([subscribed("fw-1"), update], True)
        driver = SchedulerDriver(master.address, FrameworkInfo(name="t"), auto_acknowledge=False)
        async with driver:
            events = driver.events()
            await driver.revive()
            assert [c[0]["type"] for c in master.calls] == ["REVIVE"]
            del events

    run(test)


def test_resubscribes_with_its_framework_id_after_the_stream_ends() -> None:
    async def test(master: FakeMaster) -> None:
        master.script = lambda n: ([subscribed("fw-9")], n > 0)
        driver = SchedulerDriver(master.address, FrameworkInfo(name="t"), backoff=fast_backoff())
        driver.start()
        await until(lambda: driver.subscriptions == 2)
        second = master.subscribes[1]
        assert second["framework_id"] == {"value": "fw-9"}
        assert second["subscribe"]["framework_info"]["id"] == {"value": "fw-9"}
        await driver.stop()

    run(test)


def test_silent_stream_counts_as_dead_after_missed_heartbeats() -> None:
    async def test(master: FakeMaster) -> None:
        master.script = lambda n: ([subscribed("fw-1", heartbeat_s=0.05)], True)
        driver = SchedulerDriver(
            master.address, FrameworkInfo(name="t"), missed_heartbeats=5, backoff=fast_backoff()
        )
        driver.start()
        await until(lambda: driver.subscriptions >= 2, timeout_s=5.0)
        await driver.stop()

    run(test)


def test_retries_503_and_follows_a_redirect_to_the_leader() -> None:
    async def test(master: FakeMaster) -> None:
        leader = await FakeMaster().start()
        try:
            master.before = lambda n: (
                web.Response(status=503, text="No leader elected")
                if n == 0
                else web.Response(
                    status=307, headers={"Location": f"//{leader.address}/api/v1/scheduler"}
                )
            )
            driver = SchedulerDriver(
                master.address, FrameworkInfo(name="t"), backoff=fast_backoff()
            )
            async with driver:
                assert driver.master == leader.address
                await driver.suppress(["*"])
            assert len(master.subscribes) == 2 and len(leader.subscribes) == 1
            assert [c[0]["type"] for c in leader.calls] == ["SUPPRESS"]
            assert leader.calls[0][0]["suppress"] == {"roles": ["*"]}
        finally:
            await leader.stop()

    run(test)


def test_error_event_stops_the_driver() -> None:
    async def test(master: FakeMaster) -> None:
        master.script = lambda n: (
            [{"type": "ERROR", "error": {"message": "Framework has been removed"}}],
            False,
        )
        driver = SchedulerDriver(master.address, FrameworkInfo(name="t"), backoff=fast_backoff())
        with pytest.raises(SchedulerError, match="has been removed"):
            await driver.wait_subscribed(5.0)
        with pytest.raises(SchedulerError):
            await driver.join()
        assert len(master.subscribes) == 1
        await driver.stop()

    run(test)


def test_refused_call_raises_with_the_reason() -> None:
    async def test(master: FakeMaster) -> None:
        async with SchedulerDriver(master.address, FrameworkInfo(name="t")) as driver:
            master.call_status = 400
            with pytest.raises(CallError, match="400: nope"):
                await driver.kill("t1", "a1")

    run(test)


def test_events_iterator_sees_the_stream_in_order() -> None:
    offers = {"type": "OFFERS", "offers": {"offers": [{"id": {"value": "o1"}}]}}

    async def test(master: FakeMaster) -> None:
        master.script = lambda n: ([subscribed("fw-1"), offers, {"type": "HEARTBEAT"}], True)
        driver = SchedulerDriver(master.address, FrameworkInfo(name="t"))
        seen: list[str] = []
        async for event in driver.events():
            seen.append(event.type)
            if event.type == "OFFERS":
                assert event.offers[0]["id"]["value"] == "o1"
            if event.type == "HEARTBEAT":
                await driver.decline(["o1"], refuse_seconds=10)
                break
        assert seen == ["SUBSCRIBED", "OFFERS", "HEARTBEAT"]
        assert master.calls[0][0]["decline"] == {
            "offer_ids": [{"value": "o1"}],
            "filters": {"refuse_seconds": 10},
        }
        await driver.stop()

    run(test)
