"""Leader election and detection with Mesos's ZooKeeper layout.

Every contending master owns one ephemeral sequential znode `<path>/json.info_NNNNNNNNNN`
holding its MasterInfo as compact JSON; the one with the lowest sequence leads. Other children
(`log_replicas`, Agora's `registry`) are ignored. pymesos and mesoshttp find the leader in the
same znodes, so unmodified clients follow an Agora master through failovers.

`Contender` (masters) holds a candidacy and says whether it leads; `Detector` (agents,
scheduler clients, masters for their redirects) reports the current leader's MasterInfo.
Both share a `ZooKeeperSession` and report changes through callbacks run on the event loop.

What a Contender guarantees its owner (`Candidacy`):

1. LEADING is reported only after a read, in the session that owns the znode, showed the
   contender's znode as the lowest `json.info_` child. Sequence numbers only grow, so from then
   on nobody else can lead while that znode exists.
2. SUSPENDED is reported as soon as the session listener hears that the connection dropped:
   at once when the socket closes (a killed server), and within 2/3 of the session timeout of
   the last answer from ZooKeeper for a silent partition. ZooKeeper lets another contender lead
   only after expiring the session, a full session timeout after it last heard from us, so a
   leader that stops acting on SUSPENDED has stopped before a successor can start (given clocks
   that run at similar rates and an event loop that is not stalled for seconds: hence the
   registry store's fencing, which makes ZooKeeper itself refuse a deposed leader's writes).
   The owner must stop acting as leader at once on SUSPENDED.
3. After SUSPENDED comes either LEADING/FOLLOWING again, when the same session reconnected
   (the znode was held throughout, so leadership was never anyone else's: a ZooKeeper node
   failover in an ensemble does not cost the master its leadership), or LOST.
4. LOST is final: the session ended (expired, closed, or unreachable for the session timeout)
   or the znode was deleted or withdrawn. The contender never leads again; contend afresh with
   a new Contender (Mesos's masters exit instead and let a supervisor restart them).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from agora.core.master.info import MasterInfo
from agora.wire.mesos_json import WireError, master_info_from_json, master_info_to_json
from agora.zookeeper.session import (
    ConnectionLossError,
    NoNodeError,
    SessionState,
    ZooKeeperError,
    ZooKeeperSession,
)
from agora.zookeeper.url import validate_path

log = logging.getLogger(__name__)
LABEL = "json.info_"  # Mesos >= 0.24; the sequence suffix is 10 zero-padded digits


def master_info_data(info: MasterInfo) -> bytes:
    """The znode data for `info`: the MasterInfo JSON the HTTP APIs render, compact."""
    return json.dumps(master_info_to_json(info), separators=(",", ":")).encode()


def sequence_of(name: str) -> int | None:
    """The sequence number of a `json.info_NNNNNNNNNN` child, None for any other name."""
    suffix = name[len(LABEL) :]
    if name.startswith(LABEL) and suffix.isdigit():
        return int(suffix)
    return None


def leader_of(children: Sequence[str]) -> str | None:
    """The child that leads: the `json.info_` member with the lowest sequence number."""
    members = [(seq, name) for name in children if (seq := sequence_of(name)) is not None]
    return min(members)[1] if members else None


class _ChildrenFollower:
    """Reads the children of `path` now, after every child change, and after every
    reconnection, and hands each reading to `on_children` (None while `path` is missing).

    Readings are serialized in one task, so `on_children` never runs twice at once. kazoo
    drops every watch when the connection does, so each CONNECTED triggers a fresh read."""

    def __init__(
        self,
        session: ZooKeeperSession,
        path: str,
        on_children: Callable[[list[str] | None], Awaitable[None]],
    ) -> None:
        self.session = session
        self.path = path
        self._on_children = on_children
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._remove_listener: Callable[[], None] | None = None

    def start(self) -> None:
        self._remove_listener = self.session.add_listener(self._on_state)
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.poke()

    def poke(self) -> None:
        self._dirty.set()

    def _on_state(self, state: SessionState) -> None:
        if state is SessionState.CONNECTED:
            self.poke()

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                children = await self._read()
            except ConnectionLossError:
                continue  # the next CONNECTED pokes us
            except ZooKeeperError as error:
                log.warning("reading the children of %s: %s", self.path, error)
                continue
            try:
                await self._on_children(children)
            except Exception:
                log.exception("handling the children of %s", self.path)

    async def _read(self) -> list[str] | None:
        try:
            return await self.session.get_children(self.path, watch=self.poke)
        except NoNodeError:
            # Watch for the path to appear; if it appeared meanwhile, read again.
            if await self.session.exists(self.path, watch=self.poke) is not None:
                self.poke()
            return None

    async def close(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Detector:
    """Follows the leading master under `path` (default: the session URL's path).

        detector = Detector(session, on_change=lambda info: ...)
        await detector.start()
        detector.leader        # MasterInfo of the leader, or None

    `on_change(info)` runs on the loop whenever the leader changes, with None when there is
    none (no contender, or the leader's znode holds no MasterInfo JSON) and when the session is
    LOST (who leads is unknown until it reconnects). While SUSPENDED the last leader stays: a
    brief ZooKeeper blip must not make every agent drop its master."""

    def __init__(
        self,
        session: ZooKeeperSession,
        path: str | None = None,
        on_change: Callable[[MasterInfo | None], None] | None = None,
    ) -> None:
        self.session = session
        self.path = validate_path(path or session.url.path)
        self.leader: MasterInfo | None = None
        self.leader_znode: str | None = None  # the leader's child, e.g. json.info_0000000003
        self._listeners: list[Callable[[MasterInfo | None], None]] = []
        if on_change is not None:
            self._listeners.append(on_change)
        self._follower = _ChildrenFollower(session, self.path, self._on_children)
        self._evaluated = asyncio.Event()
        self._changed = asyncio.Event()
        self._remove_listener: Callable[[], None] | None = None

    def add_listener(self, listener: Callable[[MasterInfo | None], None]) -> None:
        self._listeners.append(listener)

    async def start(self, timeout_s: float = 10.0) -> MasterInfo | None:
        """Start following; returns the leader once ZooKeeper has been read (TimeoutError
        after `timeout_s` if it could not be, the detector keeps trying)."""
        self._remove_listener = self.session.add_listener(self._on_state)
        self._follower.start()
        async with asyncio.timeout(timeout_s):
            await self._evaluated.wait()
        return self.leader

    async def wait_for(
        self, predicate: Callable[[MasterInfo | None], bool], timeout_s: float
    ) -> MasterInfo | None:
        """Wait until `predicate(leader)` holds; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while not (self._evaluated.is_set() and predicate(self.leader)):
                self._changed.clear()
                await self._changed.wait()
        return self.leader

    def _on_state(self, state: SessionState) -> None:
        if state is SessionState.LOST:
            self._report(None, None)

    async def _on_children(self, children: list[str] | None) -> None:
        name = leader_of(children or [])
        if name is None:
            self._report(None, None)
        elif name != self.leader_znode:
            try:
                self._report(await self._read_leader(name), name)
            except NoNodeError:
                return  # gone already: the children watch fires again
        self._evaluated.set()
        self._changed.set()

    async def _read_leader(self, name: str) -> MasterInfo | None:
        """The leader's MasterInfo (None if its data is not MasterInfo JSON)."""
        path = f"{self.path.rstrip('/')}/{name}"
        data, _ = await self.session.get(path)
        try:
            return master_info_from_json(json.loads(data))
        except (ValueError, WireError) as error:
            log.warning("the leading znode %s holds no MasterInfo JSON: %s", path, error)
            return None

    def _report(self, info: MasterInfo | None, znode: str | None) -> None:
        changed = info != self.leader
        self.leader, self.leader_znode = info, znode
        self._changed.set()
        if not changed:
            return
        for listener in list(self._listeners):
            try:
                listener(info)
            except Exception:
                log.exception("a leader detector listener failed")

    async def close(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
        await self._follower.close()


class Candidacy(enum.Enum):
    FOLLOWING = "following"  # contending; another contender leads
    LEADING = "leading"
    SUSPENDED = "suspended"  # connection lost; do not act as leader; may come back
    LOST = "lost"  # final: this contender will never lead


class Contender:
    """One master's candidacy under `path` (default: the session URL's path).

        contender = Contender(session, master_info, on_change=lambda c: ...)
        await contender.start()          # creates <path>/json.info_NNNNNNNNNN
        contender.leading                # act as leader only while this is True
        contender.znode                  # the candidacy znode (fence the registry store on it)

    See the module for the guarantees; `on_change(candidacy)` runs on the loop, synchronously
    inside the session's state change for SUSPENDED and LOST."""

    def __init__(
        self,
        session: ZooKeeperSession,
        master_info: MasterInfo | bytes,
        path: str | None = None,
        on_change: Callable[[Candidacy], None] | None = None,
    ) -> None:
        self.session = session
        self.path = validate_path(path or session.url.path)
        self.data = master_info if isinstance(master_info, bytes) else master_info_data(master_info)
        self.state: Candidacy | None = None  # None until start() has created the znode
        self.znode: str | None = None
        self.lost_reason: str | None = None
        self._session_id: int | None = None
        self._listeners: list[Callable[[Candidacy], None]] = []
        if on_change is not None:
            self._listeners.append(on_change)
        self._follower = _ChildrenFollower(session, self.path, self._on_children)
        self._changed = asyncio.Event()
        self._remove_listener: Callable[[], None] | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self.state is Candidacy.LEADING

    def add_listener(self, listener: Callable[[Candidacy], None]) -> None:
        self._listeners.append(listener)

    async def start(self, timeout_s: float = 10.0) -> str:
        """Create the candidacy znode (and `path`, if missing); returns the znode's path once
        the contender knows whether it leads. Raises ZooKeeperError if it cannot contend."""
        if self.state is not None:
            raise ZooKeeperError("this contender has already started")
        async with asyncio.timeout(timeout_s):
            self.znode = await self._create()
        self._remove_listener = self.session.add_listener(self._on_state)
        self._follower.start()
        async with asyncio.timeout(timeout_s):
            await self.wait_for(Candidacy.LEADING, Candidacy.FOLLOWING, Candidacy.LOST)
        return self.znode

    async def _create(self) -> str:
        """Create the znode once, even across a connection loss: a create whose answer was
        lost may have happened, and then the znode is adopted rather than doubled."""
        prefix = f"{self.path.rstrip('/')}/{LABEL}"
        uncertain_in: int | None = None  # session in which a create may have happened
        while True:
            await self.session.wait_connected(self.session.session_timeout_s)
            session_id = self.session.session_id
            try:
                created = None
                if uncertain_in is not None and uncertain_in == session_id:
                    created = await self._find_own_znode(session_id)
                uncertain_in = None
                if created is None:
                    uncertain_in = session_id
                    created = await self.session.create(
                        prefix, self.data, ephemeral=True, sequence=True, makepath=True
                    )
            except ConnectionLossError:
                continue
            if self.session.session_id == session_id:
                self._session_id = session_id
                return created

    async def _find_own_znode(self, session_id: int | None) -> str | None:
        """Our znode, if an earlier create in session `session_id` did happen."""
        for name in await self.session.get_children(self.path):
            if sequence_of(name) is None:
                continue
            path = f"{self.path.rstrip('/')}/{name}"
            try:
                data, stat = await self.session.get(path)
            except NoNodeError:
                continue
            if stat.ephemeral_owner == session_id and data == self.data:
                return path
        return None

    async def wait_for(self, *states: Candidacy, timeout_s: float | None = None) -> Candidacy:
        """Wait until the candidacy is in one of `states`; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while self.state not in states:
                self._changed.clear()
                await self._changed.wait()
        assert self.state is not None
        return self.state

    def _on_state(self, state: SessionState) -> None:
        if self.state is Candidacy.LOST:
            return
        if state is SessionState.SUSPENDED:
            self._set(Candidacy.SUSPENDED)
        elif state is SessionState.LOST or self.session.session_id != self._session_id:
            self._lose("the ZooKeeper session ended")
        # CONNECTED in the same session: stay SUSPENDED until the follower has re-read.

    async def _on_children(self, children: list[str] | None) -> None:
        if self.state is Candidacy.LOST or self.session.session_id != self._session_id:
            return
        assert self.znode is not None
        name = self.znode.rsplit("/", 1)[1]
        if children is None or name not in children:
            self._lose(f"the candidacy znode {self.znode} was deleted")
        elif self.session.state is SessionState.CONNECTED:
            self._set(Candidacy.LEADING if leader_of(children) == name else Candidacy.FOLLOWING)

    def _set(self, state: Candidacy) -> None:
        if state is self.state:
            return
        log.info("candidacy %s: %s", self.znode, state.value)
        self.state = state
        self._changed.set()
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("a contender listener failed")

    def _lose(self, reason: str) -> None:
        self.lost_reason = reason
        self._set(Candidacy.LOST)
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        self._closing = asyncio.get_running_loop().create_task(self._follower.close())

    async def withdraw(self) -> None:
        """Give up the candidacy: LOST now, and the znode deleted (if this session still
        holds it) so the next contender can lead without waiting for a session timeout."""
        if self.state is not Candidacy.LOST:
            self._lose("withdrawn")
        await self._follower.close()
        if self.znode is not None and self.session.session_id == self._session_id:
            try:
                await self.session.delete(self.znode)
            except ZooKeeperError as error:  # gone already, or the session with it
                log.info("withdrawing %s: %s", self.znode, error)
