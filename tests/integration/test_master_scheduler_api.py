"""The master's scheduler API as clients see it on the wire: framing, headers, status
codes and the messages that name what is wrong; the agent channel spoken by a peer that
uses the real protocol module."""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import re
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agora.wire import agent_channel as channel
from tests.integration.master_process import (
    RawStream,
    call,
    get_json,
    master_process,
    request,
    wait_for,
)

FRAMEWORK = {"user": "tester", "name": "api-test", "failover_timeout": 60}


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with master_process(tmp_path_factory.mktemp("master")) as address:
        yield address


def subscribe(master: str, info: dict[str, Any] | None = None) -> tuple[RawStream, str]:
    stream = RawStream(
        master, {"type": "SUBSCRIBE", "subscribe": {"framework_info": info or FRAMEWORK}}
    )
    assert stream.status == 200
    event = stream.next_event()
    assert event["type"] == "SUBSCRIBED"
    return stream, event["subscribed"]["framework_id"]["value"]


def test_version_is_plain_numbers(master: str) -> None:
    version = get_json(master, "/version")["version"]
    assert tuple(int(x) for x in version.split(".")) >= (1, 0, 0)


def test_subscribe_stream_framing_and_headers(master: str) -> None:
    stream = RawStream(master, {"type": "SUBSCRIBE", "subscribe": {"framework_info": FRAMEWORK}})
    try:
        assert stream.status == 200 and stream.chunked
        assert stream.stream_id and len(stream.stream_id) <= 128
        assert stream.response.getheader("Content-Type", "").startswith("application/json")
        record = stream.next_record()
        assert b"\n" not in record
        event = json.loads(record)
        subscribed = event["subscribed"]
        assert subscribed["framework_id"]["value"]
        assert subscribed["heartbeat_interval_seconds"] == 15.0
        assert subscribed["master_info"]["port"] == int(master.split(":")[1])
        assert subscribed["master_info"]["ip"] == 16777343  # 127.0.0.1, Mesos's byte order
    finally:
        stream.close()


def test_calls_need_the_current_stream_id(master: str) -> None:
    stream, framework_id = subscribe(master)
    try:
        body = {"framework_id": {"value": framework_id}, "type": "REVIVE"}
        status, _, data = request(master, "POST", "/api/v1/scheduler", body)
        assert status == 400 and b"Mesos-Stream-Id" in data
        status, _, data = request(
            master, "POST", "/api/v1/scheduler", body, {"Mesos-Stream-Id": "not-it"}
        )
        assert status == 400
        status, data = call(master, stream, framework_id, {"type": "REVIVE"})
        assert (status, data) == (202, b"")
    finally:
        stream.close()


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        ("{not json", {}, 400, "not valid JSON"),
        ("[1, 2]", {}, 400, "JSON object"),
        ({"type": "FLY"}, {}, 400, "'type'"),
        ({"type": "KILL"}, {}, 400, "'framework_id'"),
        ({"type": "SUBSCRIBE"}, {}, 400, "'subscribe'"),
        ({"type": "SUBSCRIBE", "subscribe": {}}, {}, 400, "framework_info"),
        (
            {"type": "REVIVE", "framework_id": {"value": "nope"}},
            {"Mesos-Stream-Id": "x"},
            400,
            "not",
        ),
        (
            {"type": "SUBSCRIBE", "subscribe": {"framework_info": FRAMEWORK}},
            {"Mesos-Stream-Id": "x"},
            400,
            "Mesos-Stream-Id",
        ),
        ("{}", {"Content-Type": "text/plain"}, 415, "Content-Type"),
        ("{}", {"Accept": "application/x-protobuf"}, 406, "Accept"),
    ],
)
def test_bad_calls_get_a_4xx_naming_the_problem(
    master: str, body: Any, headers: dict[str, str], status: int, words: str
) -> None:
    got, _, data = request(master, "POST", "/api/v1/scheduler", body, headers)
    assert got == status, data
    assert words.lower() in data.decode().lower()


def test_wrong_method_and_missing_content_type(master: str) -> None:
    assert request(master, "GET", "/api/v1/scheduler")[0] == 405
    status, _, data = request(master, "POST", "/api/v1/scheduler", None, {})
    assert status == 400 and b"Content-Type" in data


def test_invalid_framework_info_is_refused_on_the_stream(master: str) -> None:
    info = {"user": "u", "name": "n", "roles": ["a"]}  # roles without MULTI_ROLE
    stream = RawStream(master, {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}})
    try:
        assert stream.status == 200
        event = stream.next_event()
        assert event["type"] == "ERROR" and "MULTI_ROLE" in event["error"]["message"]
        with pytest.raises(EOFError):
            stream.next_record(timeout_s=5)
    finally:
        stream.close()


