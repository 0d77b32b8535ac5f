"""The faults a simulation injects during `duration_s`, each at a time drawn from the
seed:

  * partitions: an agent is cut off from the master for a while (the master may or may
    not see its socket close);
  * broken framework event streams (the framework fails over to a new stream);
  * master crashes: the process dies (some of them in the middle of a registry write,
    which then lands unheard or is lost; some of those take the next leader down in its
    first write too, while it recovers), and a new master is elected after a while;
  * agent restarts: the agent process dies and starts again on its work dir (some of
    them right after a checkpoint write began, which is then lost);
  * host reboots: no process survives; the agent comes back under its id and reports
    its tasks gone, or, its work dir wiped, as a new agent (and the operator marks its
    old identity gone).

The operator also changes role weights now and then (registry writes of its own).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from agora.core.master import events as ev
from agora.testing.sim.durability import WEIGHED_ROLES

if TYPE_CHECKING:
    from agora.testing.sim.agent import SimAgent
    from agora.testing.sim.master import SimMaster
    from agora.testing.sim.world import Simulation

MARK_GONE_S = (5.0, 60.0)  # from a reboot to the operator marking the old agent gone
REBOOT_KEEPS_ID_RATE = 0.5  # the rest come back as new agents, their work dirs wiped
SUCCESSOR_DIES_RATE = 0.3  # a master dying in a write takes its successor's first one too


class Faults:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self._successor_dies_in_write = False

    def schedule(self) -> None:
        sim, c = self.sim, self.sim.config
        rng = sim.rng
        for _ in range(c.partitions):
            agent = rng.choice(sim.agents)
            start = rng.uniform(0, c.duration_s)
            length = rng.uniform(*c.partition_s)
            sim.at(start, partial(self._partition, agent, length))
        for _ in range(c.stream_breaks):
            sim.at(rng.uniform(0, c.duration_s), self._break_stream)
        for _ in range(c.master_crashes):
            in_write = rng.random() < c.crash_in_write_rate
            sim.at(rng.uniform(5, c.duration_s), partial(self._crash_master, in_write))
        for _ in range(c.agent_restarts):
            agent, in_write = rng.choice(sim.agents), rng.random() < c.crash_in_write_rate
            sim.at(
                rng.uniform(5, c.duration_s),
                partial(self._crash_agent, agent, in_write, False),
            )
        for _ in range(c.host_reboots):
            agent = rng.choice(sim.agents)
            sim.at(
                rng.uniform(5, c.duration_s),
                partial(self._crash_agent, agent, False, True),
            )
        for _ in range(c.weight_updates):
            role, weight = rng.choice(WEIGHED_ROLES), rng.choice((0.5, 2.0, 3.0))
            sim.at(
                rng.uniform(0, c.duration_s),
                partial(sim.operator.set_weight, role, weight),
            )
        sim.at(c.duration_s, self._calm)

    # ---------------------------------------------------------------- network

    def _partition(self, agent: SimAgent, length: float) -> None:
        sim = self.sim
        if sim.network.is_partitioned(agent.hostname) or not sim.network.faults_on:
            return
        sim.trace.append(f"{sim.now:9.3f} !! partition {agent.hostname} for {length:.1f}s")
        sim.network.partition(agent.hostname)
        epoch = sim.current_epoch()
        if (
            sim.rng.random() < sim.config.socket_break_rate
            and agent.agent_id
            and agent.connection
            and epoch is not None
        ):
            agent_id, connection = agent.agent_id, agent.connection
            sim.after(
                sim.rng.uniform(1, 20),
                lambda: sim.deliver_to_master(
                    epoch, ev.AgentDisconnected(agent_id=agent_id, connection_id=connection)
                ),
            )
            sim.after(sim.rng.uniform(1, 20), lambda: agent.connection_broke(connection))
        sim.after(length, lambda: sim.network.heal(agent.hostname))

    def _break_stream(self) -> None:
        sim = self.sim
        leader = sim.leader
        if leader is None or not leader.streams or not sim.network.faults_on:
            return
        framework_id = sim.rng.choice(sorted(leader.streams))
        framework, stream_id = leader.streams.pop(framework_id)
        sim.trace.append(f"{sim.now:9.3f} !! stream of {framework.name} breaks")
        epoch = leader.epoch
        sim.after(
            sim.rng.uniform(0.01, 2),
            lambda: sim.deliver_to_master(
                epoch, ev.FrameworkDisconnected(framework_id=framework_id, stream_id=stream_id)
            ),
        )
        sim.after(sim.rng.uniform(0.01, 2), lambda: framework.stream_closed(stream_id))

    def _calm(self) -> None:
        sim = self.sim
        sim.trace.append(f"{sim.now:9.3f} !! network heals, faults stop")
        sim.network.faults_on = False
        for agent in sim.agents:
            agent.disk.on_write = None
        if sim.leader is not None:
            sim.leader.registrar.on_write = None
        for agent in sim.agents:
            sim.network.heal(agent.hostname)

    # ---------------------------------------------------------------- masters

    def _crash_master(self, in_write: bool) -> None:
        sim = self.sim
        leader = sim.leader
        if not sim.network.faults_on:
            return
        if leader is None:
            # Between leaders: the next one dies in its first write, while recovering.
            self._successor_dies_in_write = in_write
            return
        if in_write:
            self._die_in_next_write(leader)
        else:
            self._master_dies(leader.epoch, write_lands=False)

    def elected(self, leader: SimMaster) -> None:
        """A new leader is about to recover (and write that it leads)."""
        if self._successor_dies_in_write and self.sim.network.faults_on:
            self._successor_dies_in_write = False
            self._die_in_next_write(leader)

    def _die_in_next_write(self, leader: SimMaster) -> None:
        """Strike inside the master's next registry write (none before the faults stop:
        no crash); the write then lands unheard or is lost."""
        sim, epoch, registrar = self.sim, leader.epoch, leader.registrar

        def strike(write_s: float) -> None:
            registrar.on_write = None
            sim.stats.crashes_in_registry_writes += 1
            lands = sim.rng.random() < 0.5
            sim.after(sim.rng.uniform(0, write_s * 0.99), lambda: self._master_dies(epoch, lands))
            if sim.rng.random() < SUCCESSOR_DIES_RATE:
                self._successor_dies_in_write = True

        registrar.on_write = strike

    def _master_dies(self, epoch: int, write_lands: bool) -> None:
        sim = self.sim
        if sim.current_epoch() != epoch:
            return  # that master is already gone
        sim.crash_master(write_lands)
        sim.after(sim.rng.uniform(*sim.config.election_s), sim.elect)

    # ----------------------------------------------------------------- agents

    def _crash_agent(self, agent: SimAgent, in_write: bool, reboot: bool) -> None:
        sim = self.sim
        if not agent.up or not sim.network.faults_on:
            return
        if not in_write:
            self._agent_dies(agent, agent.incarnation, reboot)
            return
        incarnation = agent.incarnation

        def strike(write_s: float) -> None:
            agent.disk.on_write = None
            sim.after(
                sim.rng.uniform(0, write_s * 0.99),
                lambda: self._agent_dies(agent, incarnation, reboot=False),
            )

        agent.disk.on_write = strike  # (no write before the faults stop: no crash)

    def _agent_dies(self, agent: SimAgent, incarnation: int, reboot: bool) -> None:
        sim = self.sim
        if not agent.up or agent.incarnation != incarnation:
            return
        agent.disk.on_write = None
        old_id = agent.agent_id
        what = "reboots" if reboot else "restarts"
        sim.trace.append(f"{sim.now:9.3f} !! {agent.hostname} {what} (was {old_id})")
        if reboot:
            sim.stats.host_reboots += 1
            keep_id = sim.rng.random() < REBOOT_KEEPS_ID_RATE
            sim.stats.reboots_keeping_id += keep_id
            agent.reboot(keep_id)
            if old_id is not None and not keep_id:
                sim.after(sim.rng.uniform(*MARK_GONE_S), lambda: sim.operator.mark_gone(old_id))
        else:
            sim.stats.agent_restarts += 1
            agent.crash()
        sim.after(sim.rng.uniform(*sim.config.agent_down_s), agent.restart)
