"""Leader election and detection (agora.zookeeper.election) against real ZooKeeper servers:
who leads, who follows, what a detector sees, and what a contender tells its owner when
ZooKeeper fails under it (a standalone server killed; the leader of a 3-node ensemble
killed, which a master's candidacy survives)."""

from __future__ import annotations

import asyncio
import functools
import json
import operator
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from agora.core.master.info import MasterInfo
from agora.master.registry.store import Put
from agora.master.registry.zookeeper_store import ZooKeeperStore
from agora.testing.zookeeper import ZooKeeperEnsemble
from agora.zookeeper.election import Candidacy, Contender, Detector, master_info_data
from agora.zookeeper.session import SessionState, ZooKeeperSession
from agora.zookeeper.url import parse_zk_url


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


def master(n: int) -> MasterInfo:
    return MasterInfo(id=f"master-{n}", ip="127.0.0.1", port=5050 + n, hostname=f"m{n}")


async def session_on(url: str, session_timeout_s: float = 10.0) -> ZooKeeperSession:
    session = ZooKeeperSession(parse_zk_url(url), session_timeout_s=session_timeout_s)
    await session.start()
    return session


def ids(seen: list[MasterInfo | None]) -> list[str | None]:
    return [info.id if info else None for info in seen]


def test_the_first_contender_leads_and_the_next_takes_over(zk_url: str) -> None:
    async def main() -> None:
        watcher = await session_on(zk_url)
        seen: list[MasterInfo | None] = []
        detector = Detector(watcher, on_change=seen.append)
        assert await detector.start() is None  # the root does not even exist yet
        sessions = [await session_on(zk_url) for _ in range(3)]
        contenders = [Contender(s, master(i)) for i, s in enumerate(sessions)]
        for contender in contenders:
            await contender.start()
        assert [c.state for c in contenders] == [
            Candidacy.LEADING,
            Candidacy.FOLLOWING,
            Candidacy.FOLLOWING,
        ]
        await detector.wait_for(lambda info: info is not None, 5)
        for index in range(3):
            assert contenders[index].leading
            assert detector.leader == master(index)
            await sessions[index].close()
            assert contenders[index].state is Candidacy.LOST
            if index < 2:
                await contenders[index + 1].wait_for(Candidacy.LEADING, timeout_s=5)
                await detector.wait_for(functools.partial(operator.eq, master(index + 1)), 5)
        await detector.wait_for(lambda info: info is None, 5)
        assert ids(seen) == ["master-0", "master-1", "master-2", None]
        await watcher.close()

    run(main())


def test_the_candidacy_znode_is_what_mesos_writes(zk_url: str) -> None:
    async def main() -> None:
        session = await session_on(zk_url)
        contender = Contender(session, master(1))
        znode = await contender.start()
        root = parse_zk_url(zk_url).path
        assert znode.startswith(f"{root}/json.info_") and len(znode) == len(root) + 21
        data, stat = await session.get(znode)
        assert stat.ephemeral_owner == session.session_id
        assert data == master_info_data(master(1))
        info = json.loads(data)
        assert info["address"] == {"hostname": "m1", "ip": "127.0.0.1", "port": 5051}
        assert info["pid"] == "master@127.0.0.1:5051" and info["ip"] == 16777343
        assert b" " not in data  # compact JSON
        await session.close()

    run(main())


def test_a_detector_skips_children_that_are_not_candidacies(zk_url: str) -> None:
    async def main() -> None:
        session = await session_on(zk_url)
        root = parse_zk_url(zk_url).path
        for name in ("log_replicas", "registry", "info_0000000000", "json.info_x", "aaa"):
            await session.create(f"{root}/{name}", b"not json", makepath=True)
        detector = Detector(session)
        assert await detector.start() is None
        contender = Contender(await session_on(zk_url), master(7))
        await contender.start()
        assert await detector.wait_for(lambda info: info is not None, 5) == master(7)
        assert detector.leader_znode == contender.znode.rsplit("/", 1)[1]  # type: ignore[union-attr]
        await contender.session.close()
        assert await detector.wait_for(lambda info: info is None, 5) is None
        await session.close()

    run(main())


def test_a_leader_znode_without_master_info_means_no_leader(zk_url: str) -> None:
    async def main() -> None:
        session = await session_on(zk_url)
        root = parse_zk_url(zk_url).path
        await session.create(
            f"{root}/json.info_", b"{oops", ephemeral=True, sequence=True, makepath=True
        )
        detector = Detector(session)
        assert await detector.start() is None
        assert detector.leader_znode is not None  # it saw the znode and could not read it
        await session.close()

    run(main())