def test_disconnected_framework_is_removed_after_its_failover_timeout(master: str) -> None:
    stream, framework_id = subscribe(master, {**FRAMEWORK, "failover_timeout": 0})
    stream.close()

    def completed() -> bool:
        state = get_json(master, "/master/frameworks")
        return any(f["id"] == framework_id for f in state["completed_frameworks"])

    wait_for(completed, 10, "the framework to be removed")


def test_resubscribe_fails_over_the_old_stream(master: str) -> None:
    first, framework_id = subscribe(master)
    try:
        info = {**FRAMEWORK, "id": {"value": framework_id}}
        second, again = subscribe(master, info)
        assert again == framework_id and second.stream_id != first.stream_id
        error = first.wait_event("ERROR")
        assert "failed over" in error["error"]["message"]
        second.close()
    finally:
        first.close()


def test_state_endpoints_and_operator_api(master: str) -> None:
    state = get_json(master, "/master/state")
    for key in (
        "version",
        "id",
        "pid",
        "hostname",
        "leader",
        "leader_info",
        "flags",
        "slaves",
        "frameworks",
        "completed_frameworks",
        "activated_slaves",
        "start_time",
    ):
        assert key in state, key
    assert get_json(master, "/state.json")["id"] == state["id"]
    assert "tasks" in get_json(master, "/master/tasks?limit=5&order=asc")
    assert request(master, "GET", "/master/tasks?limit=x")[0] == 400
    assert "roles" in get_json(master, "/master/roles")
    status, headers, body = request(master, "GET", "/master/state?jsonp=cb")
    assert status == 200 and body.startswith(b"cb(") and "javascript" in headers["Content-Type"]
    assert request(master, "GET", "/health")[0] == 200
    status, headers, _ = request(master, "GET", "/master/redirect")
    assert status == 307 and headers["Location"].startswith("//")
    for kind in (
        "GET_HEALTH",
        "GET_VERSION",
        "GET_FLAGS",
        "GET_STATE",
        "GET_AGENTS",
        "GET_FRAMEWORKS",
        "GET_EXECUTORS",
        "GET_TASKS",
        "GET_ROLES",
        "GET_MASTER",
    ):
        for path in ("/api/v1", "/api/v1/operator"):
            status, _, data = request(master, "POST", path, {"type": kind})
            assert status == 200, (kind, data)
            assert json.loads(data)["type"] == kind
    status, _, data = request(master, "POST", "/api/v1", {"type": "LAUNCH_MISSILES"})
    assert status == 400 and b"LAUNCH_MISSILES" in data


# ----------------------------------------------------------- the agent channel


class ProtocolAgent:
    """An agent peer in a thread speaking the real channel protocol (agora.wire)."""

    def __init__(self, master: str, resources: str = "cpus:2;mem:1024") -> None:
        self.master = master
        self.received: queue.Queue[Mapping[str, Any]] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        from agora.core.master.info import AgentInfo
        from agora.core.resource_text import parse_resources

        self.info = AgentInfo(hostname="127.0.0.1", port=5999, resources=parse_resources(resources))
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))
        self.thread.start()
        assert self.ready.wait(10)

    async def _run(self) -> None:
        from agora.core.allocator.state import AGENT_CAPABILITIES

        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                f"ws://{self.master}{channel.PATH}",
                headers={channel.PROTOCOL_HEADER: channel.PROTOCOL_VERSION},
            ) as ws,
        ):
            self.ws = ws
            await ws.send_bytes(
                channel.encode_frame([channel.register(self.info, AGENT_CAPABILITIES, "test")])
            )
            self.ready.set()
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY:
                    break
                for item in channel.decode_frame(message.data):
                    if item["type"] == "PING":
                        await ws.send_bytes(channel.encode_frame([channel.pong()]))
                    self.received.put(item)

    def send(self, *messages: dict[str, Any]) -> None:
        assert self.ws is not None
        frame = channel.encode_frame(list(messages))
        asyncio.run_coroutine_threadsafe(self.ws.send_bytes(frame), self.loop).result(5)

    def expect(self, kind: str, timeout_s: float = 10.0) -> Mapping[str, Any]:
        while True:
            item = self.received.get(timeout=timeout_s)
            if item["type"] == kind:
                return item

    def close(self) -> None:
        if self.ws is not None and self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.ws.close(), self.loop).result(5)
        self.thread.join(10)


