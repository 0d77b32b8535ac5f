"""An asyncio ZooKeeper session: a small typed wrapper around kazoo.

kazoo runs its own threads (one for the connection, two for callbacks). Nothing here blocks
the event loop: requests go out through kazoo's `*_async` calls, and every completion, watch
and connection-state change is handed to the loop with `call_soon_threadsafe`. Blocking kazoo
calls (start, stop) run in this session's own worker thread. The rest of Agora sees only this
module's types, never kazoo's.

Connection states reported to listeners (on the event loop, in order, each change once):

- CONNECTED: the session is live; requests are served.
- SUSPENDED: the connection dropped; kazoo is reconnecting. The session may still be alive
  (ephemeral znodes stay) or may have expired on the servers; nobody can tell until it
  reconnects. kazoo notices a silent connection after 2/3 of the session timeout without an
  answer to its pings, i.e. before the servers expire the session.
- LOST: the session is over and its ephemeral znodes are gone (or will be when the servers
  time it out). Reported when ZooKeeper says the session expired, when `close()` ends it, and,
  as Mesos does, when the connection stayed SUSPENDED for `session_timeout_s`: ZooKeeper only
  tells a client its session expired once it reconnects, so a client cut off from every server
  would otherwise believe in its session forever. In that last case the kazoo client is
  replaced by a new one, which starts a new session; reconnecting to the old session (its
  ephemerals still alive) is therefore impossible once LOST was reported.

After LOST a new session is established on its own and reported as CONNECTED again with a
different `session_id`; owners of ephemeral znodes (see `agora.zookeeper.election`) must treat
LOST as final for everything they created.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from kazoo import exceptions as kazoo_errors
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState
from kazoo.security import CREATOR_ALL_ACL, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE

from agora.zookeeper.multiread import (
    GET_CHILDREN,
    GET_DATA,
    NO_NODE,
    MultiRead,
    MultiReadError,
    ReadResult,
)
from agora.zookeeper.url import ZooKeeperUrl

log = logging.getLogger(__name__)
T = TypeVar("T")
Listener = Callable[["SessionState"], None]
Watch = Callable[[], None]
MULTI_READ_FIRST_CHUNK = 8  # znodes in the first multiRead of a bulk read
MULTI_READ_MAX_CHUNK = 1000
MULTI_READ_RESPONSE_BYTES = 1_000_000  # what a Java client would accept (jute.maxbuffer)
# ZooKeeper drops the connection of a client whose request exceeds jute.maxbuffer
# (1 MiB - 1 by default). The margin covers what the server adds to a transaction when it
# logs it and sends it to followers.
MAX_REQUEST_BYTES = 1_000_000
MULTI_FRAMING_BYTES = 4 + 8 + 9  # length prefix, xid and opcode, the closing MultiHeader
_MULTI_HEADER_BYTES = 9


class SessionState(enum.Enum):
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"


class ZooKeeperError(Exception):
    """A ZooKeeper request failed; the message names the path."""


class NoNodeError(ZooKeeperError):
    pass


class NodeExistsError(ZooKeeperError):
    pass


class NotEmptyError(ZooKeeperError):
    pass


class BadVersionError(ZooKeeperError):
    pass


class NoAuthError(ZooKeeperError):
    """The znode's ACL does not allow this (check the zk:// URL's credentials)."""


class ConnectionLossError(ZooKeeperError):
    """Not connected, or the connection dropped mid-request: a write may or may not have
    happened."""


class SessionExpiredError(ConnectionLossError):
    """The session is over; its ephemeral znodes are gone."""


_ERRORS: list[tuple[type[Exception], type[ZooKeeperError]]] = [
    (kazoo_errors.NoNodeError, NoNodeError),
    (kazoo_errors.NodeExistsError, NodeExistsError),
    (kazoo_errors.NotEmptyError, NotEmptyError),
    (kazoo_errors.BadVersionError, BadVersionError),
    (kazoo_errors.NoAuthError, NoAuthError),
    (kazoo_errors.AuthFailedError, NoAuthError),
    (kazoo_errors.SessionExpiredError, SessionExpiredError),
    (kazoo_errors.ConnectionClosedError, SessionExpiredError),
    (kazoo_errors.ConnectionLoss, ConnectionLossError),
    (kazoo_errors.OperationTimeoutError, ConnectionLossError),
]


def translate(error: BaseException, what: str) -> ZooKeeperError:
    """kazoo's exception -> ours, with `what` (usually the path) in the message."""
    if isinstance(error, ZooKeeperError):
        return error
    for kazoo_type, ours in _ERRORS:
        if isinstance(error, kazoo_type):
            return ours(f"{what}: {ours.__name__.removesuffix('Error')}")
    return ZooKeeperError(f"{what}: {type(error).__name__} {error}".rstrip())


