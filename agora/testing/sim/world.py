"""The simulation: the real master core, simulated agents, frameworks and an operator,
a faulty network, a durable registry, and a heap of timed events, all driven by one
seed.

Every step runs one event; after each master step the invariant checker runs. A run has
two phases: `duration_s` with faults (lost, duplicated, delayed messages, partitioned
agents, broken framework streams, master crashes and failovers, agent restarts, host
reboots, lost unsynced writes; see agora/testing/sim/faults.py), then `quiesce_s` with
a healed network and no more faults, after which everything must have settled
consistently.

Masters are elected with increasing epochs. Agents, frameworks and the operator learn
of a new leader a little later (leader detection); whatever they send is stamped with
the epoch they believe leads and is lost if that master is not the leader when it
arrives.
"""

from __future__ import annotations

import heapq
import random
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.core import MasterCore
from agora.core.master.model import MasterOptions
from agora.core.resource_text import parse_resources
from agora.testing.sim.agent import SimAgent
from agora.testing.sim.config import SimConfig
from agora.testing.sim.faults import Faults
from agora.testing.sim.framework import SimFramework
from agora.testing.sim.invariants import InvariantChecker, InvariantViolation
from agora.testing.sim.master import Caller, SimMaster
from agora.testing.sim.network import Network
from agora.testing.sim.operator import SimOperator
from agora.testing.sim.registrar import DurableRegistry

AGENT_SHAPES = (
    "cpus:4;mem:8192;disk:10000;ports:[31000-32000]",
    "cpus:8;mem:16384;disk:20000;ports:[31000-32000]",
    "cpus:2;mem:4096;disk:5000;ports:[31000-31500]",
)
ROLES = ("*", "eng", "eng/web", "ops")


@dataclass
class FaultStats:
    """How often each process-level fault really struck (the network counts its own)."""

    master_crashes: int = 0
    crashes_in_registry_writes: int = 0
    elections: int = 0
    agent_restarts: int = 0
    host_reboots: int = 0
    reboots_keeping_id: int = 0
    agent_writes_lost: int = 0  # checkpoint writes lost with an agent crash
    update_writes_lost: int = 0  # ... of them status updates
    late_resubscriptions: int = 0
    reconcile_retries: int = 0  # frameworks asking again after no answer


class Detector(Protocol):
    """Someone who follows the leading master (an agent, a framework, the operator)."""

    leader: int | None

    def leader_detected(self, epoch: int) -> None: ...


