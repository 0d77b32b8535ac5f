"""What must hold after every step of a simulation, and once it has settled.

After every master step:
  * per agent, offered + allocated + free == total (allocator accounting, exact);
  * the allocator's per-framework holdings equal the master's offers, live tasks and
    executors on each agent (no resources leak or appear);
  * a task the master has recorded as terminal never becomes live again;
  * no task id runs on two agents at once;
  * DRF: after a full allocation pass, no framework got an offer while another
    framework of its role with a lower share, no filter on that agent and nothing
    received in that pass could have taken it (and likewise between top-level roles).
At the end (network healed, faults stopped, everything given time to settle):
  * every status update was acknowledged (no agent still retrying one);
  * the master holds no task as live or unreachable that no agent runs;
  * every task a framework launched ended, and the framework was told the state the
    task really ended in (as its partition awareness shows it);
  * a framework never saw a task reach two different terminal states.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.resources import EMPTY, Resources
from agora.core.task_states import Reason, TaskState, visible_state

if TYPE_CHECKING:
    from agora.core.allocator import HierarchicalAllocator, OfferDecision
    from agora.testing.sim.framework import SimFramework
    from agora.testing.sim.world import Simulation

UNKNOWN_ANSWERS = frozenset(
    {
        TaskState.LOST,
        TaskState.UNKNOWN,
        TaskState.GONE,
        TaskState.GONE_BY_OPERATOR,
        TaskState.UNREACHABLE,
    }
)


class InvariantViolation(AssertionError):  # noqa: N818 - reads as "an invariant violation"
    def __init__(self, sim: Simulation, message: str) -> None:
        self.seed = sim.seed
        self.message = message
        trace = "\n".join(sim.trace)
        super().__init__(
            f"seed {sim.seed} at t={sim.now:.3f}s (step {sim.steps}): {message}\n"
            f"last events:\n{trace}\n"
            f"reproduce: python -m agora.testing.sim --seed {sim.seed}"
        )


class InvariantChecker:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.ever_terminal: set[tuple[str, str]] = set()
        self.final_states: dict[tuple[str, str], TaskState] = {}

    def fail(self, message: str) -> NoReturn:
        raise InvariantViolation(self.sim, message)

    # ------------------------------------------------------------------ each step

    def after_step(self, event: ev.MasterEvent, commands: Sequence[cmd.Command]) -> None:
        self._accounting()
        self._master_matches_allocator()
        self._terminal_is_final()
        self._no_task_runs_twice()
        if isinstance(event, ev.Tick) and self.sim.master.last_pass_was_full:
            self._drf_order()
            self._work_conserving()

    def _accounting(self) -> None:
        allocator = self.sim.master.allocator
        for agent_id in allocator.agent_ids():
            agent = allocator.agent(agent_id)
            held = EMPTY
            for holding in agent.holdings.values():
                held = held + holding.unallocate().non_shared()
            if agent.available + held != agent.total:
                self.fail(
                    f"agent {agent_id}: offered+allocated ({held}) + free ({agent.available}) "
                    f"!= total ({agent.total})"
                )

    def _master_matches_allocator(self) -> None:
        master = self.sim.master
        allocator = master.allocator
        if set(master.agents) != set(allocator.agent_ids()):
            self.fail(
                f"master agents {sorted(master.agents)} != "
                f"allocator agents {sorted(allocator.agent_ids())}"
            )
        expected: dict[tuple[str, str], Resources] = {}
        for offer in master.offers.values():
            key = (offer.agent_id, offer.framework_id)
            expected[key] = expected.get(key, EMPTY) + offer.resources
        for agent in master.agents.values():
            for task in agent.all_tasks():
                if not task.state.is_terminal:
                    key = (agent.id, task.framework_id)
                    expected[key] = expected.get(key, EMPTY) + task.resources
            for executor in agent.all_executors():
                key = (agent.id, executor.framework_id)
                expected[key] = expected.get(key, EMPTY) + executor.resources
        actual = {
            (agent_id, framework_id): held
            for agent_id in allocator.agent_ids()
            for framework_id, held in allocator.holdings(agent_id).items()
        }
        if expected != actual:
            for key in sorted(set(expected) | set(actual)):
                if expected.get(key) != actual.get(key):
                    self.fail(
                        f"agent {key[0]} framework {key[1]}: master has offers+tasks "
                        f"{expected.get(key)} but the allocator holds {actual.get(key)}"
                    )

    def _terminal_is_final(self) -> None:
        for framework in self.sim.master.frameworks.values():
            for tasks in (framework.tasks, framework.unreachable_tasks):
                for task in tasks.values():
                    key = (framework.id, task.task_id)
                    if task.state.is_terminal:
                        self.ever_terminal.add(key)
                    elif key in self.ever_terminal:
                        self.fail(f"task {key} left a terminal state: now {task.state.value}")

    def _no_task_runs_twice(self) -> None:
        seen: dict[tuple[str, str], str] = {}
        for agent in self.sim.agents:
            for key in agent.running():
                if key in seen:
                    self.fail(f"task {key} runs on {seen[key]} and {agent.hostname} at once")
                seen[key] = agent.hostname

    def _drf_order(self) -> None:
        master = self.sim.master
        allocator = master.allocator
        decisions = master.last_pass_decisions
        got = {(d.framework_id, d.role) for d in decisions}
        roles_served = {d.role for d in decisions}
        for d in decisions:
            agent = allocator.agent(d.agent_id) if allocator.has_agent(d.agent_id) else None
            for framework_id in allocator.framework_ids():
                if framework_id == d.framework_id or (framework_id, d.role) in got:
                    continue
                fw = allocator.framework(framework_id)
                if not fw.wants_offers(d.role) or agent is None:
                    continue
                filters = agent.filters.get(d.role)
                if filters is not None and filters.of_framework(framework_id, self.sim.now):
                    continue
                share = allocator.framework_share(framework_id, d.role)
                if share < d.framework_share:
                    self.fail(
                        f"DRF: {d.framework_id} (share {d.framework_share:.4f}) was offered "
                        f"{d.agent_id} in role {d.role!r} ahead of unfiltered {framework_id} "
                        f"(share {share:.4f})"
                    )
        self._role_order(decisions, roles_served)

    def _work_conserving(self) -> None:
        """After a full pass nothing usable sits idle while a framework wants it: every
        agent's free resources are below the minimum offer size for each role that has an
        active, unsuppressed framework without a filter on that agent."""
        allocator = self.sim.master.allocator
        minimums = allocator.options.min_allocatable
        for agent_id in allocator.agent_ids():
            agent = allocator.agent(agent_id)
            if not agent.activated:
                continue
            for framework_id in allocator.framework_ids():
                fw = allocator.framework(framework_id)
                for role in sorted(fw.roles):
                    if not fw.wants_offers(role):
                        continue
                    filters = agent.filters.get(role)
                    if filters is not None and filters.of_framework(framework_id, self.sim.now):
                        continue
                    free = agent.available.allocatable_to(role).quantities()
                    if any(free.covers(minimum) for minimum in minimums):
                        self.fail(
                            f"{agent_id} keeps {agent.available} idle after a full allocation "
                            f"while {framework_id} wants offers for role {role!r} unfiltered"
                        )

    def _role_order(self, decisions: Sequence[OfferDecision], roles_served: set[str]) -> None:
        allocator = self.sim.master.allocator
        tops = [
            r for r in allocator.roles().roles() if "/" not in r and not _has_children(allocator, r)
        ]
        for d in decisions:
            role = d.role
            if role not in tops:
                continue
            agent = allocator.agent(d.agent_id)
            for other in tops:
                if other == role or other in roles_served:
                    continue
                wanting = [
                    f
                    for f in allocator.framework_ids()
                    if allocator.framework(f).wants_offers(other)
                    and not (
                        agent.filters.get(other)
                        and agent.filters[other].of_framework(f, self.sim.now)
                    )
                ]
                if wanting and allocator.role_share(other) < d.role_share:
                    self.fail(
                        f"DRF: role {role!r} (share {d.role_share:.4f}) was offered "
                        f"{agent.id} ahead of role {other!r} "
                        f"(share {allocator.role_share(other):.4f}) "
                        f"whose frameworks {wanting} wanted offers"
                    )

    # ------------------------------------------------------------------- at the end

    def record_final(self, framework_id: str, task_id: str, state: TaskState) -> None:
        self.final_states.setdefault((framework_id, task_id), state)

    def at_end(self) -> None:
        sim = self.sim
        for agent in sim.agents:
            pending = {k: s for k, s in agent.streams.items() if s.pending}
            connected = {f.framework_id for f in sim.frameworks if f.stream_id is not None}
            stuck = [k for k in pending if k[0] in connected]
            if stuck:
                self.fail(f"{agent.hostname} still retries unacknowledged updates for {stuck[:5]}")
            if agent.running():
                self.fail(f"{agent.hostname} still runs {agent.running()[:5]} after settling")
        for framework in sim.frameworks:
            if framework.framework_id is None:
                continue
            for task_id in framework.launched:
                self._check_task_outcome(framework, task_id)
        self._master_matches_agents()

    def _master_matches_agents(self) -> None:
        """Settled, the master holds no task as live or unreachable that no agent runs."""
        running = {key for agent in self.sim.agents for key in agent.running()}
        for framework in self.sim.master.frameworks.values():
            for tasks in (framework.tasks, framework.unreachable_tasks):
                for task in tasks.values():
                    key = (framework.id, task.task_id)
                    if not task.state.is_terminal and key not in running:
                        self.fail(
                            f"the master still holds task {key} as {task.state.value} "
                            "but no agent runs it"
                        )

    def _check_task_outcome(self, framework: SimFramework, task_id: str) -> None:
        assert framework.framework_id is not None
        seen = framework.observed.get(task_id)
        if seen is None or not seen.states:
            self.fail(f"{framework.name} launched {task_id} but was never told what became of it")
        told = [s.value for s in seen.states]
        reliable = _meaningful(seen.states, seen.reasons)
        truth = self.final_states.get((framework.framework_id, task_id))
        if truth is not None:
            # It ran: its end came through the agent's reliable updates.
            expected = visible_state(truth, framework.partition_aware)
            last = reliable[-1].value if reliable else None
            if last != expected.value:
                self.fail(
                    f"{framework.name} task {task_id}: last told {last} "
                    f"but it ended {truth.value} (told: {told})"
                )
        elif not seen.states[-1].is_terminal:
            # It never ran: the framework must have learnt that (possibly by asking).
            self.fail(f"{framework.name} task {task_id} never ran and was last told {told[-1]}")
        terminal = None
        for state in reliable:
            if state is TaskState.LOST and not framework.partition_aware:
                continue  # a non-partition-aware framework's LOST may come back
            if terminal is not None and state is not terminal:
                self.fail(
                    f"{framework.name} task {task_id} was told {terminal.value} and then "
                    f"{state.value} (told: {told})"
                )
            if state.is_terminal:
                terminal = state


def _has_children(allocator: HierarchicalAllocator, role: str) -> bool:
    roles = allocator.roles().roles()
    return any(r.startswith(role + "/") for r in roles)


def _meaningful(states: list[TaskState], reasons: list[str | None]) -> list[TaskState]:
    """Drop reconciliation answers about tasks the master no longer knows."""
    return [
        state
        for state, reason in zip(states, reasons, strict=True)
        if not (reason == Reason.RECONCILIATION.value and state in UNKNOWN_ANSWERS)
    ]