@dataclass(frozen=True)
class Stat:
    version: int
    ephemeral_owner: int  # session id of an ephemeral znode's owner, else 0
    data_length: int
    num_children: int


@dataclass(frozen=True)
class Acl:
    """One ACL entry as it travels on the wire (for request-size arithmetic)."""

    perms: int
    scheme: str
    id: str


# Operations of an atomic multi (ZooKeeper `multi`).
@dataclass(frozen=True)
class CreateOp:
    path: str
    data: bytes
    ephemeral: bool = False
    sequence: bool = False


@dataclass(frozen=True)
class SetDataOp:
    path: str
    data: bytes
    version: int = -1


@dataclass(frozen=True)
class DeleteOp:
    path: str
    version: int = -1


@dataclass(frozen=True)
class CheckOp:
    """Require `path` to exist (at `version`, unless -1) for the multi to apply."""

    path: str
    version: int = -1


Op = CreateOp | SetDataOp | DeleteOp | CheckOp


class MultiError(ZooKeeperError):
    """A multi was refused as a whole (nothing applied) because operation `index` failed."""

    def __init__(self, index: int, op: Op, error: ZooKeeperError) -> None:
        super().__init__(f"operation {index} of the multi failed: {error}")
        self.index = index
        self.op = op
        self.error = error


def _stat(raw: Any) -> Stat:
    return Stat(
        version=raw.version,
        ephemeral_owner=raw.ephemeralOwner,
        data_length=raw.dataLength,
        num_children=raw.numChildren,
    )


class _Client:
    """One KazooClient and the asyncio futures waiting on it (failed if it is discarded)."""

    def __init__(self, kazoo: Any) -> None:
        self.kazoo = kazoo
        self.pending: set[asyncio.Future[Any]] = set()  # touched on the event loop only

    def stop(self) -> None:
        """End the session (blocking: call it in a worker thread)."""
        try:
            self.kazoo.stop()
            self.kazoo.close()
        except Exception:  # a client that never connected has nothing to close
            log.debug("stopping a kazoo client", exc_info=True)

    def fail_pending(self) -> None:
        """On the loop, after stop(): nothing more will answer these requests."""
        for future in list(self.pending):
            _fail(future, ConnectionLossError("the ZooKeeper session was closed"))


