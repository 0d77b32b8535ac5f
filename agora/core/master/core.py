"""`MasterCore`: the Mesos master as a pure state machine.

`handle(event, now)` applies one input and returns the commands to carry out;
`next_deadline()` says when the next `Tick` is due (allocation, pings, re-register and
failover timeouts, offer expiry). The allocator lives inside and is called
synchronously. Handlers for each area live in sibling modules (frameworks, accept,
agents, tasks); this module holds the state, the timers and the shared helpers.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from agora.core.allocator import HierarchicalAllocator, OfferDecision
from agora.core.allocator.explain import Verdict, WhyNot
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.info import AgentInfo, MasterInfo, TaskStatus
from agora.core.master.model import (
    Agent,
    Executor,
    Framework,
    MasterOptions,
    Offer,
    Task,
    UnreachableAgent,
)
from agora.core.master.registry import Operation
from agora.core.seeded import Rng, child, seeded
from agora.core.task_states import Reason, Source, TaskState, can_transition


class TimerKind(Enum):
    PING = 1
    REREGISTER = 2
    FAILOVER = 3
    OFFER = 4
    RECOVERY = 5  # agents recovered from the registry had their time to re-register
    REGISTRY_GC = 6


Handler = Callable[["MasterCore", Any, float], None]
_HANDLERS: dict[type, Handler] = {}


def handles(*event_types: type) -> Callable[[Handler], Handler]:
    """Register a module-level function as the handler of some event types."""

    def register(func: Handler) -> Handler:
        for event_type in event_types:
            _HANDLERS[event_type] = func
        return func

    return register


class MasterCore:
    def __init__(
        self,
        master_info: MasterInfo,
        options: MasterOptions | None = None,
        rng: Rng | None = None,
    ) -> None:
        # Importing the handler modules registers their handlers.
        from agora.core.master import accept, agents, frameworks, recovery, tasks  # noqa: F401

        self.info = master_info
        self.options = options or MasterOptions()
        self.rng = rng if rng is not None else seeded(0)
        self.allocator = HierarchicalAllocator(self.options.allocator, child(self.rng))
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: dict[str, Framework] = {}
        self.agents: dict[str, Agent] = {}
        self._agent_by_address: dict[tuple[str, int], str] = {}
        self.unreachable_agents: dict[str, UnreachableAgent] = {}
        self.gone_agents: dict[str, float] = {}
        # Admitted agents read from the registry after a failover that have not
        # re-registered with this master yet (Mesos's `slaves.recovered`).
        self.recovered_agents: dict[str, AgentInfo] = {}
        self.maintenance_schedule: Mapping[str, Any] = {}
        self.offers: dict[str, Offer] = {}
        # Kills for tasks on agents that were away: sent when the agent re-registers.
        self.pending_kills: dict[str, dict[tuple[str, str], cmd.KillTask]] = {}
        self.last_pass_decisions: list[OfferDecision] = []
        self.last_pass_was_full = False
        self._out: list[cmd.Command] = []
        self._timers: list[tuple[float, int, TimerKind, str, int]] = []
        self._timer_seq = 0
        self._now = 0.0
        self._next_full_allocation: float | None = None
        self._next_framework = 0
        self._next_agent = 0
        self._next_offer = 0

    # ================================================================ interface

    def handle(self, event: ev.MasterEvent, now: float) -> list[cmd.Command]:
        self._now = now
        self._out = []
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise TypeError(f"the master core has no handler for {type(event).__name__}")
        handler(self, event, now)
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        """When `handle(Tick(), t)` should next be called (None: only on new events)."""
        candidates = []
        if self._timers:
            candidates.append(self._timers[0][0])
        if self.allocator.pending():
            candidates.append(self._now)
        elif self._next_full_allocation is not None and self.allocator.has_offer_seekers():
            candidates.append(self._next_full_allocation)
        return min(candidates) if candidates else None

    def explain(self, framework_id: str) -> list[WhyNot]:
        """For each agent, why the framework is not being offered it (per role): the
        answer to "why is my task pending"."""
        out: list[WhyNot] = []
        for agent_id in sorted(self.agents):
            agent = self.agents[agent_id]
            held = sorted(i for i in agent.offers if self.offers[i].framework_id == framework_id)
            if held:
                message = f"the framework holds outstanding offers {held} for this agent"
                out.append(WhyNot(framework_id, agent_id, None, Verdict.OUTSTANDING_OFFER, message))
            elif not agent.connected:
                message = "the agent is disconnected (waiting for it to re-register)"
                out.append(
                    WhyNot(framework_id, agent_id, None, Verdict.AGENT_DISCONNECTED, message)
                )
            else:
                out.extend(self.allocator.explain(framework_id, agent_id, self._now))
        return out

    # ================================================================== output

    def add_agent_record(self, agent: Agent) -> None:
        self.agents[agent.id] = agent
        self._agent_by_address[(agent.info.hostname, agent.info.port)] = agent.id

    def drop_agent_record(self, agent: Agent) -> None:
        del self.agents[agent.id]
        address = (agent.info.hostname, agent.info.port)
        if self._agent_by_address.get(address) == agent.id:
            del self._agent_by_address[address]

    def agent_at(self, hostname: str, port: int) -> Agent | None:
        """The registered agent at this address, if any."""
        agent_id = self._agent_by_address.get((hostname, port))
        return None if agent_id is None else self.agents.get(agent_id)

    def emit(self, command: cmd.Command) -> None:
        self._out.append(command)

    def persist(self, operation: Operation) -> None:
        """Ask for a registry change; every command emitted after it waits until it is
        durable (the shell's contract), so emit it before what depends on it."""
        self.emit(cmd.Persist(operation))

    def respond(self, request_id: str, status: int, message: str = "") -> None:
        self.emit(cmd.Respond(request_id, status, message))

    def to_framework(self, framework: Framework, event: cmd.SchedulerEvent) -> None:
        """Stream an event to a framework; events for a disconnected framework are dropped
        (reliable updates are retried by agents, everything else is best effort)."""
        if framework.connected:
            self.emit(cmd.SendToFramework(framework.id, event))

    def to_agent(self, agent: Agent, message: cmd.AgentMessage) -> None:
        if agent.connected:
            self.emit(cmd.SendToAgent(agent.id, message))

    def send_status(self, framework: Framework, status: TaskStatus) -> None:
        self.to_framework(framework, cmd.Update(status.visible_to(framework.partition_aware)))

    def master_status(
        self,
        task_id: str,
        state: TaskState,
        reason: Reason | None,
        message: str,
        agent_id: str | None = None,
        executor_id: str | None = None,
        unreachable_time: float | None = None,
    ) -> TaskStatus:
        """A status update generated by the master (no uuid: never acknowledged)."""
        return TaskStatus(
            task_id=task_id,
            state=state,
            source=Source.MASTER,
            reason=reason,
            message=message,
            agent_id=agent_id,
            executor_id=executor_id,
            timestamp=self._now,
            unreachable_time=unreachable_time,
        )

    # ===================================================================== ids

    def new_framework_id(self) -> str:
        framework_id = f"{self.info.id}-{self._next_framework:04d}"
        self._next_framework += 1
        return framework_id

    def new_agent_id(self) -> str:
        agent_id = f"{self.info.id}-S{self._next_agent}"
        self._next_agent += 1
        return agent_id

    def new_offer_id(self) -> str:
        offer_id = f"{self.info.id}-O{self._next_offer}"
        self._next_offer += 1
        return offer_id

    def new_stream_id(self) -> str:
        bits = self.rng.getrandbits(128)
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"

    # ================================================================== timers

    def arm(self, deadline: float, kind: TimerKind, key: str, epoch: int = 0) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (deadline, self._timer_seq, kind, key, epoch))

    def pop_due(self, now: float) -> list[tuple[TimerKind, str, int]]:
        due = []
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, key, epoch = heapq.heappop(self._timers)
            due.append((kind, key, epoch))
        return due

    # ================================================================== offers

    def allocate(self, now: float) -> None:
        full = self._next_full_allocation is None or now >= self._next_full_allocation
        self.last_pass_decisions = []
        self.last_pass_was_full = False
        if not full and not self.allocator.pending():
            return
        if full:
            self._next_full_allocation = now + self.options.allocation_interval_s
        decisions = self.allocator.allocate(now, full=full)
        self.last_pass_decisions = decisions
        self.last_pass_was_full = full
        batches: dict[str, list[cmd.OfferView]] = {}
        for decision in decisions:
            view = self._make_offer(decision, now)
            if view is not None:
                batches.setdefault(decision.framework_id, []).append(view)
        for framework_id, views in batches.items():
            self.to_framework(self.frameworks[framework_id], cmd.Offers(tuple(views)))

    def _make_offer(self, decision: OfferDecision, now: float) -> cmd.OfferView | None:
        framework = self.frameworks.get(decision.framework_id)
        agent = self.agents.get(decision.agent_id)
        usable = (
            framework is not None
            and framework.active
            and agent is not None
            and agent.connected
            and agent.active
        )
        if not usable:
            self.allocator.recover_resources(
                decision.framework_id, decision.agent_id, decision.resources, 0, now
            )
            return None
        assert framework is not None and agent is not None
        timeout = self.options.offer_timeout_s
        offer = Offer(
            id=self.new_offer_id(),
            framework_id=framework.id,
            agent_id=agent.id,
            role=decision.role,
            resources=decision.resources,
            expires_at=None if timeout is None else now + timeout,
        )
        self.offers[offer.id] = offer
        framework.offers.add(offer.id)
        agent.offers.add(offer.id)
        if offer.expires_at is not None:
            self.arm(offer.expires_at, TimerKind.OFFER, offer.id)
        return cmd.OfferView(
            id=offer.id,
            framework_id=framework.id,
            agent_id=agent.id,
            hostname=agent.info.hostname,
            agent_port=agent.info.port,
            role=offer.role,
            resources=offer.resources,
            attributes=agent.info.attributes,
            executor_ids=tuple(sorted(framework.executors.get(agent.id, {}))),
            region=agent.info.region,
            zone=agent.info.zone,
        )

    def remove_offer(self, offer: Offer, rescind: bool, refuse_seconds: object = 0) -> None:
        """Take an offer back; its resources return to the allocator (with a filter only
        when a framework declined them)."""
        self.offers.pop(offer.id, None)
        framework = self.frameworks.get(offer.framework_id)
        agent = self.agents.get(offer.agent_id)
        if framework is not None:
            framework.offers.discard(offer.id)
            if rescind:
                self.to_framework(framework, cmd.Rescind(offer.id))
        if agent is not None:
            agent.offers.discard(offer.id)
        self.allocator.recover_resources(
            offer.framework_id, offer.agent_id, offer.resources, refuse_seconds, self._now
        )

    def rescind_offers(self, offer_ids: set[str]) -> None:
        for offer_id in sorted(offer_ids):
            offer = self.offers.get(offer_id)
            if offer is not None:
                self.remove_offer(offer, rescind=True)

    # =================================================================== tasks

    def add_task(self, framework: Framework, agent: Agent, task: Task) -> None:
        framework.tasks[task.task_id] = task
        agent.tasks.setdefault(framework.id, {})[task.task_id] = task

    def set_task_state(self, task: Task, state: TaskState) -> bool:
        """Move a task along the transition table; False (and no change) if illegal.

        Updates arrive from the network: an out-of-order or duplicate one must not
        crash the master, and a terminal state must never be left.
        """
        if state is TaskState.UNKNOWN or not can_transition(task.state, state):
            return False
        was_terminal = task.state.is_terminal
        task.state = state
        if state.is_terminal and not was_terminal:
            self._release_task(task)
        return True

    def _release_task(self, task: Task) -> None:
        """A task's latest state became terminal: its resources go back to the allocator."""
        if task.unreachable_time is None:
            self.allocator.recover_resources(
                task.framework_id,
                task.agent_id,
                task.resources,
                0,
                self._now,
                reoffer=self.options.reoffer_freed_resources,
            )

    def complete_task(self, task: Task) -> None:
        """Forget an active task: move it to the framework's completed list."""
        framework = self.frameworks.get(task.framework_id) or self.completed_frameworks.get(
            task.framework_id
        )
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            by_id = agent.tasks.get(task.framework_id)
            if by_id is not None:
                by_id.pop(task.task_id, None)
                if not by_id:
                    del agent.tasks[task.framework_id]
        if framework is not None:
            framework.tasks.pop(task.task_id, None)
            framework.unreachable_tasks.pop(task.task_id, None)
            framework.completed_tasks.append(task)

    def terminate_task(
        self,
        task: Task,
        state: TaskState,
        reason: Reason,
        message: str,
        notify: bool = True,
    ) -> None:
        """The master decides a task's fate (agent lost, framework removed...): record a
        terminal state, release its resources, tell the framework (best effort)."""
        if not task.state.is_terminal:
            self.set_task_state(task, state)
        status = self.master_status(task.task_id, state, reason, message, task.agent_id)
        task.record(status)
        framework = self.frameworks.get(task.framework_id)
        if notify and framework is not None:
            self.send_status(framework, status)
        self.complete_task(task)

    def add_executor(self, framework: Framework, agent: Agent, executor: Executor) -> None:
        framework.executors.setdefault(agent.id, {})[executor.executor_id] = executor
        agent.executors.setdefault(framework.id, {})[executor.executor_id] = executor

    def remove_executor(self, executor: Executor, recover: bool = True) -> None:
        framework = self.frameworks.get(executor.framework_id)
        agent = self.agents.get(executor.agent_id)
        if framework is not None:
            by_id = framework.executors.get(executor.agent_id, {})
            by_id.pop(executor.executor_id, None)
            if not by_id:
                framework.executors.pop(executor.agent_id, None)
        if agent is not None:
            by_id = agent.executors.get(executor.framework_id, {})
            by_id.pop(executor.executor_id, None)
            if not by_id:
                agent.executors.pop(executor.framework_id, None)
        if recover:
            self.allocator.recover_resources(
                executor.framework_id, executor.agent_id, executor.resources, 0, self._now
            )


@handles(ev.Tick)
def on_tick(master: MasterCore, event: ev.Tick, now: float) -> None:
    from agora.core.master import agents, frameworks, recovery

    for kind, key, epoch in master.pop_due(now):
        if kind is TimerKind.PING:
            agents.ping_due(master, key, epoch, now)
        elif kind is TimerKind.REREGISTER:
            agents.reregister_timeout(master, key, epoch, now)
        elif kind is TimerKind.FAILOVER:
            frameworks.failover_timeout(master, key, epoch, now)
        elif kind is TimerKind.OFFER:
            offer = master.offers.get(key)
            if offer is not None:
                master.remove_offer(offer, rescind=True)
        elif kind is TimerKind.RECOVERY:
            recovery.recovery_timeout(master, now)
        elif kind is TimerKind.REGISTRY_GC:
            recovery.registry_gc(master, now)
    master.allocate(now)