def test_offer_launch_update_acknowledge_round_trip(master: str) -> None:
    agent = ProtocolAgent(master)
    stream, framework_id = subscribe(master)
    try:
        agent_id = agent.expect("REGISTERED")["agent_id"]
        offers = stream.wait_event("OFFERS")["offers"]["offers"]
        offer = next(o for o in offers if o["agent_id"]["value"] == agent_id)
        assert offer["url"]["address"]["port"] == 5999
        assert {r["name"] for r in offer["resources"]} >= {"cpus", "mem"}
        assert all(r["role"] == "*" for r in offer["resources"])  # pre-refinement format
        task = {
            "name": "t",
            "task_id": {"value": "t1"},
            "agent_id": {"value": agent_id},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}}],
            "command": {"value": "true"},
        }
        status, data = call(
            master,
            stream,
            framework_id,
            {
                "type": "ACCEPT",
                "accept": {
                    "offer_ids": [offer["id"]],
                    "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}],
                },
            },
        )
        assert status == 202, data
        run = agent.expect("RUN_TASK")
        assert run["task"]["task_id"] == "t1" and run["task"]["raw"]["command"]["value"] == "true"
        update_uuid = uuid.uuid4().bytes
        agent.send(
            channel.status_update(
                framework_id,
                {
                    "task_id": {"value": "t1"},
                    "state": "TASK_RUNNING",
                    "source": "SOURCE_EXECUTOR",
                    "uuid": base64.b64encode(update_uuid).decode(),
                    "agent_id": {"value": agent_id},
                    "timestamp": 1.0,
                },
            )
        )
        update = stream.wait_event("UPDATE")["update"]["status"]
        assert update["state"] == "TASK_RUNNING" and update["agent_id"]["value"] == agent_id
        assert base64.b64decode(update["uuid"]) == update_uuid
        status, data = call(
            master,
            stream,
            framework_id,
            {
                "type": "ACKNOWLEDGE",
                "acknowledge": {
                    "agent_id": {"value": agent_id},
                    "task_id": {"value": "t1"},
                    "uuid": update["uuid"],
                },
            },
        )
        assert status == 202, data
        ack = agent.expect("ACKNOWLEDGE")
        assert ack["task_id"] == "t1" and ack["uuid"] == update_uuid
        tasks = get_json(master, "/master/tasks")["tasks"]
        assert any(t["id"] == "t1" and t["state"] == "TASK_RUNNING" for t in tasks)
    finally:
        stream.close()
        agent.close()


def test_agent_with_a_bad_frame_is_dropped_and_master_keeps_serving(master: str) -> None:
    agent = ProtocolAgent(master)
    try:
        agent.expect("REGISTERED")
        agent.send({"type": "STATUS_UPDATE", "framework_id": 7, "status": "??"})
        wait_for(lambda: not agent.thread.is_alive(), 10, "the master to drop the agent")
    finally:
        agent.close()
    assert request(master, "GET", "/health")[0] == 200


def test_hundreds_of_malformed_requests_leave_the_master_serving(master: str) -> None:
    bodies: list[Any] = [
        "",
        "{",
        "null",
        "[]",
        "1",
        '"x"',
        {"type": None},
        {"type": 3},
        {"type": "ACCEPT", "framework_id": {"value": 1}},
        {"type": "ACCEPT", "framework_id": {"value": "f"}, "accept": []},
        {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": 1}}},
        {"type": "ACKNOWLEDGE", "framework_id": {"value": "f"}, "acknowledge": {"uuid": "***"}},
    ]
    paths = ["/api/v1/scheduler", "/api/v1", "/api/v1/operator", "/master/tasks?limit=-1"]
    count = 0
    for i in range(300):
        body = bodies[i % len(bodies)]
        path = paths[(i // len(bodies)) % len(paths)]
        if path != "/api/v1/scheduler" and isinstance(body, dict) and body.get("subscribe"):
            body = {"type": "SUBSCRIBE_TO_NOTHING"}  # a valid operator SUBSCRIBE streams
        status, _, data = request(
            master, "GET" if "tasks" in path else "POST", path, None if "tasks" in path else body
        )
        assert 400 <= status < 500 or (path == "/api/v1/scheduler" and status == 200), (
            path,
            body,
            status,
            data,
        )
        count += 1
    assert count == 300
    assert request(master, "GET", "/health")[0] == 200
    stream, framework_id = subscribe(master)
    stream.close()
    assert re.match(r"[0-9a-f-]+-\d{4}$", framework_id)


def test_protocol_version_is_checked(master: str, tmp_path: Path) -> None:
    status, _, data = request(master, "GET", channel.PATH, None, {"Upgrade": "websocket"})
    assert status == 400 and channel.PROTOCOL_HEADER.encode() in data
