"""What must hold after every step of a simulation.

After every master step:
  * per agent, offered + allocated + free == total (allocator accounting, exact);
  * the allocator's per-framework holdings equal the master's offers, live tasks and
    executors on each agent (no resources leak or appear);
  * a task the leading master has recorded as terminal never becomes live again;
  * no task id runs on two hosts at once;
  * the master never says a task is gone, dropped or unknown while it runs under the
    agent id the master names (as each update is carried out);
  * DRF: after a full allocation pass, no framework got an offer while another
    framework of its role with a lower share, no filter on that agent and nothing
    received in that pass could have taken it (and likewise between top-level roles).
As each command is carried out, and whenever the registry is settled, the master and
its durable registry agree (agora/testing/sim/durability.py). Once the run has settled,
agora/testing/sim/outcomes.py checks where everything ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.info import TaskStatus
from agora.core.resources import EMPTY, Resources
from agora.core.task_states import Source, TaskState
from agora.testing.sim.durability import check_carried_out, check_registry_settled
from agora.testing.sim.host import TaskKey

DECLARED_GONE = frozenset({TaskState.GONE, TaskState.DROPPED, TaskState.UNKNOWN})

if TYPE_CHECKING:
    from agora.core.allocator import HierarchicalAllocator, OfferDecision
    from agora.core.master.core import MasterCore
    from agora.testing.sim.master import SimMaster
    from agora.testing.sim.world import Simulation


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
        self.ever_terminal: set[tuple[str, str]] = set()  # by the leading master
        self.final_states: dict[TaskKey, TaskState] = {}  # how tasks really ended
        # Tasks whose outcome no agent can report any more (their agent process or host
        # died with it): the framework can only learn it from the master.
        self.vanished_tasks: set[TaskKey] = set()
        # Every status update an agent took into a stream, by task (uuids, in order).
        self.generated: dict[TaskKey, list[bytes]] = {}
        self.operator_calls: dict[str, ev.MasterEvent] = {}  # request id -> call
        self.learned_agent_ids: set[str] = set()  # every id an agent was told is its own
        self._master: MasterCore | None = None

    def fail(self, message: str) -> NoReturn:
        raise InvariantViolation(self.sim, message)

    @property
    def master(self) -> MasterCore:
        assert self._master is not None
        return self._master

    # ----------------------------------------------------------- ground truth

    def record_final(self, framework_id: str, task_id: str, state: TaskState) -> None:
        self.final_states.setdefault((framework_id, task_id), state)

    def vanished(self, key: TaskKey) -> None:
        self.vanished_tasks.add(key)

    def update_generated(self, key: TaskKey, status: TaskStatus) -> None:
        assert status.uuid is not None
        self.generated.setdefault(key, []).append(status.uuid)

    # ------------------------------------------------------------------ each step

    def new_leader(self) -> None:
        """A new master rebuilds its task records from agents: what an earlier master
        held terminal says nothing about the new one's records."""
        self.ever_terminal.clear()

    def after_step(
        self, leader: SimMaster, event: ev.MasterEvent, commands: Sequence[cmd.Command]
    ) -> None:
        self._master = leader.core
        if isinstance(event, ev.MarkAgentGone | ev.UpdateWeights):
            self.operator_calls[event.request_id] = event
        self._accounting()
        self._master_matches_allocator()
        self._terminal_is_final()
        self._no_task_runs_twice()
        if isinstance(event, ev.Tick) and self.master.last_pass_was_full:
            self._drf_order()
            self._work_conserving()

    def carried_out(self, leader: SimMaster, command: cmd.Command) -> None:
        check_carried_out(self, leader, command)
        if isinstance(command, cmd.SendToFramework) and isinstance(command.event, cmd.Update):
            self._no_running_task_declared_gone(command.framework_id, command.event.status)

    def _no_running_task_declared_gone(self, framework_id: str, status: TaskStatus) -> None:
        """The master may say a task is gone, dropped or unknown only if it is: not while
        its process still runs under an agent that goes by the id the master names
        (that agent may be about to re-register after a failover: the master must wait
        for it, Mesos §4.5). TASK_LOST may be wrong (it is never sure); an operator's
        TASK_GONE_BY_OPERATOR is the operator's call. Tasks of frameworks that do not
        checkpoint are given up when their agent disconnects (and killed if it comes
        back), so the master may call them gone from then on."""
        if status.source is not Source.MASTER or status.state not in DECLARED_GONE:
            return
        if not any(f.checkpoint for f in self.sim.frameworks if f.framework_id == framework_id):
            return
        key = (framework_id, status.task_id)
        for agent in self.sim.agents:
            ids = {agent.agent_id, agent.disk.checkpoint.agent_id}
            if status.agent_id in ids and key in agent.running():
                self.fail(
                    f"the master told {framework_id} that task {status.task_id} is "
                    f"{status.state.value} ({status.reason}) while it runs on "
                    f"{agent.hostname} ({status.agent_id})"
                )

    def registry_settled(self, leader: SimMaster) -> None:
        check_registry_settled(self, leader)

    def _accounting(self) -> None:
        allocator = self.master.allocator
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
        master = self.master
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
        for framework in self.master.frameworks.values():
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
        master = self.master
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
        allocator = self.master.allocator
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
        allocator = self.master.allocator
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

    def at_end(self) -> None:
        from agora.testing.sim.outcomes import check_settled

        check_settled(self)


def _has_children(allocator: HierarchicalAllocator, role: str) -> bool:
    roles = allocator.roles().roles()
    return any(r.startswith(role + "/") for r in roles)
