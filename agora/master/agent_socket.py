"""The agent WebSocket at `/api/v1/agent`: one agent per socket (the plain channel,
agora/wire/agent_channel.py) or many (the multiplexed channel, agora/wire/agent_mux.py).

Either way each agent gets a link with a connection id of its own, so the master core
sees the same events (RegisterAgent, ReregisterAgent, AgentDisconnected...) whichever
way an agent is connected. A message the master cannot read ends that agent's
connection (its socket, or its key on a multiplexed socket); a multiplexed frame that
is not an array of pairs ends the whole socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import msgspec
from aiohttp import WSMsgType, web

from agora.master.scheduler_api import bad_request, service_of
from agora.master.service import AgentLink, Link, MasterService
from agora.wire import agent_channel as channel
from agora.wire import agent_mux as mux
from agora.wire.mesos_json import Json, WireError
from agora.wire.scheduler import decode_json

log = logging.getLogger("agora.master")

MAX_FRAME_BYTES = 256 * 1024 * 1024
# What a bad message raises on its way to a core event (the decoders check shapes as
# they go rather than validating everything up front).
BAD_MESSAGE = (WireError, KeyError, TypeError, AttributeError, ValueError)


async def agent_socket(request: web.Request) -> web.StreamResponse:
    version = request.headers.get(channel.PROTOCOL_HEADER)
    if version != channel.PROTOCOL_VERSION:
        return bad_request(
            f"agent protocol {version!r} is not spoken here "
            f"(send '{channel.PROTOCOL_HEADER}: {channel.PROTOCOL_VERSION}')"
        )
    mux_version = request.headers.get(mux.MUX_HEADER)
    if mux_version is not None and mux_version != mux.MUX_VERSION:
        return bad_request(
            f"multiplexed agent channel {mux_version!r} is not spoken here "
            f"(send '{mux.MUX_HEADER}: {mux.MUX_VERSION}')"
        )
    service = service_of(request)
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    peer_ip = peer[0] if peer else ""
    if mux_version is None:
        await _serve_one(service, ws, peer_ip)
    else:
        await _serve_many(service, ws, peer_ip)
    return ws


def take_message(service: MasterService, link: Link, message: msgspec.Raw | bytes) -> None:
    """Hand one agent message to the core (raises one of BAD_MESSAGE if unreadable)."""
    event = channel.master_event(message, link.connection_id, link.agent_id)
    if event is not None:
        service.dispatch(event)


# ------------------------------------------------------------- one agent per socket


async def _serve_one(service: MasterService, ws: web.WebSocketResponse, peer_ip: str) -> None:
    link = AgentLink(service.next_connection_id(), ws, peer_ip)
    service.link_opened(link)
    writer = asyncio.get_running_loop().create_task(link.run_writer())
    try:
        async for message in ws:
            if message.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                if not _take_frame(service, link, message.data):
                    break
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        writer.cancel()
        service.link_closed(link)
        if not ws.closed:
            await ws.close()


def _take_frame(service: MasterService, link: AgentLink, data: bytes | str) -> bool:
    try:
        if isinstance(data, str):
            # JSON text frames (handy by hand): re-encoded to take the one decoding path.
            decoded = decode_json(data.encode(), "agent frame")
            if not isinstance(decoded, list):
                raise WireError("agent channel frame must be a list of maps")
            messages: Sequence[msgspec.Raw | bytes] = [channel.encode_message(m) for m in decoded]
        else:
            messages = channel.decode_master_frame(data)
        for message in messages:
            take_message(service, link, message)
    except BAD_MESSAGE as error:
        log.warning("dropping agent connection %s: %s", link.connection_id, error)
        link.close(f"bad frame: {error}")
        return False
    return True


# ------------------------------------------------------------- many agents per socket


class MuxedLink:
    """One agent on a multiplexed socket: its messages go out under its key."""

    def __init__(self, connection_id: str, socket: MuxSocket, key: int, peer_ip: str) -> None:
        self.connection_id = connection_id
        self.socket = socket
        self.key = key
        self.peer_ip = peer_ip
        self.agent_id: str | None = None

    def push(self, message: Json) -> None:
        self.socket.push(self.key, message)

    def close(self, message: str) -> None:
        self.socket.detach(self, message)


class MuxSocket:
    """A multiplexed WebSocket: the agents attached to it by key, and one writer that
    sends everything queued for any of them as one frame per event-loop turn."""

    def __init__(self, service: MasterService, ws: web.WebSocketResponse, peer_ip: str) -> None:
        self.service = service
        self.ws = ws
        self.peer_ip = peer_ip
        self.links: dict[int, MuxedLink] = {}
        self.outbox: list[tuple[int, Json]] = []
        self.wake = asyncio.Event()
        self.close_message: str | None = None

    def push(self, key: int, message: Json) -> None:
        self.outbox.append((key, message))
        self.wake.set()

    def detach(self, link: MuxedLink, message: str) -> None:
        """The master ends one agent's connection: tell it, and forget its key at once
        (a later message under the key attaches a new connection). The service hears
        of the closing on the next loop turn, as it would from a socket of its own,
        not in the middle of carrying out the commands that closed it."""
        if self.links.get(link.key) is not link:
            return
        del self.links[link.key]
        self.push(link.key, mux.detach(message[:120]))
        asyncio.get_running_loop().call_soon(self.service.link_closed, link)

    def close(self, message: str) -> None:
        self.close_message = message
        self.wake.set()

    def take_frame(self, data: bytes | str) -> bool:
        """Hand a frame's messages to the core; False once the socket must close."""
        if not self.service.leading:
            self.close("master is no longer the leader")
            return False
        try:
            if isinstance(data, str):
                raise WireError("multiplexed agent frames are binary")
            pairs = mux.decode_mux_pairs(data)
        except WireError as error:
            log.warning("dropping multiplexed agent socket from %s: %s", self.peer_ip, error)
            self.close(f"bad frame: {error}")
            return False
        for key, message in pairs:
            self._take(key, message)
        return True

    def _take(self, key: int, message: msgspec.Raw) -> None:
        link = self.links.get(key)
        if channel.message_type(message) == mux.DETACH:
            if link is not None:
                del self.links[key]
                self.service.link_closed(link)
            return
        if link is None:
            link = MuxedLink(self.service.next_connection_id(), self, key, self.peer_ip)
            self.links[key] = link
            self.service.link_opened(link)
        try:
            take_message(self.service, link, message)
        except BAD_MESSAGE as error:
            log.warning("dropping agent connection %s: %s", link.connection_id, error)
            link.close(f"bad message: {error}")

    def detach_all(self) -> None:
        """The socket ended: every agent on it is disconnected."""
        links, self.links = self.links, {}
        for link in links.values():
            self.service.link_closed(link)

    async def run_writer(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.outbox:
                batch, self.outbox = self.outbox, []
                await self.ws.send_bytes(mux.encode_mux_frame(batch))
            if self.close_message is not None:
                await self.ws.close(message=self.close_message.encode()[:120])
                return


async def _serve_many(service: MasterService, ws: web.WebSocketResponse, peer_ip: str) -> None:
    socket = MuxSocket(service, ws, peer_ip)
    writer = asyncio.get_running_loop().create_task(socket.run_writer())
    try:
        async for message in ws:
            if message.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                if not socket.take_frame(message.data):
                    break
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        socket.detach_all()
        if socket.close_message is not None:
            # Let the writer send what is queued and the close; then it ends itself.
            await asyncio.wait([writer], timeout=5.0)
        writer.cancel()
        if not ws.closed:
            await ws.close()
