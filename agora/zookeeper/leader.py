"""Where the leading master is, for agents and scheduler clients given a `zk://` URL as
their master (Mesos's `--master zk://...`): whichever master ZooKeeper names, followed
as leaders come and go.

    leader = LeaderAddress("zk://127.0.0.1:2181/agora")
    await leader.start()
    host, port = await leader.wait(timeout_s=30)
    leader.address                                    # None while no master leads
    leader.add_listener(lambda address: ...)          # on every change, on the loop
    await leader.close()

(A client given a plain `host:port` needs none of this: a master that does not lead
answers it with a 307 to the one that does.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from agora.core.master.info import MasterInfo
from agora.zookeeper.election import Detector
from agora.zookeeper.session import ZooKeeperError, ZooKeeperSession
from agora.zookeeper.url import parse_zk_url

log = logging.getLogger(__name__)
Address = tuple[str, int]


def is_zk_url(master: str) -> bool:
    return master.startswith(("zk://", "zoo://"))


def address_of(info: MasterInfo | None) -> Address | None:
    return None if info is None else (info.ip, info.port)


class LeaderAddress:
    def __init__(self, master: str, session_timeout_s: float = 10.0) -> None:
        """`master` is a zk:// URL (InvalidZooKeeperUrl otherwise)."""
        self.master = master
        self._session = ZooKeeperSession(parse_zk_url(master), session_timeout_s)
        self._detector: Detector | None = None
        self.address: Address | None = None
        self._listeners: list[Callable[[Address | None], None]] = []
        self._changed = asyncio.Event()

    def add_listener(self, listener: Callable[[Address | None], None]) -> None:
        self._listeners.append(listener)

    async def start(self, timeout_s: float = 15.0) -> None:
        """Connect to ZooKeeper and read the leader (it keeps trying in the background
        when ZooKeeper does not answer within `timeout_s`)."""
        if self._detector is not None:
            return
        try:
            await self._session.start(timeout_s)
        except ZooKeeperError as error:
            log.warning("ZooKeeper %s does not answer yet: %s", self.master, error)
        self._detector = Detector(self._session, on_change=self._on_leader)
        try:
            self._on_leader(await self._detector.start(timeout_s))
        except (ZooKeeperError, TimeoutError) as error:
            log.warning("no leading master known yet: %s", error)

    def _on_leader(self, info: MasterInfo | None) -> None:
        address = address_of(info)
        if address == self.address:
            return
        log.info("leading master: %s", "none" if address is None else f"{address[0]}:{address[1]}")
        self.address = address
        self._changed.set()
        for listener in list(self._listeners):
            listener(address)

    async def wait(self, timeout_s: float | None = None) -> Address:
        """The leader's address once one is known; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while self.address is None:
                self._changed.clear()
                await self._changed.wait()
        return self.address

    async def close(self) -> None:
        if self._detector is not None:
            await self._detector.close()
        await self._session.close()