class ZooKeeperSession:
    """A ZooKeeper session for one process (share it between contender, detector and store).

        session = ZooKeeperSession(parse_zk_url("zk://h1:2181,h2:2181/mesos"))
        await session.start()
        session.add_listener(lambda state: ...)
        ...
        await session.close()

    With credentials in the URL the session authenticates with ZooKeeper's digest scheme and
    creates znodes readable by everyone and writable only by that identity (as Mesos does).
    """

    def __init__(self, url: ZooKeeperUrl, session_timeout_s: float = 10.0) -> None:
        self.url = url
        self.session_timeout_s = session_timeout_s
        self._listeners: list[Listener] = []
        self._state = SessionState.LOST
        self._session_id: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zookeeper")
        self._client: _Client | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._acl = self._make_acl()

    def _make_acl(self) -> list[Any]:
        if self.url.credentials is None:
            return list(OPEN_ACL_UNSAFE)
        return [*READ_ACL_UNSAFE, *CREATOR_ALL_ACL]

    @property
    def acl(self) -> tuple[Acl, ...]:
        """The ACL every znode of this session is created with."""
        return tuple(Acl(entry.perms, entry.id.scheme, entry.id.id) for entry in self._acl)

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def closed(self) -> bool:
        """True once `close()` was called: the session will never connect again."""
        return self._closed

    @property
    def session_id(self) -> int | None:
        """The current ZooKeeper session id (an ephemeral znode's `ephemeral_owner`)."""
        return self._session_id

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(state)` on the loop at every state change; returns a remover."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    # ----------------------------------------------------------------- lifecycle

    async def start(self, timeout_s: float = 15.0) -> None:
        """Connect; raise ConnectionLossError if no server answers within `timeout_s`.

        The session stays usable after a failed start: it keeps trying in the background and
        reports CONNECTED when it gets there (call `close()` to give up)."""
        if self._closed:
            raise ZooKeeperError("this ZooKeeper session was closed")
        self._loop = asyncio.get_running_loop()
        if self._client is None:
            self._client = self._new_client()
            await self._in_thread(self._client.kazoo.start_async)
        try:
            await self.wait_connected(timeout_s)
        except TimeoutError:
            raise ConnectionLossError(
                f"no ZooKeeper server of {self.url.connect_string} answered within {timeout_s:g} s"
            ) from None

    async def wait_connected(self, timeout_s: float) -> None:
        """Return once the session is CONNECTED; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            await self._connected.wait()

    def _new_client(self) -> _Client:
        auth = [("digest", self.url.digest)] if self.url.digest else None
        kazoo = KazooClient(
            hosts=self.url.connect_string,
            timeout=self.session_timeout_s,
            auth_data=auth,
            default_acl=self._acl,
            connection_retry={"max_tries": -1, "max_delay": 1.0},
            logger=logging.getLogger("agora.zookeeper.kazoo"),
        )
        client = _Client(kazoo)
        kazoo.add_listener(
            lambda state: self._from_kazoo_thread(self._on_kazoo_state, client, state)
        )
        return client

    async def close(self) -> None:
        """End the session: its ephemeral znodes are deleted now, listeners hear LOST."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        self._cancel_expiry()
        if client is not None:
            await self._in_thread(client.stop)
            client.fail_pending()
        self._change(SessionState.LOST, None)
        self._thread.shutdown(wait=False)  # idle by now: the stop above was its last work

    async def _in_thread(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    # --------------------------------------------------------- connection state

    def _from_kazoo_thread(self, function: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
            loop.call_soon_threadsafe(function, *args)

    def _on_kazoo_state(self, client: _Client, state: Any) -> None:
        if client is not self._client:
            return  # a discarded client winding down
        if state == KazooState.CONNECTED:
            self._cancel_expiry()
            client_id = client.kazoo.client_id
            session_id = client_id[0] if client_id else None
            if self._session_id is not None and session_id != self._session_id:
                self._change(SessionState.LOST, None)  # a new session replaced the old one
            self._change(SessionState.CONNECTED, session_id)
        elif state == KazooState.SUSPENDED:
            self._change(SessionState.SUSPENDED, self._session_id)
            if self._expiry is None and self._loop is not None:
                self._expiry = self._loop.call_later(self.session_timeout_s, self._expire)
        else:
            self._cancel_expiry()
            self._change(SessionState.LOST, None)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _expire(self) -> None:
        """SUSPENDED for a whole session timeout: declare the session over, start afresh."""
        self._expiry = None
        if self._closed or self._state is not SessionState.SUSPENDED:
            return
        log.warning(
            "no ZooKeeper server of %s reachable for %g s: the session is lost",
            self.url.connect_string,
            self.session_timeout_s,
        )
        old, self._client = self._client, self._new_client()
        self._change(SessionState.LOST, None)
        new = self._client

        def replace() -> None:
            if old is not None:
                old.stop()
                self._from_kazoo_thread(old.fail_pending)
            if not self._closed:
                new.kazoo.start_async()

        self._thread.submit(replace)

    def _change(self, state: SessionState, session_id: int | None) -> None:
        if state is self._state and session_id == self._session_id:
            return
        shown = _hex(session_id if session_id is not None else self._session_id)
        self._state = state
        self._session_id = session_id
        if state is SessionState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        log.info("ZooKeeper session %s: %s", shown, state.value)
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("a ZooKeeper session listener failed")

    # -------------------------------------------------------------- requests

    def _kazoo(self) -> _Client:
        if self._client is None or self._loop is None:
            raise ConnectionLossError("the ZooKeeper session is not started (or was closed)")
        return self._client

    async def _call(self, what: str, start: Callable[[Any], Any]) -> Any:
        """Run `start(kazoo_client)` (which returns a kazoo async result) and await it."""
        client = self._kazoo()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        client.pending.add(future)
        future.add_done_callback(client.pending.discard)

        def done(result: Any) -> None:
            self._from_kazoo_thread(_settle, future, result, what)

        try:
            start(client.kazoo).rawlink(done)
        except Exception as error:
            raise translate(error, what) from None
        return await future

    def _watcher(self, watch: Watch | None) -> Callable[[Any], None] | None:
        if watch is None:
            return None
        return lambda event: self._from_kazoo_thread(watch)

    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequence: bool = False,
        makepath: bool = False,
    ) -> str:
        """Create a znode; returns its path (with the sequence suffix, if any). With
        `makepath`, missing parents are created (persistent, empty)."""
        created: str = await self._call(
            path,
            lambda zk: zk.create_async(
                path, data, ephemeral=ephemeral, sequence=sequence, makepath=makepath
            ),
        )
        return created

    async def ensure_path(self, path: str) -> None:
        """Create `path` and its parents where missing (persistent, empty)."""
        await self._call(path, lambda zk: zk.ensure_path_async(path))

    async def get(self, path: str, watch: Watch | None = None) -> tuple[bytes, Stat]:
        """Data and stat; `watch` is called once when the znode changes or goes away (or the
        connection drops)."""
        data, raw = await self._call(path, lambda zk: zk.get_async(path, self._watcher(watch)))
        return data or b"", _stat(raw)

    async def exists(self, path: str, watch: Watch | None = None) -> Stat | None:
        raw = await self._call(path, lambda zk: zk.exists_async(path, self._watcher(watch)))
        return None if raw is None else _stat(raw)

    async def get_children(self, path: str, watch: Watch | None = None) -> list[str]:
        """Child names; `watch` is called once when children are added or removed."""
        children: list[str] = await self._call(
            path, lambda zk: zk.get_children_async(path, self._watcher(watch))
        )
        return list(children)

    async def set(self, path: str, data: bytes, version: int = -1) -> Stat:
        return _stat(await self._call(path, lambda zk: zk.set_async(path, data, version)))

    async def delete(self, path: str, version: int = -1) -> None:
        await self._call(path, lambda zk: zk.delete_async(path, version))

    async def multi(self, ops: Sequence[Op]) -> list[Any]:
        """Apply `ops` atomically (all or none). MultiError names the failing operation."""
        if not ops:
            return []

        def start(zk: Any) -> Any:
            transaction = zk.transaction()
            for op in ops:
                _add_op(transaction, op)
            return transaction.commit_async()

        results: list[Any] = await self._call(f"multi of {len(ops)} operations", start)
        for index, (op, result) in enumerate(zip(ops, results, strict=False)):
            if isinstance(result, Exception) and not isinstance(
                result, kazoo_errors.RolledBackError | kazoo_errors.RuntimeInconsistency
            ):
                raise MultiError(index, op, translate(result, op.path))
        return results

    def op_size(self, op: Op) -> int:
        """Bytes `op` takes in a multi request (jute encoding, this session's ACL)."""
        path = 4 + len(op.path.encode())
        if isinstance(op, CreateOp):
            acl = 4 + sum(12 + len(a.scheme.encode()) + len(a.id.encode()) for a in self.acl)
            return _MULTI_HEADER_BYTES + path + 4 + len(op.data) + acl + 4
        if isinstance(op, SetDataOp):
            return _MULTI_HEADER_BYTES + path + 4 + len(op.data) + 4
        return _MULTI_HEADER_BYTES + path + 4  # delete, check: path and version

    async def get_many(self, paths: Sequence[str]) -> list[bytes | None]:
        """The data of every path (None where the znode does not exist), in few requests."""
        return [r if isinstance(r, bytes) else None for r in await self._read_many(GET_DATA, paths)]

    async def get_children_many(self, paths: Sequence[str]) -> list[list[str] | None]:
        """The children of every path (None where the znode does not exist)."""
        results = await self._read_many(GET_CHILDREN, paths)
        return [r if isinstance(r, list) else None for r in results]

    async def _read_many(self, kind: int, paths: Sequence[str]) -> list[ReadResult | None]:
        """multiRead in chunks. ZooKeeper builds each response whole in its heap, so a chunk
        is sized from the bytes per znode seen so far to answer about
        MULTI_READ_RESPONSE_BYTES (starting small: values may be up to 1 MB each)."""
        out: list[ReadResult | None] = []
        start, chunk, seen_bytes = 0, MULTI_READ_FIRST_CHUNK, 0
        while start < len(paths):
            part = paths[start : start + chunk]
            what = f"multiRead of {len(part)} znodes under {part[0]}"
            results = await self._call(what, functools.partial(_multi_read, kind=kind, paths=part))
            for path, result in zip(part, results, strict=True):
                if isinstance(result, MultiReadError):
                    if result.code != NO_NODE:
                        raise translate(_kazoo_error(result.code), path)
                    out.append(None)
                else:
                    out.append(result)
                    seen_bytes += len(result) if isinstance(result, bytes) else 0
            start += len(part)
            per_znode = max(seen_bytes / start, 1.0)
            chunk = int(min(MULTI_READ_MAX_CHUNK, max(1, MULTI_READ_RESPONSE_BYTES / per_znode)))
        return out


def _multi_read(zk: Any, kind: int, paths: Sequence[str]) -> Any:
    result = zk.handler.async_result()
    zk._call(MultiRead(kind, paths), result)  # see agora.zookeeper.multiread
    return result


def _kazoo_error(code: int) -> Exception:
    error_type = kazoo_errors.EXCEPTIONS[code]
    return error_type()  # type: ignore[no-any-return]


def _add_op(transaction: Any, op: Op) -> None:
    if isinstance(op, CreateOp):
        transaction.create(op.path, op.data, ephemeral=op.ephemeral, sequence=op.sequence)
    elif isinstance(op, SetDataOp):
        transaction.set_data(op.path, op.data, op.version)
    elif isinstance(op, DeleteOp):
        transaction.delete(op.path, op.version)
    else:
        transaction.check(op.path, op.version)


def _settle(future: asyncio.Future[Any], result: Any, what: str) -> None:
    if future.done():
        return
    if result.successful():
        future.set_result(result.value)
    else:
        future.set_exception(translate(result.exception, what))


def _fail(future: asyncio.Future[Any], error: ZooKeeperError) -> None:
    if not future.done():
        future.set_exception(error)


def _hex(session_id: int | None) -> str:
    return "-" if session_id is None else f"0x{session_id:x}"


__all__ = [
    "Acl",
    "BadVersionError",
    "CheckOp",
    "ConnectionLossError",
    "CreateOp",
    "DeleteOp",
    "MultiError",
    "NoAuthError",
    "NoNodeError",
    "NodeExistsError",
    "NotEmptyError",
    "Op",
    "SessionExpiredError",
    "SessionState",
    "SetDataOp",
    "Stat",
    "ZooKeeperError",
    "ZooKeeperSession",
]
