"""One conformance suite for the registry Store contract (agora.master.registry.store), run
against every backend: SQLite (a file) and ZooKeeper (a real server). Then what only the
ZooKeeper store does: fencing, multi atomicity on the server, request-size limits."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agora.master.registry import zookeeper_store
from agora.master.registry.sqlite_store import SqliteStore
from agora.master.registry.store import Delete, Put, Store, StoreError, StoreFencedError
from agora.master.registry.zookeeper_store import MAX_VALUE_BYTES, ZooKeeperStore
from agora.testing.zookeeper import ZooKeeperEnsemble
from agora.zookeeper.election import Candidacy, Contender
from agora.zookeeper.session import NoAuthError, ZooKeeperSession
from agora.zookeeper.url import parse_zk_url

ODD_NAMES = [
    "eng/web",
    "/",
    "//a//",
    ".",
    "..",
    "...",
    "%",
    "%2E",
    "%252F",
    "a b\tc\nd",
    "\x00nul",
    "\x7f\x9f",
    "ünïcödé ☃ 日本",
    "zookeeper",
    "*",
    "-leading-dash",
    "json.info_0000000001",
    "k" * 2000,
]


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


@dataclass
class Backend:
    """Opens stores on one registry; each `open()` is a new connection (SQLite) or session
    (ZooKeeper), and `load_in_process()` reads it from a separate Python process."""

    name: str
    open: Callable[[], Awaitable[Store]]
    subprocess_code: str

    def load_in_process(self) -> dict[str, dict[str, str]]:
        output = subprocess.run(
            [sys.executable, "-c", self.subprocess_code],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        loaded: dict[str, dict[str, str]] = json.loads(output)
        return loaded


LOAD_AND_PRINT = """
import asyncio, json
from agora.master.registry.sqlite_store import SqliteStore
from agora.master.registry.zookeeper_store import ZooKeeperStore
async def main():
    store = {open}
    records = await store.load()
    await store.close()
    print(json.dumps({{k: {{n: v.hex() for n, v in r.items()}} for k, r in records.items()}}))
