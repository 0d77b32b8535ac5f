"""The master's agent-channel WebSocket server (agent_server.py) on a fake transport, in
front of a real MasterService: the upgrade and its refusals, frames to the core and
back, control frames, and the hand-over of every other connection to aiohttp."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable
from typing import Any

from agora.core.master.info import MasterInfo
from agora.master.agent_server import AgentSocket, FrontDoor
from agora.master.registry.memory_store import MemoryStore
from agora.master.service import MasterConfig, MasterService
from agora.testing.swarm import SwarmSpec
from agora.testing.swarm.agent import CAPABILITIES
from agora.wire import agent_channel as channel
from agora.wire import agent_mux as mux
from agora.wire import websocket as wsf


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.9", 4242) if name == "peername" else default

    def take(self) -> bytes:
        out, self.written = bytes(self.written), bytearray()
        return out


KEY = base64.b64encode(os.urandom(16))


def upgrade(**extra: str) -> bytes:
    headers = {
        "Host": "m",
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Key": KEY.decode(),
        "Sec-WebSocket-Version": "13",
        channel.PROTOCOL_HEADER: channel.PROTOCOL_VERSION,
        **extra,
    }
    lines = [f"GET {channel.PATH} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items() if v)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(opcode: int, payload: bytes) -> bytes:
    return wsf.frame(opcode, payload, os.urandom(4))


def server_messages(data: bytes) -> list[wsf.Message]:
    return wsf.FrameReader(masked=False, max_size=1 << 24).feed(data)


def run(
    test: Callable[[MasterService], Awaitable[None]],
    leading: bool = True,
    store: MemoryStore | None = None,
) -> None:
    async def main() -> None:
        service = MasterService(MasterConfig(), master_id="m1")
        service.start(5050)
        if leading:
            await service.lead(store or MemoryStore())
        try:
            await test(service)
        finally:
            await service.stop()

    asyncio.run(main())


async def turns(n: int = 4) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def answered(transport: FakeTransport, timeout_s: float = 5.0) -> None:
    """Until the master has written something back (after the admission's registry write)."""
    async with asyncio.timeout(timeout_s):
        while not transport.written:
            await asyncio.sleep(0.005)


def connected(service: MasterService, request: bytes) -> tuple[AgentSocket, FakeTransport]:
    transport = FakeTransport()
    socket = AgentSocket(service)
    socket.connection_made(transport)
    socket.data_received(request)
    return socket, transport


def test_an_upgrade_is_answered_101_with_the_accept_token():
    async def test(service: MasterService) -> None:
        _, transport = connected(service, upgrade())
        head = transport.take()
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"Sec-WebSocket-Accept: " + wsf.accept_token(KEY) in head
        assert not transport.closed

    run(test)


def test_a_registration_is_answered_in_one_frame():
    async def test(service: MasterService) -> None:
        socket, transport = connected(service, upgrade())
        transport.take()
        info = SwarmSpec().agent_info(1)
        hello = channel.encode_frame([channel.register(info, CAPABILITIES, "v")])
        socket.data_received(client_frame(wsf.OP_BINARY, hello))
        await answered(transport)
        await turns()
        (message,) = server_messages(transport.take())
        kinds = [m["type"] for m in channel.decode_frame(message.payload)]
        assert kinds == ["REGISTERED"]  # the first PING comes one ping interval later
        assert len(service.master.agents) == 1
        socket.connection_lost(None)
        (agent,) = service.master.agents.values()
        assert not agent.connected

    run(test)


def test_a_multiplexed_socket_gives_each_key_its_own_connection():
    async def test(service: MasterService) -> None:
        socket, transport = connected(service, upgrade(**{mux.MUX_HEADER: mux.MUX_VERSION}))
        transport.take()
        spec = SwarmSpec()
        pairs = [(key, channel.register(spec.agent_info(key), CAPABILITIES, "v")) for key in (0, 9)]
        socket.data_received(client_frame(wsf.OP_BINARY, mux.encode_mux_frame(pairs)))
        await answered(transport)
        await turns()
        (message,) = server_messages(transport.take())
        answers = mux.decode_mux_frame(message.payload)
        registered = {key: m["agent_id"] for key, m in answers if m["type"] == "REGISTERED"}
        assert set(registered) == {0, 9} and len(set(registered.values())) == 2
        connections = {a.connection_id for a in service.master.agents.values()}
        assert len(connections) == 2
        # A message the master cannot read detaches that agent only.
        info = {"hostname": "h", "port": 0, "resources": []}
        bad = [(9, {"type": "REGISTER", "agent_info": info})]
        socket.data_received(client_frame(wsf.OP_BINARY, mux.encode_mux_frame(bad)))
        await turns()
        (message,) = server_messages(transport.take())
        ((key, detach),) = mux.decode_mux_frame(message.payload)
        assert key == 9 and mux.is_detach(detach) and "port" in detach["message"]
        await turns()
        agents = {a.info.hostname: a.connected for a in service.master.agents.values()}
        assert agents == {"swarm-0": True, "swarm-9": False}
        # The socket closing disconnects the rest.
        socket.connection_lost(None)
        assert not any(a.connected for a in service.master.agents.values())

    run(test)


def gone_store(*agent_ids: str) -> MemoryStore:
    store = MemoryStore()
    store.records["gone"] = dict.fromkeys(agent_ids, b'{"since": 0}')
    return store


def reregister(spec: SwarmSpec, index: int, agent_id: str) -> dict[str, Any]:
    tasks = spec.tasks(index)
    return channel.reregister(
        agent_id, spec.agent_info(index), CAPABILITIES, "v", tasks, [], spec.framework_infos
    )


def test_an_agent_marked_gone_is_refused_with_the_refusal_close_code():
    async def test(service: MasterService) -> None:
        socket, transport = connected(service, upgrade())
        transport.take()
        hello = channel.encode_frame([reregister(SwarmSpec(), 1, "gone-1")])
        socket.data_received(client_frame(wsf.OP_BINARY, hello))
        await turns()
        (close,) = server_messages(transport.take())
        assert close.opcode == wsf.OP_CLOSE
        assert int.from_bytes(close.payload[:2], "big") == channel.CLOSE_REFUSED

    run(test, store=gone_store("gone-1"))


def test_a_multiplexed_agent_marked_gone_is_detached_as_refused():
    async def test(service: MasterService) -> None:
        socket, transport = connected(service, upgrade(**{mux.MUX_HEADER: mux.MUX_VERSION}))
        transport.take()
        pairs = [(3, reregister(SwarmSpec(), 1, "gone-1"))]
        socket.data_received(client_frame(wsf.OP_BINARY, mux.encode_mux_frame(pairs)))
        await turns()
        (message,) = server_messages(transport.take())
        ((key, detach),) = mux.decode_mux_frame(message.payload)
        assert key == 3 and mux.is_detach(detach) and detach["refused"] is True
        assert not transport.closed  # the socket stays for the others

    run(test, store=gone_store("gone-1"))


def test_control_frames_are_answered():
    async def test(service: MasterService) -> None:
        socket, transport = connected(service, upgrade())
        transport.take()
        socket.data_received(client_frame(wsf.OP_PING, b"hi"))
        assert server_messages(transport.take()) == [(wsf.OP_PONG, b"hi")]
        socket.data_received(client_frame(wsf.OP_CLOSE, wsf.close_payload(1000, "bye")))
        (close,) = server_messages(transport.take())
        assert close.opcode == wsf.OP_CLOSE and transport.closed

    run(test)


def test_a_broken_frame_closes_with_a_protocol_error():
    async def test(service: MasterService) -> None:
        socket, transport = connected(service, upgrade())
        transport.take()
        socket.data_received(wsf.frame(wsf.OP_BINARY, b"unmasked"))
        (close,) = server_messages(transport.take())
        assert close.opcode == wsf.OP_CLOSE and close.payload[:2] == b"\x03\xea"  # 1002

    run(test)


def refusal(request: bytes, leading: bool = True) -> bytes:
    answer = b""

    async def test(service: MasterService) -> None:
        nonlocal answer
        _, transport = connected(service, request)
        answer = transport.take()
        assert transport.closed

    run(test, leading)
    return answer


def test_refusals_say_what_is_wrong():
    assert refusal(upgrade(**{channel.PROTOCOL_HEADER: "9"})).startswith(b"HTTP/1.1 400")
    assert channel.PROTOCOL_HEADER.encode() in refusal(upgrade(**{channel.PROTOCOL_HEADER: ""}))
    assert mux.MUX_HEADER.encode() in refusal(upgrade(**{mux.MUX_HEADER: "7"}))
    assert b"Upgrade: websocket" in refusal(upgrade(Upgrade=""))
    old = refusal(upgrade(**{"Sec-WebSocket-Version": "8"}))
    assert old.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in old
    assert b"Sec-WebSocket-Key" in refusal(upgrade(**{"Sec-WebSocket-Key": "short"}))


def test_a_master_that_does_not_lead_answers_503_or_sends_to_the_leader():
    assert refusal(upgrade(), leading=False).startswith(b"HTTP/1.1 503")

    async def test(service: MasterService) -> None:
        service.leader = MasterInfo(id="m2", hostname="leader.example", port=5055)
        _, transport = connected(service, upgrade())
        answer = transport.take()
        assert answer.startswith(b"HTTP/1.1 307")
        assert f"Location: http://leader.example:5055{channel.PATH}".encode() in answer

    run(test, leading=False)


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data


def test_the_front_door_hands_other_requests_to_http_with_what_it_read():
    async def test(service: MasterService) -> None:
        for request, to_http in [
            (b"GET /master/state HTTP/1.1\r\nHost: m\r\n\r\n", True),
            (b"POST /api/v1/agent HTTP/1.1\r\n\r\n", True),
            (b"GET /api/v1/agent HTTP/1.1\r\n", False),
        ]:
            http = Recorder()
            door = FrontDoor(service, lambda http=http: http)  # type: ignore[misc]
            transport = FakeTransport()
            door.connection_made(transport)
            door.data_received(request[:5])
            assert transport.protocol is None  # not yet: the request line is not whole
            door.data_received(request[5:])
            assert (transport.protocol is http) == to_http
            if to_http:
                assert http.data == request and http.transport is transport
            else:
                assert isinstance(transport.protocol, AgentSocket)

    run(test)
