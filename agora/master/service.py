"""The master's I/O shell: owns the master core while this master leads, feeds it
events from HTTP calls, agent frames and timers, and carries out the commands it returns.

Responses to a call (`Respond`, `OpenStream`, `RefuseSubscription`) go back to the
handler that made the call; everything else is carried out here: records queued on
framework streams, messages queued on agent links, one timer armed at the core's next
deadline. Output is batched per connection: a burst of events costs one write each.
Registry writes go through the Registrar, which holds later commands until they are
durable.

Leadership: `lead(store)` loads the registry and starts a core (a single master does so
at start; with ZooKeeper, when elected); `abdicate()` drops the core and every
connection at once (the store failed, or the ZooKeeper candidacy or session was lost).
While not leading, handlers answer 307 to the known leader or 503 (see app.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.core import MasterCore
from agora.core.master.info import MasterInfo
from agora.core.master.model import MasterOptions
from agora.core.seeded import seeded
from agora.master.operator_events import OperatorEvents
from agora.master.registrar import Answers, Registrar
from agora.master.registry.records import registry_from_records
from agora.master.registry.store import Store, StoreError
from agora.master.views import ServiceInfo
from agora.runtime.gc_tuning import CollectionHold
from agora.runtime.outbox import Outbox
from agora.wire import agent_channel as channel
from agora.wire.mesos_json import Json, resource_format
from agora.wire.recordio import encode_record
from agora.wire.scheduler import HEARTBEAT, encode_json, error_record, event_to_json

log = logging.getLogger("agora.master")

_HEARTBEAT_RECORD = encode_record(encode_json(HEARTBEAT))
REBUILD_MAX_S = 60.0  # the collector waits at most this long for recovered agents


def opened_before(connection_id: str, other: str) -> bool:
    """Whether connection `connection_id` was accepted before `other` (ids `c<n>`)."""
    return int(connection_id[1:]) < int(other[1:])


class NotLeading(Exception):  # noqa: N818
    """The core was asked for while this master does not lead (handlers answer 307 to
    `leader`, or 503 when none is known)."""

    def __init__(self, leader: MasterInfo | None) -> None:
        super().__init__("this master is not the leader")
        self.leader = leader


class FrameworkStream(Outbox):
    """A framework's SUBSCRIBE response. `closed` means the master ended it, so no
    FrameworkDisconnected follows."""

    def __init__(self, framework_id: str, stream_id: str) -> None:
        super().__init__()
        self.framework_id = framework_id
        self.stream_id = stream_id

    def close(self, error: str | None = None) -> None:
        if error is not None:
            self.push(encode_record(encode_json(error_record(error))))
        super().close()


class Link(Protocol):
    """One agent's connection as the service sees it: a socket of its own or one key on
    a multiplexed socket (agora/master/agent_socket.py)."""

    connection_id: str
    peer_ip: str
    agent_id: str | None

    def push(self, message: Json) -> None: ...

    def close(self, message: str, refused: bool = False) -> None:
        """Close after what is queued; `refused` tells the agent its id is refused for
        good (channel.CLOSE_REFUSED), anything else that it may connect again."""
        ...


@dataclass
class MasterConfig:
    ip: str = "127.0.0.1"
    port: int = 5050
    hostname: str | None = None
    work_dir: str = ""
    registry: str = "sqlite"  # sqlite | in_memory | zookeeper (with --zk)
    zk: str | None = None  # zk://host:port,.../path: HA with leader election
    zk_session_timeout_s: float = 10.0
    options: MasterOptions = field(default_factory=MasterOptions)
    flags: dict[str, str] = field(default_factory=dict)


class MasterService:
    def __init__(self, config: MasterConfig, master_id: str | None = None) -> None:
        self.config = config
        self.master_id = master_id or str(uuid.uuid4())
        self.info = MasterInfo(id=self.master_id, ip=config.ip, port=config.port)
        self.core: MasterCore | None = None
        self.registrar: Registrar | None = None
        # The leader as last seen (this master while it leads); None: no leader known.
        self.leader: MasterInfo | None = None
        self.on_abdicate: list[Callable[[str], None]] = []
        self.streams: dict[str, FrameworkStream] = {}
        self.links: dict[str, Link] = {}
        self.links_by_agent: dict[str, Link] = {}
        self.agent_ips: dict[str, str] = {}
        self.operator_events = OperatorEvents()
        self.start_time = time.time()
        self.elected_time: float | None = None
        self._request_ids = itertools.count(1)
        self._connection_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._heartbeats: asyncio.Task[None] | None = None
        self._rebuilding: CollectionHold | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self, port: int) -> None:
        """Fix this master's identity once the listening port is known."""
        hostname = self.config.hostname or self.config.ip
        self.info = MasterInfo(id=self.master_id, ip=self.config.ip, port=port, hostname=hostname)

    @property
    def leading(self) -> bool:
        return self.core is not None

    async def lead(self, store: Store, still_leading: Callable[[], bool] = lambda: True) -> None:
        """Become the leader: recover from the registry in `store`, then serve (unless
        `still_leading()` says the election was lost while the registry was read)."""
        registry = registry_from_records(await store.load())
        if not still_leading() or self.core is not None:
            return
        self.core = MasterCore(
            self.info, self.config.options, seeded(int.from_bytes(os.urandom(8)))
        )
        self.registrar = Registrar(store, self._carry_out_all, self._store_failed)
        self.leader = self.info
        self.elected_time = time.time()
        self.dispatch(ev.RegistryRecovered(registry=registry))
        if self.core.recovered_agents:
            # Every admitted agent is about to re-register at once (see CollectionHold).
            self._rebuilding = CollectionHold(REBUILD_MAX_S)
        self._heartbeats = asyncio.get_running_loop().create_task(self._send_heartbeats())
        log.info(
            "leading with %d agents, %d unreachable and %d gone in the registry",
            len(registry.agents),
            len(registry.unreachable),
            len(registry.gone),
        )

    def abdicate(self, why: str) -> None:
        """Stop acting as leader at once: no more writes, answers or offers."""
        if self.core is None:
            return
        log.warning("no longer leading: %s", why)
        if self.registrar is not None:
            self.registrar.abandon()
        self.core = None
        self.registrar = None
        if self.leader is not None and self.leader.id == self.info.id:
            self.leader = None
        self.elected_time = None
        self._stop_serving("master is no longer the leader")
        for callback in self.on_abdicate:
            callback(why)

    def _store_failed(self, error: StoreError) -> None:
        self.abdicate(f"the registry failed: {error}")

    def _stop_serving(self, why: str) -> None:
        if self._rebuilding is not None:
            self._rebuilding.release()
            self._rebuilding = None
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            self._heartbeats = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
        for stream in list(self.streams.values()):
            stream.close()
        self.streams.clear()
        for link in list(self.links.values()):
            link.close(why)
        self.links_by_agent.clear()
        for subscriber in list(self.operator_events.subscribers):
            subscriber.close()

    async def stop(self) -> None:
        registrar = self.registrar
        self._stop_serving("master shutting down")
        self.core = None
        if registrar is not None:
            registrar.abandon()
            await registrar.store.close()

    def service_info(self) -> ServiceInfo:
        return ServiceInfo(
            start_time=self.start_time,
            elected_time=self.elected_time or self.start_time,
            flags=self.config.flags,
            agent_ips=self.agent_ips,
        )

    @property
    def master(self) -> MasterCore:
        if self.core is None:
            raise NotLeading(self.leader)
        return self.core

    def next_request_id(self) -> str:
        return str(next(self._request_ids))

    def next_connection_id(self) -> str:
        """Ids in the order connections were accepted (see `superseded`)."""
        return f"c{next(self._connection_ids)}"

    def superseded(self, event: ev.MasterEvent) -> bool:
        """A (re-)registration that arrives on a connection older than the one its agent
        is already registered on: written before the agent's newer connection and
        delivered late (TCP delivers what was written before a close). Its report is
        stale: the master must not act on it (it would drop tasks launched since)."""
        core = self.core
        if core is None:
            return False
        if isinstance(event, ev.ReregisterAgent):
            agent = core.agents.get(event.agent_id)
        elif isinstance(event, ev.RegisterAgent):
            agent = core.agent_at(event.info.hostname, event.info.port)
        else:
            return False
        return agent is not None and opened_before(event.connection_id, agent.connection_id)

    # ------------------------------------------------------------------ the core

    def dispatch(self, event: ev.MasterEvent) -> Answers | asyncio.Future[Answers]:
        """Apply one event and carry out its commands (or queue them behind a registry
        write); the answers to the caller, or a future of them while queued."""
        core, registrar = self.core, self.registrar
        if core is None or registrar is None:
            return []  # not leading: nothing to apply it to
        commands = core.handle(event, time.time())
        if self._rebuilding is not None and not core.recovered_agents:
            self._rebuilding.release()
            self._rebuilding = None
        if self.operator_events.subscribers:
            self.operator_events.observe(core, event, commands, self.agent_ips)
        if registrar.must_hold(commands):
            for command in commands:
                if isinstance(command, cmd.AcceptAgent):
                    # Routing only: bind the link now so that its closing is noticed.
                    self._carry_out(command)
            answers: Answers | asyncio.Future[Answers] = registrar.hold(commands)
        else:
            answers = self._carry_out_all(commands)
        self._arm_timer()
        return answers

    async def call(self, event: ev.MasterEvent) -> Answers:
        """Dispatch for an HTTP handler: its answers once they may be given. A handler
        cancelled while waiting leaves nothing behind (see `_unclaimed`)."""
        answers = self.dispatch(event)
        if isinstance(answers, list):
            return answers
        try:
            return await asyncio.shield(answers)
        except asyncio.CancelledError:
            if answers.cancelled():  # abandoned: this master stopped leading meanwhile
                raise NotLeading(self.leader) from None
            answers.add_done_callback(self._unclaimed)
            raise

    def _unclaimed(self, answers: asyncio.Future[Answers]) -> None:
        """The caller went away before its answers were ready: a stream it opened has
        no reader, so it ends as if the framework disconnected."""
        if answers.cancelled():
            return
        for answer in answers.result():
            if isinstance(answer, cmd.OpenStream):
                stream = self.streams.get(answer.framework_id)
                if stream is not None and stream.stream_id == answer.stream_id:
                    self.stream_ended(stream)

    def _carry_out_all(self, commands: list[cmd.Command]) -> Answers:
        answers: Answers = []
        for command in commands:
            if isinstance(command, cmd.Respond | cmd.RefuseSubscription):
                answers.append(command)
            elif isinstance(command, cmd.OpenStream):
                self._open_stream(command)
                answers.append(command)
            elif not isinstance(command, cmd.Persist):
                self._carry_out(command)
        return answers

    def _carry_out(self, command: cmd.Command) -> None:
        if isinstance(command, cmd.SendToFramework):
            stream = self.streams.get(command.framework_id)
            if stream is not None:
                stream.push(self._record(command.framework_id, command.event))
                if isinstance(command.event, cmd.Subscribed):
                    # Mesos heartbeats at once: clients that read lines (mesoshttp) see
                    # a record only when the next one starts.
                    stream.push(_HEARTBEAT_RECORD)
        elif isinstance(command, cmd.SendToAgent):
            link = self.links_by_agent.get(command.agent_id)
            if link is not None:
                message = channel.agent_message_to_json(command.message)
                if isinstance(command.message, cmd.AgentRegistered | cmd.AgentReregistered):
                    # How long the agent may hear nothing before it takes this link for
                    # dead (Mesos's total ping timeout, sent in SlaveRegisteredMessage).
                    options = self.config.options
                    timeout_s = options.agent_ping_timeout_s * options.max_agent_ping_timeouts
                    message[channel.PING_TIMEOUT_FIELD] = timeout_s
                link.push(message)
        elif isinstance(command, cmd.CloseStream):
            stream = self.streams.get(command.framework_id)
            if stream is not None and stream.stream_id == command.stream_id:
                del self.streams[command.framework_id]
                stream.close(command.error)
        elif isinstance(command, cmd.AcceptAgent):
            link = self.links.get(command.connection_id)
            if link is not None:
                link.agent_id = command.agent_id
                self.links_by_agent[command.agent_id] = link
                self.agent_ips[command.agent_id] = link.peer_ip
        elif isinstance(command, cmd.DropAgentConnection):
            link = self.links.get(command.connection_id)
            if link is not None:
                link.close(command.message, command.refused)

    def _record(self, framework_id: str, event: cmd.SchedulerEvent) -> bytes:
        framework = self.master.frameworks.get(framework_id)
        capabilities = framework.info.capabilities if framework else frozenset()
        data = event_to_json(event, resource_format(capabilities), self.agent_ips)
        return encode_record(encode_json(data))

    def _open_stream(self, command: cmd.OpenStream) -> None:
        old = self.streams.get(command.framework_id)
        if old is not None:
            old.close()
        self.streams[command.framework_id] = FrameworkStream(
            command.framework_id, command.stream_id
        )

    def stream_ended(self, stream: FrameworkStream) -> None:
        """The framework's connection went away without the master closing it."""
        if self.streams.get(stream.framework_id) is stream:
            del self.streams[stream.framework_id]
            if not stream.closed:
                self.dispatch(
                    ev.FrameworkDisconnected(
                        framework_id=stream.framework_id, stream_id=stream.stream_id
                    )
                )

    # ------------------------------------------------------------------ agents

    def link_opened(self, link: Link) -> None:
        self.links[link.connection_id] = link

    def link_closed(self, link: Link) -> None:
        self.links.pop(link.connection_id, None)
        agent_id = link.agent_id
        if agent_id is not None and self.links_by_agent.get(agent_id) is link:
            del self.links_by_agent[agent_id]
            self.dispatch(ev.AgentDisconnected(agent_id=agent_id, connection_id=link.connection_id))

    # ------------------------------------------------------------------- timers

    def _arm_timer(self) -> None:
        """One timer at the core's next deadline. A timer armed earlier than needed is
        kept: its tick finds less to do and arms the next one. In a burst every event
        moves the deadline ("now", while allocations are pending) a little later, and
        re-arming each time would cost a cancelled timer per event."""
        if self.core is None:
            return
        deadline = self.core.next_deadline()
        armed = self._timer_at
        early_enough = armed is not None and (deadline is None or deadline >= armed)
        if deadline == armed or (self._timer is not None and early_enough):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, deadline - time.time())
            self._timer = loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.dispatch(ev.Tick())
        except Exception:  # a bug must not stop the clock of the whole master
            log.exception("the master core failed on a timer tick; retrying in 1 s")
            self._timer_at = None
            if self.core is not None:
                self._timer = asyncio.get_running_loop().call_later(1.0, self._tick)

    async def _send_heartbeats(self) -> None:
        interval = self.master.options.heartbeat_interval_s
        while True:
            await asyncio.sleep(interval)
            for stream in list(self.streams.values()):
                stream.push(_HEARTBEAT_RECORD)
            self.operator_events.heartbeat()
