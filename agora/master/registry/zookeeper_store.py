"""The HA registry store: records in ZooKeeper, which every master of the ensemble can reach.

Layout: one znode per record, `<root>/registry/<kind>/<key>` holding the value. Kinds and keys
are percent-encoded (`quote(name, safe="")`, and `.`/`..` spelled `%2E`), so any non-empty
string, a role such as `eng/web` included, is one safe znode name; reading decodes them back.

Writes (see agora.master.registry.store for the contract):

- Each Store transaction is part of exactly one ZooKeeper `multi`, which ZooKeeper applies
  atomically. Consecutive transactions share a multi while it stays under MAX_REQUEST_BYTES
  (a larger request makes ZooKeeper drop the connection), so a group of small transactions
  costs one round trip; multis go out one after another, each after the previous succeeded,
  so transactions take effect in order. A transaction that alone exceeds the limit, or a value
  over MAX_VALUE_BYTES, is refused with StoreError before anything of that `apply` is written.
- ZooKeeper answers a multi only once a quorum has it on disk: durable on return.
- A Put is a create or a set depending on whether the record exists; the store keeps the set
  of existing records (learnt by load() or one listing) and, should ZooKeeper disagree
  (another writer), lists again and retries.
- Fencing: built with `fence=<the contender's candidacy znode>`, every multi starts with a
  `check` of that znode. ZooKeeper then applies a write only while the znode exists, i.e. while
  the contender's session, and so its leadership, lives; otherwise StoreFencedError, nothing
  written. A deposed leader cannot overwrite its successor's registry, even if it has not
  noticed yet that it was deposed.
- A dropped connection is retried once the session is connected again (within
  `retry_timeout_s`): a multi whose answer was lost may have been applied, and the retry, planned
  from a fresh listing, leaves the same records either way.

load() lists kinds and keys and reads the values with ZooKeeper's multiRead, many records per
request (up to 1000, sized to ~1 MB responses from what it has read so far): 10,000 records of
300 bytes load in about 0.1 s (bench/zookeeper_store.py measures it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from agora.master.registry.store import (
    Delete,
    Put,
    StoreError,
    StoreFencedError,
    Transaction,
    check_change,
)
from agora.zookeeper.session import (
    MAX_REQUEST_BYTES,
    MULTI_FRAMING_BYTES,
    CheckOp,
    ConnectionLossError,
    CreateOp,
    DeleteOp,
    MultiError,
    NodeExistsError,
    NoNodeError,
    Op,
    SetDataOp,
    ZooKeeperError,
    ZooKeeperSession,
)
from agora.zookeeper.url import ZooKeeperUrl, parse_zk_url, validate_path

# ZooKeeper keeps a znode's data in one request and one response (jute.maxbuffer, 1 MiB):
# a value must leave room for its path, the ACL and the fence check beside it.
MAX_VALUE_BYTES = 960_000
_STALE_RETRIES = 3


def encode_name(name: str) -> str:
    """A kind or key as one znode name (reversible, see the module)."""
    try:
        encoded = quote(name, safe="")
    except UnicodeEncodeError:
        raise StoreError(f"registry name {name!r} is not valid Unicode text") from None
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def decode_name(name: str) -> str:
    return unquote(name)


@dataclass(frozen=True)
class _Change:
    """One change with its names encoded; `value` None means delete."""

    kind: str
    key: str
    value: bytes | None


class ZooKeeperStore:
    """The Store contract on ZooKeeper (see the module).

        store = ZooKeeperStore(session, root="/mesos", fence=contender.znode)
        records = await store.load()
        await store.apply([[Put("agents", agent_id, data)], ...])

    `root` defaults to the session URL's path. The store shares `session` and does not close
    it; `ZooKeeperStore.connect(url)` makes a store with a session of its own, which its
    `close()` ends."""

    def __init__(
        self,
        session: ZooKeeperSession,
        root: str | None = None,
        fence: str | None = None,
        retry_timeout_s: float | None = None,
    ) -> None:
        self.session = session
        self.root = validate_path(root or session.url.path)
        self.base = f"{self.root.rstrip('/')}/registry"
        self.fence = validate_path(fence) if fence is not None else None
        self.retry_timeout_s = (
            session.session_timeout_s if retry_timeout_s is None else retry_timeout_s
        )
        self._owns_session = False
        self._base_ready = False
        self.multis = 0  # multi requests that succeeded (round trips spent on writes)
        self._known: dict[str, set[str]] | None = None  # encoded kind -> encoded keys present
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(
        cls,
        url: str | ZooKeeperUrl,
        fence: str | None = None,
        session_timeout_s: float = 10.0,
        timeout_s: float = 15.0,
    ) -> ZooKeeperStore:
        """A store on a session of its own (ended by `close()`), rooted at the URL's path."""
        parsed = parse_zk_url(url) if isinstance(url, str) else url
        session = ZooKeeperSession(parsed, session_timeout_s=session_timeout_s)
        try:
            await session.start(timeout_s)
        except ZooKeeperError as error:
            await session.close()
            raise StoreError(f"registry {parsed}: {error}") from None
        store = cls(session, fence=fence)
        store._owns_session = True
        return store

    def _path(self, kind: str, key: str | None = None) -> str:
        return f"{self.base}/{kind}" if key is None else f"{self.base}/{kind}/{key}"

    # ---------------------------------------------------------------------- read

    async def load(self) -> dict[str, dict[str, bytes]]:
        async with self._lock:
            while True:
                try:
                    pairs, values = await self._read_all()
                    break
                except ConnectionLossError as error:
                    await self._reconnect(error)
                except ZooKeeperError as error:
                    raise StoreError(f"registry {self.base}: {error}") from None
        out: dict[str, dict[str, bytes]] = {}
        for (kind, key), value in zip(pairs, values, strict=True):
            if value is not None:  # None: deleted between the listing and the read
                out.setdefault(decode_name(kind), {})[decode_name(key)] = value
        return out

    async def _read_all(self) -> tuple[list[tuple[str, str]], list[bytes | None]]:
        known = await self._list()
        pairs = [(kind, key) for kind, keys in known.items() for key in keys]
        return pairs, await self.session.get_many([self._path(k, n) for k, n in pairs])

    async def _list(self) -> dict[str, set[str]]:
        """Every kind and key present (and remember them for planning writes)."""
        try:
            kinds = await self.session.get_children(self.base)
        except NoNodeError:
            kinds = []
        listed = await self.session.get_children_many([self._path(kind) for kind in kinds])
        self._known = {
            kind: set(keys) for kind, keys in zip(kinds, listed, strict=True) if keys is not None
        }
        return self._known

    # --------------------------------------------------------------------- write

    async def apply(self, transactions: Sequence[Transaction]) -> None:
        encoded = [self._encode(transaction) for transaction in transactions]
        batches = self._batches([tx for tx in encoded if tx])
        if not batches:
            return
        async with self._lock:
            for batch in batches:
                await self._write(batch)

    def _encode(self, transaction: Transaction) -> list[_Change]:
        changes = []
        for change in transaction:
            check_change(change)
            value = change.value if isinstance(change, Put) else None
            if value is not None and len(value) > MAX_VALUE_BYTES:
                raise StoreError(
                    f"the value of {change.kind}/{change.key} is {len(value):,} bytes: ZooKeeper "
                    f"registry values may be at most {MAX_VALUE_BYTES:,} bytes"
                )
            assert isinstance(change, Put | Delete)
            changes.append(_Change(encode_name(change.kind), encode_name(change.key), value))
        return changes

    def _worst_size(self, transaction: list[_Change], kinds: frozenset[str] = frozenset()) -> int:
        """Request bytes of `transaction` if every put creates its record, and its kind unless
        the kind is in `kinds` (created earlier in the same multi)."""
        new_kinds = {change.kind for change in transaction if change.value is not None} - kinds
        size = sum(self.session.op_size(CreateOp(self._path(kind), b"")) for kind in new_kinds)
        for change in transaction:
            path = self._path(change.kind, change.key)
            op: Op = DeleteOp(path) if change.value is None else CreateOp(path, change.value)
            size += self.session.op_size(op)
        return size

    def _batches(self, transactions: list[list[_Change]]) -> list[list[list[_Change]]]:
        """Consecutive transactions packed into multis under the request limit."""
        budget = MAX_REQUEST_BYTES - MULTI_FRAMING_BYTES
        if self.fence is not None:
            budget -= self.session.op_size(CheckOp(self.fence))
        batches: list[list[list[_Change]]] = []
        used, kinds = budget, frozenset[str]()
        for transaction in transactions:
            alone = self._worst_size(transaction)
            if alone > budget:
                raise StoreError(
                    f"a registry transaction of {len(transaction)} changes needs {alone:,} bytes, "
                    f"over ZooKeeper's {budget:,}-byte request limit (split it or shrink values)"
                )
            size = self._worst_size(transaction, kinds)
            if used + size > budget:
                batches.append([])
                used, kinds, size = 0, frozenset(), alone
            batches[-1].append(transaction)
            used += size
            kinds |= {change.kind for change in transaction if change.value is not None}
        return batches

    async def _write(self, batch: list[list[_Change]]) -> None:
        """One multi for `batch`, retried after a stale view or a dropped connection."""
        stale = 0
        while True:
            try:
                if not self._base_ready:
                    await self.session.ensure_path(self.base)
                    self._base_ready = True
                if self._known is None:
                    await self._list()
                assert self._known is not None
                ops, after = self._plan(batch, self._known)
                if ops:
                    await self.session.multi(ops)
                    self.multis += 1
                self._known = after
                return
            except MultiError as error:
                self._raise_if_fenced(error)
                if not isinstance(error.error, NodeExistsError | NoNodeError):
                    raise StoreError(f"registry {self.base}: {error}") from None
                stale += 1
                if stale > _STALE_RETRIES:
                    raise StoreError(
                        f"registry {self.base}: another writer keeps changing it ({error})"
                    ) from None
                self._known = None  # list again, plan again
                self._base_ready = False
            except ConnectionLossError as error:
                await self._reconnect(error)
            except ZooKeeperError as error:
                raise StoreError(f"registry {self.base}: {error}") from None

    def _raise_if_fenced(self, error: MultiError) -> None:
        if self.fence is not None and error.index == 0 and isinstance(error.error, NoNodeError):
            raise StoreFencedError(
                f"registry {self.base}: the candidacy znode {self.fence} is gone: this master "
                "no longer leads, nothing was written"
            ) from None

    async def _reconnect(self, error: ConnectionLossError) -> None:
        """Wait for the session to be connected again before retrying (a lost answer may
        hide a write that happened: the retry is planned from a fresh listing)."""
        self._known = None
        if self.session.closed:
            if self.fence is not None:
                raise StoreFencedError(
                    f"registry {self.base}: the ZooKeeper session is closed, and with it the "
                    f"candidacy {self.fence}: nothing more is written"
                ) from None
            raise StoreError(f"registry {self.base}: the ZooKeeper session is closed") from None
        try:
            await self.session.wait_connected(self.retry_timeout_s)
        except TimeoutError:
            raise StoreError(
                f"registry {self.base}: {error}; not reconnected within {self.retry_timeout_s:g} s"
            ) from None

    def _plan(
        self, batch: list[list[_Change]], known: dict[str, set[str]]
    ) -> tuple[list[Op], dict[str, set[str]]]:
        """The multi for `batch` given the records present, and the records present after."""
        ops: list[Op] = [] if self.fence is None else [CheckOp(self.fence)]
        after = dict(known)  # copied per kind on first change
        copied: set[str] = set()
        for transaction in batch:
            for change in transaction:
                keys = after.get(change.kind)
                if change.value is None and (keys is None or change.key not in keys):
                    continue  # deleting a missing record is not an error
                if keys is None:
                    ops.append(CreateOp(self._path(change.kind), b""))
                    keys = after[change.kind] = set()
                    copied.add(change.kind)
                elif change.kind not in copied:
                    keys = after[change.kind] = set(keys)
                    copied.add(change.kind)
                path = self._path(change.kind, change.key)
                if change.value is None:
                    ops.append(DeleteOp(path))
                    keys.discard(change.key)
                elif change.key in keys:
                    ops.append(SetDataOp(path, change.value))
                else:
                    ops.append(CreateOp(path, change.value))
                    keys.add(change.key)
        if ops and isinstance(ops[0], CheckOp) and len(ops) == 1:
            return [], after  # nothing to write (only deletes of missing records)
        return ops, after

    async def close(self) -> None:
        if self._owns_session:
            await self.session.close()
