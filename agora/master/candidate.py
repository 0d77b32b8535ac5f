"""A master's life in a ZooKeeper-elected group (`agora master --zk zk://.../path`).

Every master contends (Mesos's layout: an ephemeral sequential `json.info_` znode with its
MasterInfo; the lowest sequence leads) and detects the leader. When its candidacy leads,
it recovers the registry from ZooKeeper and leads; the registry store is fenced on the
candidacy znode, so a deposed leader's late writes are refused by ZooKeeper itself.

Safety: the moment the candidacy is SUSPENDED (the ZooKeeper connection dropped) the
master stops acting as leader: core, streams and agent links are dropped at once. This
is safe because ZooKeeper lets a successor lead only after expiring our session, which
takes longer than noticing the drop (see agora.zookeeper.election). If the same session
comes back and the znode still leads, the master leads again, recovering afresh from the
registry (agents and frameworks re-register, as after any failover). A LOST candidacy is
final; the master contends anew with a new znode once ZooKeeper answers again, where
Mesos would exit and let a supervisor restart it. Followers answer 307 to the leader they
detect (503 when there is none).

The registry lives at `<path>/log_replicas/registry/...`: where Mesos keeps its replicated
log, a child that Mesos's own clients (pymesos included) already skip when they look for
the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agora.core.master.info import MasterInfo
from agora.master.registry.store import StoreError
from agora.master.registry.zookeeper_store import ZooKeeperStore
from agora.master.service import MasterService
from agora.zookeeper.election import Candidacy, Contender, Detector
from agora.zookeeper.session import ZooKeeperError, ZooKeeperSession
from agora.zookeeper.url import ZooKeeperUrl

log = logging.getLogger("agora.master")

REGISTRY_CHILD = "log_replicas"
RETRY_S = 1.0


class Candidate:
    def __init__(
        self, service: MasterService, url: ZooKeeperUrl, session_timeout_s: float = 10.0
    ) -> None:
        self.service = service
        self.url = url
        self.session = ZooKeeperSession(url, session_timeout_s=session_timeout_s)
        self.detector: Detector | None = None
        self.contender: Contender | None = None
        self._leading_task: asyncio.Task[None] | None = None
        self.terms = 0  # times this master started leading

    async def run(self, stop: asyncio.Event) -> None:
        """Contend, lead when elected, and contend again after losing, until `stop`."""
        try:
            await self.session.start()
        except ZooKeeperError as error:
            log.warning("ZooKeeper %s does not answer yet (%s); waiting", self.url, error)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await self.session.wait_connected(RETRY_S)
                    break
        if stop.is_set():
            await self.session.close()
            return
        self.detector = Detector(self.session, on_change=self._on_leader)
        self._on_leader(await self.detector.start())
        try:
            while not stop.is_set():
                contender = await self._contend(stop)
                if contender is None:
                    break
                lost = asyncio.ensure_future(contender.wait_for(Candidacy.LOST))
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait({lost, stopped}, return_when=asyncio.FIRST_COMPLETED)
                lost.cancel()
                stopped.cancel()
                if not stop.is_set():
                    log.warning("candidacy lost (%s); contending again", contender.lost_reason)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), RETRY_S)
        finally:
            await self._shut_down()

    async def _contend(self, stop: asyncio.Event) -> Contender | None:
        while not stop.is_set():
            contender = Contender(self.session, self.service.info, on_change=self._on_candidacy)
            self.contender = contender
            try:
                await contender.start()
                return contender
            except (ZooKeeperError, TimeoutError) as error:
                log.warning("cannot contend in %s yet: %s", self.url, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_S)
        return None

    async def _shut_down(self) -> None:
        self.service.abdicate("master stopping")
        if self.contender is not None:
            with contextlib.suppress(ZooKeeperError, TimeoutError):
                await asyncio.wait_for(self.contender.withdraw(), 5.0)
        if self.detector is not None:
            await self.detector.close()
        await self.session.close()

    # ------------------------------------------------------------------ changes

    def _on_leader(self, leader: MasterInfo | None) -> None:
        if not self.service.leading:
            self.service.leader = leader

    def _on_candidacy(self, state: Candidacy) -> None:
        contender = self.contender
        if state is Candidacy.LEADING and contender is not None:
            if self._leading_task is None or self._leading_task.done():
                self._leading_task = asyncio.get_running_loop().create_task(self._lead(contender))
            return
        # FOLLOWING, SUSPENDED or LOST: not the leader, from this instant.
        if self._leading_task is not None:
            self._leading_task.cancel()
            self._leading_task = None
        self.service.abdicate(f"ZooKeeper candidacy {state.value}")
        if self.detector is not None:
            self.service.leader = self.detector.leader if state is Candidacy.FOLLOWING else None

    async def _lead(self, contender: Contender) -> None:
        assert contender.znode is not None
        store = ZooKeeperStore(
            self.session, root=self.url.child(REGISTRY_CHILD), fence=contender.znode
        )
        try:
            await self.service.lead(store, still_leading=lambda: contender.leading)
        except StoreError as error:
            # Cannot read the registry: let another master try (it may be our session).
            log.error("cannot recover the registry: %s; withdrawing the candidacy", error)
            await contender.withdraw()
            return
        if self.service.leading:
            self.terms += 1
