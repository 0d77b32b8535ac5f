"""Agents' connections to the master: one agent per socket (the plain channel,
agora/wire/agent_channel.py) or many (the multiplexed channel, agora/wire/agent_mux.py).

Either way each agent gets a link with a connection id of its own, so the master core
sees the same events (RegisterAgent, ReregisterAgent, AgentDisconnected...) whichever
way an agent is connected. A message the master cannot read ends that agent's
connection (its socket, or its key on a multiplexed socket); a multiplexed frame that
is not an array of pairs ends the whole socket.

The WebSocket itself (upgrade, frames, close) is agent_server.py's; what it needs from
here is a `Channel` to hand each data message to, and what this needs from it is a
`FrameSink` to write frames to. Writes are batched per link: everything queued for a
link in a burst leaves as one frame, one loop turn after the first message. On
loopback each write also runs the peer's receive path and wakes it: the costliest part
of a small message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

import msgspec

from agora.master.service import Link, MasterService
from agora.wire import agent_channel as channel
from agora.wire import agent_mux as mux
from agora.wire import websocket as wsf
from agora.wire.mesos_json import Json, WireError
from agora.wire.scheduler import decode_json

log = logging.getLogger("agora.master")
T = TypeVar("T")

# What a bad message raises on its way to a core event (the decoders check shapes as
# they go rather than validating everything up front).
BAD_MESSAGE = (WireError, KeyError, TypeError, AttributeError, ValueError)


class FrameSink(Protocol):
    """The socket side of a channel: sends one binary message, or closes (after what
    was sent) with a close code and a reason the peer sees."""

    def send(self, payload: bytes) -> None: ...

    def close(self, reason: str, code: int = wsf.CLOSE_NORMAL) -> None: ...


class Channel(Protocol):
    """What reads one agent socket: each data message, then the end of the socket."""

    def take(self, data: bytes | str) -> bool:
        """Handle one message; False once the socket must close."""
        ...

    def ended(self) -> None: ...


def open_channel(service: MasterService, sink: FrameSink, peer_ip: str, muxed: bool) -> Channel:
    if muxed:
        return MuxSocket(service, sink, peer_ip)
    return OneAgent(service, sink, peer_ip)


def take_message(service: MasterService, link: Link, message: msgspec.Raw | bytes) -> None:
    """Hand one agent message to the core (raises one of BAD_MESSAGE if unreadable)."""
    event = channel.master_event(message, link.connection_id, link.agent_id)
    if event is None:
        return
    if service.superseded(event):
        log.info(
            "ignoring a stale registration on %s (the agent has a newer one)", link.connection_id
        )
        link.close("superseded by a newer connection of this agent")
        return
    service.dispatch(event)


class _Batcher(Generic[T]):
    """Queued messages, flushed once a loop turn after the first (see the module
    docstring) by `flush(batch)`."""

    def __init__(self, flush: Callable[[list[T]], None]) -> None:
        self._flush = flush
        self._queued: list[T] = []
        self._armed = False

    def push(self, item: T) -> None:
        self._queued.append(item)
        if not self._armed:
            self._armed = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        self._armed = False
        batch, self._queued = self._queued, []
        if batch:  # (drained meanwhile by a close)
            self._flush(batch)

    def drain(self) -> None:
        """Flush now what is queued (before closing)."""
        if self._queued:
            batch, self._queued = self._queued, []
            self._flush(batch)


# ------------------------------------------------------------- one agent per socket


class AgentLink:
    """One agent on a socket of its own."""

    def __init__(self, connection_id: str, sink: FrameSink, peer_ip: str) -> None:
        self.connection_id = connection_id
        self.sink = sink
        self.peer_ip = peer_ip
        self.agent_id: str | None = None
        self.closing = False
        self._out: _Batcher[Json] = _Batcher(self._send)

    def push(self, message: Json) -> None:
        if not self.closing:
            self._out.push(message)

    def _send(self, batch: list[Json]) -> None:
        if not self.closing:
            self.sink.send(channel.encode_frame(batch))

    def close(self, message: str, refused: bool = False) -> None:
        if not self.closing:
            self._out.drain()
            self.closing = True
            self.sink.close(message, channel.CLOSE_REFUSED if refused else wsf.CLOSE_NORMAL)


class OneAgent:
    def __init__(self, service: MasterService, sink: FrameSink, peer_ip: str) -> None:
        self.service = service
        self.link = AgentLink(service.next_connection_id(), sink, peer_ip)
        service.link_opened(self.link)

    def take(self, data: bytes | str) -> bool:
        link = self.link
        try:
            if isinstance(data, str):
                # JSON text frames (handy by hand): re-encoded to take the one path.
                decoded = decode_json(data.encode(), "agent frame")
                if not isinstance(decoded, list):
                    raise WireError("agent channel frame must be a list of maps")
                messages: Sequence[msgspec.Raw | bytes] = [
                    channel.encode_message(m) for m in decoded
                ]
            else:
                messages = channel.decode_master_frame(data)
            for message in messages:
                take_message(self.service, link, message)
        except BAD_MESSAGE as error:
            log.warning("dropping agent connection %s: %s", link.connection_id, error)
            link.close(f"bad frame: {error}")
            return False
        return True

    def ended(self) -> None:
        self.link.closing = True
        self.service.link_closed(self.link)


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

    def close(self, message: str, refused: bool = False) -> None:
        self.socket.detach(self, message, refused)


class MuxSocket:
    """A multiplexed socket: the agents attached to it by key; what is queued for any of
    them leaves as one frame."""

    def __init__(self, service: MasterService, sink: FrameSink, peer_ip: str) -> None:
        self.service = service
        self.sink = sink
        self.peer_ip = peer_ip
        self.links: dict[int, MuxedLink] = {}
        self.closing = False
        self._out: _Batcher[tuple[int, Json]] = _Batcher(self._send)

    def push(self, key: int, message: Json) -> None:
        if not self.closing:
            self._out.push((key, message))

    def _send(self, batch: list[tuple[int, Json]]) -> None:
        if not self.closing:
            self.sink.send(mux.encode_mux_frame(batch))

    def detach(self, link: MuxedLink, message: str, refused: bool = False) -> None:
        """The master ends one agent's connection: tell it, and forget its key at once
        (a later message under the key attaches a new connection). The service hears
        of the closing on the next loop turn, as it would from a socket of its own,
        not in the middle of carrying out the commands that closed it."""
        if self.links.get(link.key) is not link:
            return
        del self.links[link.key]
        self.push(link.key, mux.detach(message[:120], refused))
        asyncio.get_running_loop().call_soon(self.service.link_closed, link)

    def close(self, reason: str) -> None:
        if not self.closing:
            self._out.drain()
            self.closing = True
            self.sink.close(reason)

    def take(self, data: bytes | str) -> bool:
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

    def ended(self) -> None:
        """The socket ended: every agent on it is disconnected."""
        self.closing = True
        links, self.links = self.links, {}
        for link in links.values():
            self.service.link_closed(link)