class Simulation:
    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = (
            config if config is not None else SimConfig.draw(random.Random(seed * 7919 + 1))
        )
        self.master_options = MasterOptions(
            agent_reregister_timeout_s=self.config.agent_reregister_timeout_s
        )
        self.now = 0.0
        self.steps = 0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._connections = 0
        self.stats = FaultStats()
        self.store = DurableRegistry()
        self.leader: SimMaster | None = None
        self.epoch = 0
        self.network = Network(self.config, random.Random(self.rng.random()), self.at)
        self.agents = [
            SimAgent(self, i, parse_resources(self.rng.choice(AGENT_SHAPES)))
            for i in range(self.config.agents)
        ]
        self._agent_by_host = {a.hostname: a for a in self.agents}
        self.frameworks = [
            SimFramework(
                self,
                i,
                self._roles(),
                partition_aware=self.rng.random() < 0.5,
                checkpoint=self.rng.random() < self.config.checkpointing_rate,
            )
            for i in range(self.config.frameworks)
        ]
        self.operator = SimOperator(self)
        self._connection_host: dict[str, str] = {}
        self.trace: deque[str] = deque(maxlen=40)
        # Callables that see every command a master emits (for reports and tests).
        self.command_observers: list[Callable[[cmd.Command], None]] = []
        self.checker = InvariantChecker(self)
        self.faults = Faults(self)

    def _roles(self) -> tuple[str, ...]:
        count = self.rng.randint(1, 2)
        return tuple(sorted(self.rng.sample(ROLES, count)))

    @property
    def master(self) -> MasterCore:
        """The leading master's core."""
        if self.leader is None:
            raise InvariantViolation(self, "no master leads")
        return self.leader.core

    # =================================================================== clock

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.now), self._seq, action))

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.at(self.now + delay, action)

    # ============================================================== connections

    def new_connection(self, host: str) -> str:
        self._connections += 1
        connection = f"conn{self._connections}"
        self._connection_host[connection] = host
        return connection

    def agent_on(self, connection: str) -> SimAgent | None:
        return self._agent_by_host.get(self._connection_host.get(connection, ""))

    # =============================================================== leadership

    def current_epoch(self) -> int | None:
        return None if self.leader is None else self.leader.epoch

    def elect(self) -> None:
        """A new master leads: it recovers from the durable registry, and everyone
        else detects it a little later (some frameworks much later)."""
        self.epoch += 1
        self.stats.elections += 1
        epoch = self.epoch
        self.trace.append(f"{self.now:9.3f} !! master m{epoch} elected")
        self.leader = SimMaster(self, epoch, self.store)
        self.checker.new_leader()
        self.faults.elected(self.leader)
        self.leader.handle(ev.RegistryRecovered(registry=self.store.registry))
        if epoch == 1:
            return  # the first leader is there before anyone starts
        detect_s = self.config.detect_s
        parties: list[Detector] = [*self.agents, self.operator]
        for party in parties:
            self.after(self.rng.uniform(*detect_s), partial(self._detect, party))
        for framework in self.frameworks:
            delay = self.rng.uniform(*detect_s)
            if self.rng.random() < self.config.late_framework_rate:
                delay = self.rng.uniform(*self.config.late_s)
                self.stats.late_resubscriptions += 1
            self.after(delay, partial(self._detect, framework))

    def _detect(self, party: Detector) -> None:
        """The party's leader detector reports whoever leads now (if anyone does)."""
        epoch = self.current_epoch()
        if epoch is not None and epoch != party.leader:
            party.leader_detected(epoch)

    def crash_master(self, write_lands: bool) -> None:
        leader = self.leader
        if leader is None:
            return
        self.trace.append(f"{self.now:9.3f} !! master m{leader.epoch} crashes")
        self.stats.master_crashes += 1
        self.leader = None
        leader.crash(write_lands)

    # ========================================================= to the master

    def deliver_to_master(self, epoch: int, event: ev.MasterEvent) -> None:
        leader = self.leader
        if leader is None or leader.epoch != epoch:
            return  # sent to a master that is not (or no longer) leading: lost
        leader.handle(event)

    def agent_to_master(self, agent: SimAgent, event: ev.MasterEvent) -> None:
        epoch = agent.leader
        if epoch is None:
            return
        self.network.agent_link(
            agent.hostname, self.now, lambda: self.deliver_to_master(epoch, event)
        )

    def framework_to_master(self, caller: Caller, event: ev.MasterEvent) -> None:
        """An HTTP call (reliable, in order, per caller); its answer goes to `caller`."""
        epoch = caller.leader
        if epoch is None:
            return
        request_id: str | None = getattr(event, "request_id", None)

        def arrive() -> None:
            leader = self.leader
            if leader is None or leader.epoch != epoch:
                return
            if request_id is not None:
                leader.expect_answer(request_id, caller)
            leader.handle(event)

        self.network.reliable(f"http-{caller.name}", self.now, arrive)

    def agent_connection_reset(self, agent: SimAgent, connection: str) -> None:
        """The agent's process died: its master sees the socket close, unless the
        link is cut (then only the missed pings tell)."""
        leader, agent_id = self.leader, agent.agent_id
        if leader is None or agent_id is None or self.network.is_partitioned(agent.hostname):
            return
        if leader.agent_connection.get(agent_id) != connection:
            return
        epoch = leader.epoch
        self.after(
            self.rng.uniform(0.01, 0.5),
            lambda: self.deliver_to_master(
                epoch, ev.AgentDisconnected(agent_id=agent_id, connection_id=connection)
            ),
        )

    # ===================================================================== run

    def run(self) -> None:
        self.elect()
        for agent in self.agents:
            self.at(self.rng.uniform(0, 2), agent.start)
        for framework in self.frameworks:
            self.at(self.rng.uniform(0, 5), framework.start)
        self.operator.start()
        self.faults.schedule()
        end = self.config.duration_s + self.config.quiesce_s
        while self._heap and self._heap[0][0] <= end:
            when, _, action = heapq.heappop(self._heap)
            self.now = when
            self.steps += 1
            action()
        self.checker.at_end()


def run_seed(seed: int, config: SimConfig | None = None) -> Simulation:
    """Run one seed; raise InvariantViolation (with a reproduction line) on failure."""
    sim = Simulation(seed, config)
    try:
        sim.run()
    except InvariantViolation:
        raise
    except Exception as error:  # a crash is a failure of the seed too
        where = traceback.format_exc(limit=-6)
        raise InvariantViolation(
            sim, f"crashed: {type(error).__name__}: {error}\n{where}"
        ) from error
    return sim
