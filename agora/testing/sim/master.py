"""One master process in the simulation: the real `MasterCore`, the registrar in front
of the durable registry, and the connections that live and die with the process.

A process is elected with an epoch; everything sent to it is stamped with the epoch the
sender believed was leading, and is lost if that process is no longer the leader when
it arrives (its address is dead). When the process dies its core, its queued commands,
its timer and every connection it held go with it; the store stays.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.core import MasterCore
from agora.core.master.info import MasterInfo
from agora.testing.sim.registrar import DurableRegistry, SimRegistrar

if TYPE_CHECKING:
    from agora.testing.sim.framework import SimFramework
    from agora.testing.sim.world import Simulation


class Caller(Protocol):
    """Someone waiting on an HTTP answer from the master (a framework, the operator)."""

    name: str
    leader: int | None  # the master epoch it believes leads

    def responded(self, response: cmd.Respond) -> None: ...


class SimMaster:
    def __init__(self, sim: Simulation, epoch: int, store: DurableRegistry) -> None:
        self.sim = sim
        self.epoch = epoch
        self.alive = True
        self.core = MasterCore(
            MasterInfo(id=f"sim{sim.seed}m{epoch}"),
            sim.master_options,
            random.Random(sim.rng.random()),
        )
        self.registrar = SimRegistrar(
            store,
            self._carry_out,
            sim.after,
            sim.config.registry_write_s,
            random.Random(sim.rng.random()),
        )
        self.registrar.on_idle = lambda: sim.checker.registry_settled(self)
        self.requests: dict[str, Caller] = {}
        self.streams: dict[str, tuple[SimFramework, str]] = {}
        self.agent_connection: dict[str, str] = {}  # agent id -> connection id
        self._tick_at: float | None = None
        self._tick_token = 0

    # ==================================================================== input

    def handle(self, event: ev.MasterEvent) -> None:
        sim = self.sim
        if self._superseded(event):
            # As the real master's shell: a registration written on an older connection
            # and delivered after the agent's newer one is stale (MasterService.superseded).
            sim.trace.append(f"{sim.now:9.3f} -> m{self.epoch} stale {_brief(event)}")
            return
        sim.trace.append(f"{sim.now:9.3f} -> m{self.epoch} {type(event).__name__} {_brief(event)}")
        commands = self.core.handle(event, sim.now)
        for command in commands:
            for observe in sim.command_observers:
                observe(command)
        self.registrar.dispatch(commands)
        sim.checker.after_step(self, event, commands)
        if self.registrar.idle:
            sim.checker.registry_settled(self)
        self._arm_tick()

    def _superseded(self, event: ev.MasterEvent) -> bool:
        if isinstance(event, ev.ReregisterAgent):
            agent = self.core.agents.get(event.agent_id)
        elif isinstance(event, ev.RegisterAgent):
            agent = self.core.agent_at(event.info.hostname, event.info.port)
        else:
            return False
        return agent is not None and _serial(event.connection_id) < _serial(agent.connection_id)

    def _arm_tick(self) -> None:
        """One timer for the core at its next deadline. Re-arming for an earlier
        deadline supersedes the armed one (its token goes stale), so the heap never
        holds more than one live tick."""
        deadline = self.core.next_deadline()
        if deadline is None:
            return
        if self._tick_at is not None and self._tick_at <= deadline:
            return
        self._tick_at = deadline
        self._tick_token += 1
        token = self._tick_token
        self.sim.at(deadline, lambda: self._tick(token))

    def _tick(self, token: int) -> None:
        if token != self._tick_token or not self.alive:
            return  # superseded by an earlier deadline, or the process is dead
        self._tick_at = None
        deadline = self.core.next_deadline()
        if deadline is not None and deadline <= self.sim.now:
            self.handle(ev.Tick())
        else:
            self._arm_tick()

    def expect_answer(self, request_id: str, caller: Caller) -> None:
        self.requests[request_id] = caller

    # ================================================================== output

    def _carry_out(self, command: cmd.Command) -> None:
        self.sim.checker.carried_out(self, command)
        if isinstance(command, cmd.SendToAgent):
            self._to_agent(command.agent_id, command.message)
        elif isinstance(command, cmd.SendToFramework):
            self._to_framework(command.framework_id, command.event)
        elif isinstance(command, cmd.AcceptAgent):
            self.agent_connection[command.agent_id] = command.connection_id
        elif isinstance(command, cmd.Respond):
            self._answer(command.request_id, lambda c: c.responded(command))
        elif isinstance(command, cmd.OpenStream):
            self._open_stream(command)
        elif isinstance(command, cmd.RefuseSubscription):
            self._answer(
                command.request_id,
                lambda c: _as_framework(c).subscription_refused(
                    command.request_id, command.message
                ),
            )
        elif isinstance(command, cmd.CloseStream):
            self._close_stream(command)
        elif isinstance(command, cmd.DropAgentConnection):
            self._drop_connection(command)

    def _drop_connection(self, command: cmd.DropAgentConnection) -> None:
        """The master closes an agent's connection: the agent re-registers, or, if its
        id is refused for good (it is gone), starts afresh as a new agent."""
        connection = command.connection_id
        agent = self.sim.agent_on(connection)
        if agent is None:
            return
        if command.refused:
            self.sim.after(0.1, partial(agent.refused, connection))
        else:
            self.sim.after(0.1, partial(agent.connection_broke, connection))

    def _open_stream(self, command: cmd.OpenStream) -> None:
        # The answer to SUBSCRIBE is the stream itself: it comes first on it.
        framework = _as_framework(self.requests.pop(command.request_id))
        self.streams[command.framework_id] = (framework, command.stream_id)
        self._reliable(
            f"stream-{command.stream_id}",
            lambda: framework.stream_opened(
                command.request_id, command.framework_id, command.stream_id
            ),
        )

    def _close_stream(self, command: cmd.CloseStream) -> None:
        current = self.streams.get(command.framework_id)
        if current is not None and current[1] == command.stream_id:
            del self.streams[command.framework_id]
            framework = current[0]
            self._reliable(
                f"stream-{command.stream_id}", lambda: framework.stream_closed(command.stream_id)
            )

    def _answer(self, request_id: str, deliver: Callable[[Caller], None]) -> None:
        caller = self.requests.pop(request_id, None)
        if caller is not None:
            self._reliable(f"http-{caller.name}", lambda: deliver(caller))

    def _to_agent(self, agent_id: str, message: cmd.AgentMessage) -> None:
        connection = self.agent_connection.get(agent_id)
        agent = None if connection is None else self.sim.agent_on(connection)
        if agent is None or connection is None:
            return
        bound = connection
        self.sim.network.agent_link(
            agent.hostname, self.sim.now, lambda: agent.receive(bound, message)
        )

    def _to_framework(self, framework_id: str, event: cmd.SchedulerEvent) -> None:
        current = self.streams.get(framework_id)
        if current is None:
            return
        framework, stream_id = current
        self._reliable(f"stream-{stream_id}", lambda: framework.receive(stream_id, event))

    def _reliable(self, channel: str, deliver: Callable[[], None]) -> None:
        # What the process sent before it died may still arrive (it was on the wire).
        self.sim.network.reliable(channel, self.sim.now, deliver)

    # ==================================================================== death

    def crash(self, write_lands: bool) -> None:
        """The process dies: its core and queue are dropped, its sockets reset. Each
        framework's stream ends after whatever was already sent on it; agents notice
        their connection break a moment later."""
        self.alive = False
        self.registrar.crash(write_lands)
        self.requests.clear()
        for framework, stream_id in self.streams.values():
            self._reliable(f"stream-{stream_id}", partial(framework.stream_closed, stream_id))
        self.streams.clear()
        for agent in self.sim.agents:
            connection = agent.connection
            if connection is not None and agent.leader == self.epoch:
                self.sim.after(
                    self.sim.rng.uniform(0.01, 1.0),
                    partial(agent.connection_broke, connection),
                )
        self.agent_connection.clear()


def _as_framework(caller: Caller) -> SimFramework:
    from agora.testing.sim.framework import SimFramework

    assert isinstance(caller, SimFramework)
    return caller


def _serial(connection_id: str) -> int:
    """The simulation's connections are `conn<n>`, numbered as they are opened."""
    return int(connection_id.removeprefix("conn"))


def _brief(event: ev.MasterEvent) -> str:
    for name in ("task_id", "agent_id", "framework_id", "offer_ids"):
        value = getattr(event, name, None)
        if value:
            return f"{name}={value}"
    status = getattr(event, "status", None)
    if status is not None:
        return f"task={status.task_id} {status.state.value}"
    return ""