def test_a_deleted_or_withdrawn_candidacy_is_lost_for_good(zk_url: str) -> None:
    async def main() -> None:
        first, second = await session_on(zk_url), await session_on(zk_url)
        a, b = Contender(first, master(1)), Contender(second, master(2))
        await a.start()
        await b.start()
        heard: list[Candidacy] = []
        a.add_listener(heard.append)
        assert a.znode is not None
        await second.delete(a.znode)  # an operator removes it
        await a.wait_for(Candidacy.LOST, timeout_s=5)
        assert a.lost_reason == f"the candidacy znode {a.znode} was deleted"
        await b.wait_for(Candidacy.LEADING, timeout_s=5)
        assert heard == [Candidacy.LOST] and first.state is SessionState.CONNECTED
        await b.withdraw()
        assert b.state is Candidacy.LOST and b.lost_reason == "withdrawn"
        assert await first.get_children(parse_zk_url(zk_url).path) == []
        await first.close()
        await second.close()

    run(main())


def test_a_killed_server_suspends_then_loses_the_candidacy(
    own_zookeeper: ZooKeeperEnsemble,
) -> None:
    """The owner hears SUSPENDED at once, LOST after the session timeout; when the server
    is back the old session cannot come back to life (no zombie leader in ZooKeeper)."""
    url = own_zookeeper.url("/mesos")
    timeout_s = 4.0

    async def main() -> None:
        session = await session_on(url, session_timeout_s=timeout_s)
        detector = Detector(session)
        contender = Contender(session, master(1))
        znode = await contender.start()
        await detector.start()
        heard: list[tuple[Candidacy, float]] = []
        old_session = session.session_id
        contender.add_listener(lambda state: heard.append((state, time.monotonic())))
        killed = time.monotonic()
        own_zookeeper.kill_node(0)
        await contender.wait_for(Candidacy.SUSPENDED, timeout_s=5)
        assert detector.leader == master(1)  # a blip keeps the last known leader
        await contender.wait_for(Candidacy.LOST, timeout_s=timeout_s + 5)
        assert [state for state, _ in heard] == [Candidacy.SUSPENDED, Candidacy.LOST]
        assert heard[0][1] - killed < 1.0
        assert heard[1][1] - heard[0][1] == pytest.approx(timeout_s, abs=1.0)
        assert await detector.wait_for(lambda info: True, 1) is None  # who leads is unknown
        own_zookeeper.restart_node(0)
        await session.wait_connected(15)
        assert session.session_id != old_session  # a new session, never the old one
        # The server restored the old session from disk and expires it: the znode goes.
        probe = await session_on(url)
        await until_async(lambda: probe.exists(znode), lambda stat: stat is None, timeout_s + 10)
        assert contender.state is Candidacy.LOST
        await probe.close()
        await session.close()

    run(main())


async def until_async(read: Any, done: Any, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not done(await read()):
            await asyncio.sleep(0.1)


def test_the_candidacy_survives_a_zookeeper_leader_failover(
    zookeeper_ensemble: ZooKeeperEnsemble,
) -> None:
    url = zookeeper_ensemble.url("/mesos")

    async def main() -> None:
        session = await session_on(url)
        contender = Contender(session, master(1))
        fence = await contender.start()
        store = ZooKeeperStore(session, fence=fence)
        await store.apply([[Put("agents", "a1", b"before")]])
        detector = Detector(await session_on(url))
        assert await detector.start() == master(1)
        heard: list[Candidacy] = []
        contender.add_listener(heard.append)
        session_id = session.session_id
        zookeeper_ensemble.kill_node(zookeeper_ensemble.leader_index())
        await contender.wait_for(Candidacy.SUSPENDED, timeout_s=10)
        await contender.wait_for(Candidacy.LEADING, timeout_s=10)
        assert heard == [Candidacy.SUSPENDED, Candidacy.LEADING]
        assert session.session_id == session_id and contender.znode == fence
        await store.apply([[Put("agents", "a1", b"after")]])  # still fenced on a live znode
        assert (await store.load())["agents"]["a1"] == b"after"
        assert detector.leader == master(1)
        await detector.session.close()
        await session.close()

    run(main())
