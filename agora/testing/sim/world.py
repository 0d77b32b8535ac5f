"""The simulation: the real master core, simulated agents and frameworks, a faulty
network, and a heap of timed events, all driven by one seed.

Every step delivers one event; after each step the invariant checker runs. A run has
two phases: `duration_s` with faults (lost, duplicated, delayed messages, partitioned
agents, broken framework streams), then `quiesce_s` with a healed network, after
which everything must have settled consistently.
"""

from __future__ import annotations

import heapq
import random
import traceback
from collections import deque
from collections.abc import Callable

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.core import MasterCore
from agora.core.master.info import MasterInfo
from agora.core.master.model import MasterOptions
from agora.core.resource_text import parse_resources
from agora.testing.sim.agent import SimAgent
from agora.testing.sim.config import SimConfig
from agora.testing.sim.framework import SimFramework
from agora.testing.sim.invariants import InvariantChecker, InvariantViolation
from agora.testing.sim.network import Network

AGENT_SHAPES = (
    "cpus:4;mem:8192;disk:10000;ports:[31000-32000]",
    "cpus:8;mem:16384;disk:20000;ports:[31000-32000]",
    "cpus:2;mem:4096;disk:5000;ports:[31000-31500]",
)
ROLES = ("*", "eng", "eng/web", "ops")


