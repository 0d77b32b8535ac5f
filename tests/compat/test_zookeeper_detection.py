"""Unmodified pymesos and mesoshttp find the leading master in the znodes Agora's Contender
writes, with their own ZooKeeper detection code (pymesos.detector.MasterDetector and the
JSON parsing of MesosSchedulerDriver; mesoshttp's MesosClient zk:// detection)."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import mesoshttp.client  # type: ignore[import-untyped]
import pymesos  # type: ignore[import-untyped]
import pymesos.detector  # type: ignore[import-untyped]
import pytest

from agora.core.master.info import MasterInfo
from agora.master.registry.store import Put
from agora.master.registry.zookeeper_store import ZooKeeperStore
from agora.testing.cluster import wait_until
from agora.testing.zookeeper import ZooKeeperEnsemble
from agora.zookeeper.election import Contender
from agora.zookeeper.session import ZooKeeperSession
from agora.zookeeper.url import parse_zk_url


class RecordingDriver(pymesos.MesosSchedulerDriver):  # type: ignore[misc]
    """pymesos's scheduler driver, unstarted; only where it would connect is recorded."""

    def __init__(self) -> None:
        super().__init__(None, {"user": "", "name": "detect"}, "zk://unused/")
        self.masters: list[str | None] = []

    def change_master(self, master: str | None) -> None:
        self.masters.append(master)


class Masters:
    """Contenders in their own sessions, driven from a background event loop (the clients
    under test are blocking)."""

    def __init__(self, url: str) -> None:
        self.url = parse_zk_url(url)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sessions: dict[int, ZooKeeperSession] = {}

    def call(self, make: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(30)

    def contend(self, info: MasterInfo) -> Contender:
        async def start() -> Contender:
            session = ZooKeeperSession(self.url)
            await session.start()
            contender = Contender(session, info)
            await contender.start()
            self.sessions[info.port] = session
            return contender

        contender: Contender = self.call(start)
        return contender

    def add_registry(self) -> None:
        """A `registry` child beside the candidacies, as an HA master's store makes."""

        async def write() -> None:
            store = await ZooKeeperStore.connect(self.url)
            await store.apply([[Put("agents", "a1", b"{}")]])
            await store.close()

        self.call(write)

    def stop(self, port: int) -> None:
        self.call(self.sessions.pop(port).close)

    def close(self) -> None:
        for port in list(self.sessions):
            self.stop(port)

        async def drain() -> None:  # contenders wind down in tasks of their own
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.gather(*others, return_exceptions=True)

        self.call(drain)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def masters(zk_url: str) -> Iterator[Masters]:
    running = Masters(zk_url)
    yield running
    running.close()


def master(port: int) -> MasterInfo:
    return MasterInfo(id=f"m{port}", ip="127.0.0.1", port=port, hostname="localhost")


def test_pymesos_follows_the_leader_through_failovers(masters: Masters, zk_url: str) -> None:
    masters.contend(master(5001))
    masters.contend(master(5002))
    masters.add_registry()
    driver = RecordingDriver()
    detector = pymesos.detector.MasterDetector(zk_url[len("zk://") :], driver)
    detector.start()
    try:
        wait_until(lambda: driver.masters, 10, "pymesos to detect a master")
        assert driver.masters == ["127.0.0.1:5001"]
        masters.stop(5001)
        wait_until(lambda: len(driver.masters) > 1, 10, "pymesos to see the failover")
        assert driver.masters == ["127.0.0.1:5001", "127.0.0.1:5002"]
        masters.contend(master(5003))  # a newcomer follows: nothing changes for pymesos
        masters.stop(5002)
        wait_until(lambda: len(driver.masters) > 2, 10, "pymesos to see the second failover")
        assert driver.masters[2] == "127.0.0.1:5003"
    finally:
        detector.stop()


def test_pymesos_sees_no_master_when_the_last_one_goes(masters: Masters, zk_url: str) -> None:
    masters.contend(master(5001))
    driver = RecordingDriver()
    detector = pymesos.detector.MasterDetector(zk_url[len("zk://") :], driver)
    detector.start()
    try:
        wait_until(lambda: driver.masters, 10, "pymesos to detect a master")
        masters.stop(5001)
        wait_until(lambda: len(driver.masters) > 1, 10, "pymesos to see no master")
        assert driver.masters == ["127.0.0.1:5001", None]
    finally:
        detector.stop()


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_master() -> Iterator[int]:
    """Something answering HTTP where the master is said to be (mesoshttp probes it)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    thread.join(10)


@pytest.fixture
def mesos_root(zookeeper: ZooKeeperEnsemble) -> Iterator[str]:
    """mesoshttp reads `/mesos/<child>` whatever the URL says: the root must be /mesos."""
    from kazoo.client import KazooClient

    def clear() -> None:
        client = KazooClient(zookeeper.connect_string)
        client.start()
        client.delete("/mesos", recursive=True)
        client.stop()
        client.close()

    clear()
    yield zookeeper.url("/mesos")
    clear()


def test_mesoshttp_finds_the_leader(mesos_root: str, http_master: int) -> None:
    masters = Masters(mesos_root)
    try:
        masters.contend(master(http_master))
        masters.add_registry()
        client = mesoshttp.client.MesosClient(mesos_urls=[mesos_root], frameworkName="detect")
        # What MesosClient.__register does with a zk:// URL, then its own detection:
        zk_info = mesos_root.replace("zk://", "").split("/")
        found = client._MesosClient__zk_detect(zk_info[0], "/".join(zk_info[1:]))
        assert found == f"http://127.0.0.1:{http_master}"
    finally:
        masters.close()