asyncio.run(main())
"""


def sqlite_backend(path: Path) -> Backend:
    async def open_store() -> Store:
        return SqliteStore(path)

    return Backend("sqlite", open_store, LOAD_AND_PRINT.format(open=f"SqliteStore({str(path)!r})"))


def zookeeper_backend(url: str) -> Backend:
    async def open_store() -> Store:
        return await ZooKeeperStore.connect(url)

    code = LOAD_AND_PRINT.format(open=f"await ZooKeeperStore.connect({url!r})")
    return Backend("zookeeper", open_store, code)


@pytest.fixture(params=["sqlite", "zookeeper"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return sqlite_backend(tmp_path / "registry.db")
    return zookeeper_backend(request.getfixturevalue("zk_url"))


def as_hex(records: dict[str, dict[str, bytes]]) -> dict[str, dict[str, str]]:
    return {
        kind: {key: value.hex() for key, value in keys.items()} for kind, keys in records.items()
    }


# ------------------------------------------------------------------ the contract


def test_a_new_registry_is_empty(backend: Backend) -> None:
    async def main() -> None:
        store = await backend.open()
        assert await store.load() == {}
        await store.apply([])
        await store.apply([[]])
        assert await store.load() == {}
        await store.close()

    run(main())


def test_put_overwrite_and_delete(backend: Backend) -> None:
    async def main() -> None:
        store = await backend.open()
        await store.apply([[Put("agents", "a1", b"one"), Put("quota", "eng", b"q")]])
        assert await store.load() == {"agents": {"a1": b"one"}, "quota": {"eng": b"q"}}
        await store.apply([[Put("agents", "a1", b"two")]])
        await store.apply([[Put("agents", "a2", b"")]])
        assert await store.load() == {"agents": {"a1": b"two", "a2": b""}, "quota": {"eng": b"q"}}
        await store.apply([[Delete("agents", "a1"), Delete("quota", "eng")]])
        assert await store.load() == {"agents": {"a2": b""}}  # an emptied kind is absent
        await store.close()

    run(main())


def test_deleting_a_missing_record_is_not_an_error(backend: Backend) -> None:
    async def main() -> None:
        store = await backend.open()
        await store.apply([[Delete("agents", "never")], [Delete("no-such-kind", "x")]])
        await store.apply([[Put("agents", "a", b"1")], [Delete("agents", "a")]])
        await store.apply([[Delete("agents", "a")]])
        assert await store.load() == {}
        await store.close()

    run(main())


def test_a_transaction_applies_whole_or_not_at_all(backend: Backend) -> None:
    """A bad change anywhere refuses the whole apply: nothing of it is written."""

    async def main() -> None:
        store = await backend.open()
        await store.apply([[Put("agents", "keep", b"old")]])
        bad: Any = "not bytes"
        with pytest.raises(StoreError, match="must be bytes"):
            await store.apply(
                [
                    [Put("agents", "first", b"1")],
                    [Put("agents", "keep", b"new"), Put("agents", "bad", bad)],
                ]
            )
        assert await store.load() == {"agents": {"keep": b"old"}}
        await store.close()

    run(main())


def test_transactions_take_effect_in_order(backend: Backend) -> None:
    async def main() -> None:
        store = await backend.open()
        await store.apply(
            [
                [Put("k", "x", b"1")],
                [Put("k", "x", b"2"), Put("k", "y", b"2")],
                [Delete("k", "x")],
                [Put("k", "x", b"3"), Delete("k", "y")],
                [Put("k", "y", b"4")],
            ]
        )
        assert await store.load() == {"k": {"x": b"3", "y": b"4"}}
        await store.close()

    run(main())


def test_records_survive_a_new_connection_and_a_new_process(backend: Backend) -> None:
    async def main() -> None:
        store = await backend.open()
        await store.apply([[Put("agents", f"a{i}", bytes([i]) * i)] for i in range(20)])
        await store.apply([[Delete("agents", "a3"), Put("weights", "eng", b"2.5")]])
        await store.close()
        reopened = await backend.open()
        records = await reopened.load()
        await reopened.close()
        expected = {f"a{i}": bytes([i]) * i for i in range(20) if i != 3}
        assert records == {"agents": expected, "weights": {"eng": b"2.5"}}
        assert backend.load_in_process() == as_hex(records)

    run(main())


def test_any_non_empty_kind_or_key_round_trips(backend: Backend) -> None:
    async def main() -> None:
        store = await backend.open()
        changes = [
            Put(name, key, f"{name}|{key}".encode()) for name in ODD_NAMES[:6] for key in ODD_NAMES
        ]
        await store.apply([changes])
        expected: dict[str, dict[str, bytes]] = {}
        for change in changes:
            expected.setdefault(change.kind, {})[change.key] = change.value
        await store.close()
        store = await backend.open()
        assert await store.load() == expected
        await store.apply([[Delete(name, key) for name in ODD_NAMES[:6] for key in ODD_NAMES]])
        assert await store.load() == {}
        await store.close()

    run(main())


def test_thousands_of_records(backend: Backend) -> None:
    async def main() -> None:
        store = await backend.open()
        groups = [
            [
                [Put(f"kind{k}", f"agent-{k}-{i}", f"value {k} {i}".encode() * 10)]
                for i in range(1000)
            ]
            for k in range(3)
        ]
        for group in groups:
            await store.apply(group)
        await store.close()
        store = await backend.open()
        records = await store.load()
        assert sorted(records) == ["kind0", "kind1", "kind2"]
        assert all(len(records[kind]) == 1000 for kind in records)
        assert records["kind2"]["agent-2-999"] == b"value 2 999" * 10
        await store.close()

    run(main())


def test_a_group_larger_than_one_request(backend: Backend) -> None:
    """3.6 MB in one apply: ZooKeeper needs several multis (as few as fit), SQLite one."""

    async def main() -> None:
        store = await backend.open()
        value = b"v" * 120_000
        group: list[list[Put | Delete]] = [
            [Put("big", f"r{i:02}", value + bytes([i]))] for i in range(30)
        ]
        group.append([Delete("big", "r00"), Put("big", "r01", b"last")])  # after the rest
        await store.apply(group)
        if isinstance(store, ZooKeeperStore):
            assert store.multis == 4  # 8 values of 120 KB fit in each 1 MB request
        records = (await store.load())["big"]
        assert len(records) == 29
        assert records["r01"] == b"last"
        assert records["r29"] == value + bytes([29])
        await store.close()

    run(main())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (Put("", "k", b"v"), "kind must be a non-empty string"),
        (Put("k", "", b"v"), "key must be a non-empty string"),
        (Delete("k", ""), "key must be a non-empty string"),
        (Put(b"kind", "k", b"v"), "kind must be a non-empty string"),  # type: ignore[arg-type]
        (Put("k", 7, b"v"), "key must be a non-empty string"),  # type: ignore[arg-type]
        (Put("k", "k", "text"), "must be bytes"),  # type: ignore[arg-type]
        (Put("k", "k", bytearray(b"v")), "must be bytes"),  # type: ignore[arg-type]
    ],
)
def test_bad_changes_are_refused(backend: Backend, change: Put | Delete, message: str) -> None:
    async def main() -> None:
        store = await backend.open()
        with pytest.raises(StoreError, match=message):
            await store.apply([[Put("ok", "ok", b"1")], [change]])
        assert await store.load() == {}
        await store.close()

    run(main())


# ------------------------------------------------------------- ZooKeeper only


async def started(url: str, session_timeout_s: float = 10.0) -> ZooKeeperSession:
    session = ZooKeeperSession(parse_zk_url(url), session_timeout_s=session_timeout_s)
    await session.start()
    return session


def test_zookeeper_refuses_oversized_values_and_transactions(zk_url: str) -> None:
    async def main() -> None:
        store = await ZooKeeperStore.connect(zk_url)
        with pytest.raises(StoreError, match=r"may be at most 960,000 bytes"):
            await store.apply([[Put("k", "small", b"1")], [Put("k", "huge", b"x" * 1_000_000)]])
        at_limit = b"x" * MAX_VALUE_BYTES
        with pytest.raises(StoreError, match=r"over ZooKeeper's [\d,]+-byte request limit"):
            await store.apply([[Put("k", "a", at_limit), Put("k", "b", b"y" * 50_000)]])
        assert await store.load() == {}
        await store.apply([[Put("k", "a", at_limit)]])  # the largest value fits on its own
        assert (await store.load())["k"]["a"] == at_limit
        assert store.session.state.value == "connected"  # no request ever went over
        await store.close()

    run(main())


def test_zookeeper_multi_is_atomic_on_the_server(zookeeper: ZooKeeperEnsemble, zk_url: str) -> None:
    """ZooKeeper itself refuses the last change (an ACL it may not write through): the
    changes before it in the transaction are rolled back."""

    async def main() -> None:
        other = await started(zookeeper.url(parse_zk_url(zk_url).path, ("other", "secret")))
        store = await ZooKeeperStore.connect(zk_url)
        await store.apply([[Put("agents", "a1", b"1")]])
        # A record znode created by another identity, writable by it alone.
        await other.create(f"{store.base}/agents/locked", b"theirs")
        await store.load()
        with pytest.raises(StoreError, match="NoAuth"):
            await store.apply([[Put("agents", "a1", b"2"), Put("agents", "locked", b"mine")]])
        assert await store.load() == {"agents": {"a1": b"1", "locked": b"theirs"}}
        await store.close()
        await other.close()

    run(main())


def test_a_fenced_store_writes_only_while_its_candidacy_lives(zk_url: str) -> None:
    async def main() -> None:
        master = await started(zk_url)
        contender = Contender(master, b"{}")
        fence = await contender.start()
        store = ZooKeeperStore(master, fence=fence)
        await store.apply([[Put("agents", "a1", b"1")]])
        observer = await ZooKeeperStore.connect(zk_url)
        await observer.session.delete(fence)  # as if the session had expired
        with pytest.raises(StoreFencedError, match="no longer leads"):
            await store.apply([[Put("agents", "a1", b"2"), Put("agents", "a2", b"2")]])
        assert await observer.load() == {"agents": {"a1": b"1"}}
        await master.close()
        await observer.close()

    run(main())


def test_a_fenced_store_stops_when_the_candidacy_session_closes(zk_url: str) -> None:
    async def main() -> None:
        master = await started(zk_url)
        contender = Contender(master, b"{}")
        fence = await contender.start()
        shared = ZooKeeperStore(master, fence=fence)  # the master's own session
        separate = await ZooKeeperStore.connect(zk_url, fence=fence)  # another session
        await shared.apply([[Put("quota", "eng", b"1")]])
        await separate.apply([[Put("quota", "ops", b"1")]])
        await master.close()
        for store in (shared, separate):
            with pytest.raises(StoreFencedError):
                await store.apply([[Put("quota", "eng", b"2")]])
        assert await separate.load() == {"quota": {"eng": b"1", "ops": b"1"}}
        await separate.close()

    run(main())


def test_another_writer_makes_the_store_re_list_and_retry(zk_url: str) -> None:
    """The store's view of which records exist goes stale when someone else writes: its
    creates and sets then fail on the server, and it lists again and still applies."""

    async def main() -> None:
        first = await ZooKeeperStore.connect(zk_url)
        second = await ZooKeeperStore.connect(zk_url)
        assert await first.load() == {} and await second.load() == {}
        await second.apply([[Put("agents", "a", b"second")]])
        await first.apply([[Put("agents", "a", b"first")]])  # create fails: exists -> set
        await second.apply([[Delete("agents", "a")]])
        await first.apply([[Put("agents", "a", b"again")]])  # set fails: gone -> create
        assert await second.load() == {"agents": {"a": b"again"}}
        await first.close()
        await second.close()

    run(main())


def test_registry_names_are_single_safe_znodes(zk_url: str) -> None:
    async def main() -> None:
        store = await ZooKeeperStore.connect(zk_url)
        await store.apply([[Put(name, name, b"x") for name in ODD_NAMES]])
        kinds = await store.session.get_children(store.base)
        assert sorted(kinds) == sorted(zookeeper_store.encode_name(n) for n in ODD_NAMES)
        assert all("/" not in kind and kind not in (".", "..") for kind in kinds)
        assert {zookeeper_store.decode_name(kind) for kind in kinds} == set(ODD_NAMES)
        await store.close()

    run(main())


def test_a_registry_on_digest_credentials_is_closed_to_others(
    zookeeper: ZooKeeperEnsemble,
) -> None:
    root = f"/test-{uuid.uuid4().hex[:12]}"

    async def main() -> None:
        store = await ZooKeeperStore.connect(zookeeper.url(root, ("agora", "s3cret")))
        await store.apply([[Put("agents", "a1", b"1")]])
        same_user = await ZooKeeperStore.connect(zookeeper.url(root, ("agora", "s3cret")))
        await same_user.apply([[Put("agents", "a1", b"2")]])
        stranger = await started(zookeeper.url(root))
        assert (await stranger.get(f"{store.base}/agents/a1"))[0] == b"2"  # world-readable
        with pytest.raises(NoAuthError):
            await stranger.set(f"{store.base}/agents/a1", b"vandal")
        assert await store.load() == {"agents": {"a1": b"2"}}
        for closing in (store, same_user, stranger):
            await closing.close()

    run(main())


def test_zookeeper_loads_large_values_in_bounded_reads(zk_url: str) -> None:
    """12 MB of records: load() sizes its multiReads from what it has read so far."""

    async def main() -> None:
        store = await ZooKeeperStore.connect(zk_url)
        values = {f"r{i:02}": bytes([i]) * 400_000 for i in range(30)}
        await store.apply([[Put("big", key, value)] for key, value in values.items()])
        reopened = await ZooKeeperStore.connect(zk_url)
        assert await reopened.load() == {"big": values}
        await reopened.close()
        await store.close()

    run(main())


def test_a_write_waits_out_a_short_zookeeper_outage(own_zookeeper: ZooKeeperEnsemble) -> None:
    """The server is down and back within the session timeout: the session, the candidacy
    and so the fence survive, and a write issued meanwhile lands once it is back."""
    url = own_zookeeper.url("/mesos")

    async def main() -> None:
        master = await started(url, session_timeout_s=10.0)
        contender = Contender(master, b"{}")
        store = ZooKeeperStore(master, fence=await contender.start())
        await store.apply([[Put("agents", "a1", b"before")]])
        own_zookeeper.kill_node(0)
        await contender.wait_for(Candidacy.SUSPENDED, timeout_s=5)
        write = asyncio.ensure_future(store.apply([[Put("agents", "a1", b"during")]]))
        await asyncio.sleep(0)  # the write is under way while no server answers
        assert not write.done()
        await asyncio.to_thread(own_zookeeper.restart_node, 0)
        await asyncio.wait_for(write, 15)
        await contender.wait_for(Candidacy.LEADING, timeout_s=5)
        assert contender.znode == store.fence
        assert (await store.load())["agents"]["a1"] == b"during"
        await master.close()

    run(main())