class Simulation:
    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = (
            config if config is not None else SimConfig.draw(random.Random(seed * 7919 + 1))
        )
        self.master_options = MasterOptions()
        self.master = MasterCore(
            MasterInfo(id=f"sim{seed}"), self.master_options, random.Random(self.rng.random())
        )
        self.now = 0.0
        self.steps = 0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._tick_at: float | None = None
        self._tick_token = 0
        self._connections = 0
        self.network = Network(self.config, random.Random(self.rng.random()), self.at)
        self.agents = [
            SimAgent(self, i, parse_resources(self.rng.choice(AGENT_SHAPES)))
            for i in range(self.config.agents)
        ]
        self._agent_by_host = {a.hostname: a for a in self.agents}
        self.frameworks = [
            SimFramework(self, i, self._roles(), partition_aware=self.rng.random() < 0.5)
            for i in range(self.config.frameworks)
        ]
        self._connection_host: dict[str, str] = {}
        self._agent_connection: dict[str, str] = {}
        self._requests: dict[str, SimFramework] = {}
        self._streams: dict[str, tuple[SimFramework, str]] = {}
        self.trace: deque[str] = deque(maxlen=40)
        # Callables that see every command the master emits (for reports and tests).
        self.command_observers: list[Callable[[cmd.Command], None]] = []
        self.checker = InvariantChecker(self)

    def _roles(self) -> tuple[str, ...]:
        count = self.rng.randint(1, 2)
        return tuple(sorted(self.rng.sample(ROLES, count)))

    # =================================================================== clock

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.now), self._seq, action))

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.at(self.now + delay, action)

    def new_connection(self, host: str) -> str:
        self._connections += 1
        connection = f"conn{self._connections}"
        self._connection_host[connection] = host
        return connection

    # ================================================================== master

    def deliver_to_master(self, event: ev.MasterEvent) -> None:
        self.trace.append(f"{self.now:9.3f} -> master {type(event).__name__} {_brief(event)}")
        commands = self.master.handle(event, self.now)
        for command in commands:
            for observe in self.command_observers:
                observe(command)
            self._route(command)
        self.checker.after_step(event, commands)
        self._arm_tick()

    def _arm_tick(self) -> None:
        """One timer for the master at its next deadline. Re-arming for an earlier
        deadline supersedes the armed one (its token goes stale), so the heap never
        holds more than one live tick."""
        deadline = self.master.next_deadline()
        if deadline is None:
            return
        if self._tick_at is not None and self._tick_at <= deadline:
            return
        self._tick_at = deadline
        self._tick_token += 1
        token = self._tick_token
        self.at(deadline, lambda: self._tick(token))

    def _tick(self, token: int) -> None:
        if token != self._tick_token:
            return  # superseded by an earlier deadline
        self._tick_at = None
        deadline = self.master.next_deadline()
        if deadline is not None and deadline <= self.now:
            self.deliver_to_master(ev.Tick())
        else:
            self._arm_tick()

    def _route(self, command: cmd.Command) -> None:
        if isinstance(command, cmd.SendToAgent):
            self._to_agent(command.agent_id, command.message)
        elif isinstance(command, cmd.SendToFramework):
            self._to_framework(command.framework_id, command.event)
        elif isinstance(command, cmd.AcceptAgent):
            self._agent_connection[command.agent_id] = command.connection_id
        elif isinstance(command, cmd.Respond):
            self._answer(command.request_id, lambda f: f.responded(command))
        elif isinstance(command, cmd.OpenStream):
            # The answer to SUBSCRIBE is the stream itself: it comes first on it.
            framework = self._requests.pop(command.request_id)
            self._streams[command.framework_id] = (framework, command.stream_id)
            self.network.reliable(
                f"stream-{command.stream_id}",
                self.now,
                lambda: framework.stream_opened(command.framework_id, command.stream_id),
            )
        elif isinstance(command, cmd.RefuseSubscription):
            self._answer(command.request_id, lambda f: f.subscription_refused(command.message))
        elif isinstance(command, cmd.CloseStream):
            current = self._streams.get(command.framework_id)
            if current is not None and current[1] == command.stream_id:
                del self._streams[command.framework_id]
                framework = current[0]
                self.network.reliable(
                    f"stream-{command.stream_id}",
                    self.now,
                    lambda: framework.stream_closed(command.stream_id),
                )
        elif isinstance(command, cmd.DropAgentConnection):
            host = self._connection_host.get(command.connection_id)
            agent = self._agent_by_host.get(host or "")
            if agent is not None and agent.connection == command.connection_id:
                self.after(0.1, agent.disconnected)

    def _answer(self, request_id: str, deliver: Callable[[SimFramework], None]) -> None:
        framework = self._requests.pop(request_id, None)
        if framework is not None:
            self.network.reliable(f"http-{framework.name}", self.now, lambda: deliver(framework))

    def _to_agent(self, agent_id: str, message: cmd.AgentMessage) -> None:
        connection = self._agent_connection.get(agent_id)
        if connection is None:
            return
        host = self._connection_host[connection]
        agent = self._agent_by_host[host]
        self.network.agent_link(host, self.now, lambda: agent.receive(connection, message))

    def _to_framework(self, framework_id: str, event: cmd.SchedulerEvent) -> None:
        current = self._streams.get(framework_id)
        if current is None:
            return
        framework, stream_id = current
        self.network.reliable(
            f"stream-{stream_id}", self.now, lambda: framework.receive(stream_id, event)
        )

    # ========================================================= agents, frameworks

    def agent_to_master(self, agent: SimAgent, event: ev.MasterEvent) -> None:
        self.network.agent_link(agent.hostname, self.now, lambda: self.deliver_to_master(event))

    def framework_to_master(self, framework: SimFramework, event: ev.MasterEvent) -> None:
        request_id = getattr(event, "request_id", None)
        if request_id is not None:
            self._requests[request_id] = framework
        self.network.reliable(
            f"http-{framework.name}", self.now, lambda: self.deliver_to_master(event)
        )

    # ================================================================== faults

    def _schedule_faults(self) -> None:
        c = self.config
        for _ in range(c.partitions):
            agent = self.rng.choice(self.agents)
            start = self.rng.uniform(0, c.duration_s)
            length = self.rng.uniform(*c.partition_s)
            self.at(start, lambda a=agent, n=length: self._partition(a, n))  # type: ignore[misc]
        for _ in range(c.stream_breaks):
            self.at(self.rng.uniform(0, c.duration_s), self._break_stream)
        self.at(c.duration_s, self._calm)

    def _partition(self, agent: SimAgent, length: float) -> None:
        if self.network.is_partitioned(agent.hostname) or not self.network.faults_on:
            return
        self.trace.append(f"{self.now:9.3f} !! partition {agent.hostname} for {length:.1f}s")
        self.network.partition(agent.hostname)
        if (
            self.rng.random() < self.config.socket_break_rate
            and agent.agent_id
            and agent.connection
        ):
            agent_id, connection = agent.agent_id, agent.connection
            self.after(
                self.rng.uniform(1, 20),
                lambda: self.deliver_to_master(
                    ev.AgentDisconnected(agent_id=agent_id, connection_id=connection)
                ),
            )
            self.after(self.rng.uniform(1, 20), agent.disconnected)
        self.after(length, lambda: self.network.heal(agent.hostname))

    def _break_stream(self) -> None:
        if not self._streams or not self.network.faults_on:
            return
        framework_id = self.rng.choice(sorted(self._streams))
        framework, stream_id = self._streams.pop(framework_id)
        self.trace.append(f"{self.now:9.3f} !! stream of {framework.name} breaks")
        self.after(
            self.rng.uniform(0.01, 2),
            lambda: self.deliver_to_master(
                ev.FrameworkDisconnected(framework_id=framework_id, stream_id=stream_id)
            ),
        )
        self.after(self.rng.uniform(0.01, 2), lambda: framework.stream_closed(stream_id))

    def _calm(self) -> None:
        self.trace.append(f"{self.now:9.3f} !! network heals, faults stop")
        self.network.faults_on = False
        for agent in self.agents:
            self.network.heal(agent.hostname)

    # ===================================================================== run

    def run(self) -> None:
        for agent in self.agents:
            self.at(self.rng.uniform(0, 2), agent.start)
        for framework in self.frameworks:
            self.at(self.rng.uniform(0, 5), framework.start)
        self._schedule_faults()
        end = self.config.duration_s + self.config.quiesce_s
        while self._heap and self._heap[0][0] <= end:
            when, _, action = heapq.heappop(self._heap)
            self.now = when
            self.steps += 1
            action()
        self.checker.at_end()


def _brief(event: ev.MasterEvent) -> str:
    for name in ("task_id", "agent_id", "framework_id", "offer_ids"):
        value = getattr(event, name, None)
        if value:
            return f"{name}={value}"
    status = getattr(event, "status", None)
    if status is not None:
        return f"task={status.task_id} {status.state.value}"
    return ""


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
