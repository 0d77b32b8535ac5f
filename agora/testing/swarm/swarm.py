"""A swarm: thousands of simulated agents in one process, on one event loop, each
speaking the real agent channel to a real master over a WebSocket of its own or, with
`agents_per_socket`, over multiplexed WebSockets (agora/wire/agent_mux.py).

    swarm = Swarm.build("127.0.0.1:5050", SwarmSpec(), count=1000)
    await swarm.connect()                 # every disconnected agent connects and says hello
    await swarm.wait_registered(30.0)
    ...                                   # the master fails over; the agents notice
    await swarm.wait_disconnected(30.0)
    await swarm.connect()                 # a new leader is known: re-register with tasks
    await swarm.wait_registered(30.0)
    await swarm.close()

By default the agents reconnect on their own, with the real agent's randomised,
doubling back-off; with `reconnect_backoff_s=None` they wait for `connect()`, as
agents do that learn of a new leader from ZooKeeper, so that a benchmark can start
them all at one instant. At most `max_connecting` handshakes are in flight at a time
(the master's accept backlog is finite, and a dropped SYN costs a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from agora.testing.swarm.agent import Phase, SwarmAgent
from agora.testing.swarm.websocket import OP_BINARY, WebSocketClient, connect
from agora.testing.swarm.workload import SwarmSpec
from agora.wire import agent_channel as channel
from agora.wire import agent_mux as mux
from agora.wire.mesos_json import Json, WireError

_encode = msgspec.msgpack.Encoder().encode
HELLOS_PER_FRAME = 64  # a multiplexed socket's hellos go out in frames of this many


@dataclass(frozen=True)
class SwarmOptions:
    agents_per_socket: int | None = None  # None: a socket per agent; n: multiplexed
    source_ips: tuple[str, ...] = ()  # local addresses to spread connections over
    max_connecting: int = 512
    reconnect_backoff_s: tuple[float, float] | None = (0.5, 10.0)  # None: on connect()


class _Channel:
    """One WebSocket and the agents it carries (one, or many under keys)."""

    def __init__(
        self, swarm: Swarm, agents: list[SwarmAgent], muxed: bool, local_ip: str | None
    ) -> None:
        self.swarm = swarm
        self.agents = agents
        self.muxed = muxed
        self.local_ip = local_ip
        self.client: WebSocketClient | None = None
        self.queued = False
        self.failures = 0  # consecutive failed connection attempts

    @property
    def is_open(self) -> bool:
        return self.client is not None and self.client.is_open

    def send_hellos(self) -> None:
        """Say hello for every carried agent that is not registered or waiting."""
        waiting = [a for a in self.agents if a.phase in (Phase.DISCONNECTED, Phase.CONNECTING)]
        if self.client is None or not waiting:
            return
        if not self.muxed:
            (agent,) = waiting
            self.client.send(_encode([msgspec.Raw(agent.hello())]))
            self.swarm.sent(agent)
            return
        for start in range(0, len(waiting), HELLOS_PER_FRAME):
            chunk = waiting[start : start + HELLOS_PER_FRAME]
            pairs = [(a.key, msgspec.Raw(a.hello())) for a in chunk]
            self.client.send(mux.encode_mux_frame(pairs))
            for agent in chunk:
                self.swarm.sent(agent)

    def on_message(self, opcode: int, payload: bytes) -> None:
        if opcode != OP_BINARY:
            return
        try:
            if self.muxed:
                self._take_pairs(mux.decode_mux_frame(payload))
            else:
                self._take_messages(self.agents[0], channel.decode_frame(payload))
        except WireError:
            if self.client is not None:
                self.client.abort()

    def _take_messages(self, agent: SwarmAgent, messages: list[Mapping[str, Any]]) -> None:
        replies: list[Json] = []
        for message in messages:
            replies.extend(self.swarm.take(agent, message))
        if replies and self.client is not None:
            self.client.send(channel.encode_frame(replies))

    def _take_pairs(self, pairs: list[tuple[int, Mapping[str, Any]]]) -> None:
        replies: list[tuple[int, Json]] = []
        for key, message in pairs:
            if key >= len(self.agents):
                continue
            agent = self.agents[key]
            if mux.is_detach(message):
                self.swarm.lost(agent, refused=bool(message.get("refused")))
                self.swarm.reconnect_later(self)
                continue
            replies.extend((key, reply) for reply in self.swarm.take(agent, message))
        if replies and self.client is not None:
            self.client.send(mux.encode_mux_frame(replies))

    def on_closed(self, reason: str, code: int) -> None:
        self.client = None
        refused = code == channel.CLOSE_REFUSED
        for agent in self.agents:
            self.swarm.lost(agent, refused)
        self.swarm.reconnect_later(self)


class Swarm:
    def __init__(
        self, master: str, agents: list[SwarmAgent], options: SwarmOptions | None = None
    ) -> None:
        self.master = master
        self.host, port = master.rsplit(":", 1)
        self.port = int(port)
        self.agents = agents
        self.options = options or SwarmOptions()
        self.channels = self._channels()
        self.registered = 0  # agents whose last hello was answered
        self.stopped = 0  # agents told to shut down (they stay away)
        self.connect_failures = 0
        self.connect_started_at: float | None = None
        self.connected_at: float | None = None  # all channels of the last connect() open
        self._queue: deque[_Channel] = deque()
        self._changed = asyncio.Event()
        self._rng = random.Random()
        self._closing = False

    @classmethod
    def build(
        cls,
        master: str,
        spec: SwarmSpec,
        count: int,
        first_index: int = 0,
        options: SwarmOptions | None = None,
    ) -> Swarm:
        """`count` agents of `spec`, numbered from `first_index`."""
        agents = [
            SwarmAgent(i, spec.agent_info(i), spec.tasks(i), spec.framework_infos)
            for i in range(first_index, first_index + count)
        ]
        return cls(master, agents, options)

    def _channels(self) -> list[_Channel]:
        per_socket = self.options.agents_per_socket
        ips = self.options.source_ips
        if per_socket is None:
            groups = [[a] for a in self.agents]
        else:
            groups = [
                self.agents[i : i + per_socket] for i in range(0, len(self.agents), per_socket)
            ]
        channels = []
        for n, group in enumerate(groups):
            for key, agent in enumerate(group):
                agent.key = key
            local_ip = ips[n % len(ips)] if ips else None
            channels.append(_Channel(self, group, per_socket is not None, local_ip))
        return channels

    # ------------------------------------------------------------------ agents' side

    def sent(self, agent: SwarmAgent) -> None:
        if agent.phase is Phase.REGISTERED:
            self.registered -= 1
        agent.hello_sent()

    def take(self, agent: SwarmAgent, message: Mapping[str, Any]) -> list[Json]:
        before = agent.phase
        replies = agent.take(message)
        if agent.phase is not before:
            self.registered += (agent.phase is Phase.REGISTERED) - (before is Phase.REGISTERED)
            self.stopped += agent.phase is Phase.STOPPED
        self._changed.set()  # waiters re-check their condition (pings counted, say)
        return replies

    def lost(self, agent: SwarmAgent, refused: bool = False) -> None:
        """The agent's connection ended; `refused`: the master refused its id for good."""
        if agent.phase is Phase.REGISTERED:
            self.registered -= 1
        agent.disconnected(refused)
        self._changed.set()

    def reconnect_later(self, chan: _Channel) -> None:
        backoff = self.options.reconnect_backoff_s
        if backoff is None or self._closing:
            return
        low, high = backoff
        delay = min(high, low * 2 ** min(chan.failures, 16)) * (0.5 + self._rng.random() / 2)
        asyncio.get_running_loop().call_later(delay, self._reconnect, chan)

    def _reconnect(self, chan: _Channel) -> None:
        if self._closing:
            return
        if chan.is_open:
            chan.send_hellos()
        elif not chan.queued:
            self._enqueue(chan)
            self._run_connectors()

    # ------------------------------------------------------------------ driving it

    async def connect(self, master: str | None = None) -> None:
        """Every agent not registered says hello, over its open socket or a new one (to
        `master` from now on, if given: a newly elected leader elsewhere); returns once
        every needed connection was tried (and every hello sent)."""
        if master is not None:
            self.master = master
            self.host, port = master.rsplit(":", 1)
            self.port = int(port)
        started = time.monotonic()
        for chan in self.channels:
            if chan.is_open:
                chan.send_hellos()
            elif not chan.queued:
                self._enqueue(chan)
        await self._run_connectors()
        if all(chan.is_open for chan in self.channels):
            self.connected_at = time.monotonic()
        self.connect_started_at = started

    def _enqueue(self, chan: _Channel) -> None:
        chan.queued = True
        for agent in chan.agents:
            if agent.phase is Phase.DISCONNECTED:
                agent.phase = Phase.CONNECTING
        self._queue.append(chan)

    def _run_connectors(self) -> asyncio.Future[Any]:
        workers = min(self.options.max_connecting, len(self._queue))
        loop = asyncio.get_running_loop()
        return asyncio.gather(*(loop.create_task(self._connector()) for _ in range(workers)))

    async def _connector(self) -> None:
        path = channel.PATH
        base = {channel.PROTOCOL_HEADER: channel.PROTOCOL_VERSION}
        while self._queue and not self._closing:
            chan = self._queue.popleft()
            chan.queued = False
            headers = {**base, mux.MUX_HEADER: mux.MUX_VERSION} if chan.muxed else base
            try:
                chan.client = await connect(
                    self.host,
                    self.port,
                    path,
                    headers,
                    chan.on_message,
                    chan.on_closed,
                    local_ip=chan.local_ip,
                )
            except OSError:
                chan.failures += 1
                self.connect_failures += 1
                for agent in chan.agents:
                    self.lost(agent)
                self.reconnect_later(chan)
                continue
            chan.failures = 0
            chan.send_hellos()

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            message = f"swarm: timed out after {timeout_s:g} s waiting for {what}"
            raise TimeoutError(message) from None

    def active(self) -> int:
        """Agents not told to shut down (counted as they are: waiters ask this often)."""
        return len(self.agents) - self.stopped

    async def wait_registered(self, timeout_s: float) -> None:
        await self.wait_for(
            lambda: self.registered >= self.active(), timeout_s, "every agent to register"
        )

    async def wait_disconnected(self, timeout_s: float) -> None:
        await self.wait_for(
            lambda: self.registered == 0 and not any(c.is_open for c in self.channels),
            timeout_s,
            "every agent to notice the master is gone",
        )

    def disconnect(self, agents: list[SwarmAgent]) -> None:
        """These agents go away: a socket of its own closes; on a multiplexed socket the
        agent detaches (DETACH under its key) and the others stay. They come back as the
        reconnection policy says (or on `connect()`)."""
        for chan in self.channels:
            leaving = [a for a in chan.agents if a in agents and a.phase is Phase.REGISTERED]
            if not leaving or chan.client is None:
                continue
            if not chan.muxed:
                chan.client.close()
                continue
            chan.client.send(mux.encode_mux_frame([(a.key, mux.detach("bye")) for a in leaving]))
            for agent in leaving:
                self.lost(agent)
            self.reconnect_later(chan)

    async def close(self) -> None:
        """Close every socket (the master sees each agent disconnect) and stop."""
        self._closing = True
        for chan in self.channels:
            if chan.client is not None:
                chan.client.close()
        with contextlib.suppress(TimeoutError):
            await self.wait_for(
                lambda: all(c.client is None for c in self.channels), 5.0, "sockets to close"
            )
        for chan in self.channels:
            if chan.client is not None:
                chan.client.abort()

    # ------------------------------------------------------------------ figures

    def timings(self) -> dict[str, float | int | None]:
        """When the last round of hellos went out and was answered (time.monotonic(),
        comparable across processes on one host) and the answer latency."""
        sent = [a.hello_sent_at for a in self.agents if a.hello_sent_at is not None]
        acked = [a.acked_at for a in self.agents if a.acked_at is not None]
        latencies = sorted(
            a.acked_at - a.hello_sent_at
            for a in self.agents
            if a.acked_at is not None and a.hello_sent_at is not None
        )
        return {
            "agents": len(self.agents),
            "registered": self.registered,
            "sockets": len(self.channels),
            "connect_failures": self.connect_failures,
            "first_sent": min(sent, default=None),
            "last_sent": max(sent, default=None),
            "first_acked": min(acked, default=None),
            "last_acked": max(acked, default=None),
            "median_acked": statistics.median(acked) if acked else None,
            "connected_at": self.connected_at,
            "latency_s_p50": statistics.median(latencies) if latencies else None,
            "latency_s_p99": latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
            "pings": sum(a.pings for a in self.agents),
        }
