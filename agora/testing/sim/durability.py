"""Invariants between what a master says and what its registry holds durably.

As each command is carried out, it is judged against the registry as of that command
(every persist the core emitted before it; see SimRegistrar.view):
  * an agent is told it is (re-)registered only once its admission is durable;
  * a framework hears a master-made TASK_UNREACHABLE (or anything carrying an
    unreachable time) only once the agent is durably unreachable, TASK_GONE_BY_OPERATOR
    only once it is durably gone, a re-registered agent's tasks only once it is durably
    admitted again, and an agent's removal only once it is durably forgotten;
  * the operator hears 200 to MARK_AGENT_GONE or UPDATE_WEIGHTS only once the change is
    durable.
Whenever no write is pending or in flight, the master's view and the store agree:
admitted agents (registered or recovered, with the same AgentInfo), unreachable and
gone agents, role weights, and the leader's MasterInfo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master import registry as reg
from agora.core.task_states import Reason, Source, TaskState

if TYPE_CHECKING:
    from agora.testing.sim.invariants import InvariantChecker
    from agora.testing.sim.master import SimMaster

WEIGHED_ROLES = ("eng", "ops", "eng/web")  # the roles the simulated operator weighs


def check_carried_out(checker: InvariantChecker, leader: SimMaster, command: cmd.Command) -> None:
    registry = leader.registrar.view
    if isinstance(command, cmd.SendToAgent):
        agent_id = _registered_agent(command.message)
        if agent_id is not None and agent_id not in registry.agents:
            checker.fail(
                f"agent {agent_id} was told it is registered before its admission was durable"
            )
    elif isinstance(command, cmd.SendToFramework) and isinstance(command.event, cmd.Update):
        _check_master_update(checker, registry, command.event)
    elif isinstance(command, cmd.Respond) and command.status == 200:
        request = checker.operator_calls.pop(command.request_id, None)
        if request is not None:
            _check_operator_answer(checker, registry, request)


def _registered_agent(message: cmd.AgentMessage) -> str | None:
    """The agent id a message tells an agent is registered, if it is such a message."""
    if isinstance(message, cmd.AgentRegistered | cmd.AgentReregistered):
        return message.agent_id
    return None


def _check_master_update(
    checker: InvariantChecker, registry: reg.Registry, update: cmd.Update
) -> None:
    status = update.status
    agent_id = status.agent_id
    if status.source is not Source.MASTER or agent_id is None:
        return
    what = f"{status.state.value} ({status.reason}) for task {status.task_id} on {agent_id}"
    if status.unreachable_time is not None and agent_id not in registry.unreachable:
        checker.fail(f"{what} was sent before the agent was durably unreachable")
    by_operator = status.reason is Reason.AGENT_REMOVED_BY_OPERATOR
    if (by_operator or status.state is TaskState.GONE_BY_OPERATOR) and (
        agent_id not in registry.gone
    ):
        checker.fail(f"{what} was sent before the agent was durably gone")
    if status.reason is Reason.AGENT_REREGISTERED and agent_id not in registry.agents:
        checker.fail(f"{what} was sent before the agent was durably admitted again")
    if status.reason is Reason.AGENT_RESTARTED and agent_id in registry.agents:
        checker.fail(f"{what} was sent before the agent was durably removed")


def _check_operator_answer(
    checker: InvariantChecker, registry: reg.Registry, request: ev.MasterEvent
) -> None:
    if isinstance(request, ev.MarkAgentGone) and request.agent_id not in registry.gone:
        checker.fail(f"MARK_AGENT_GONE {request.agent_id} answered 200 before it was durable")
    if isinstance(request, ev.UpdateWeights):
        for role, weight in request.weights.items():
            if registry.weights.get(role) != weight:
                checker.fail(f"UPDATE_WEIGHTS {role}={weight} answered 200 before it was durable")


def check_registry_settled(checker: InvariantChecker, leader: SimMaster) -> None:
    """No write pending: the master's view is exactly what the store holds."""
    core, durable = leader.core, leader.registrar.store.registry
    if durable.leader != core.info:
        checker.fail(f"the registry names leader {durable.leader} but {core.info.id} leads")
    admitted = {agent_id: agent.info for agent_id, agent in core.agents.items()}
    admitted.update(core.recovered_agents)
    _same(checker, "admitted agents", set(admitted), set(durable.agents))
    for agent_id, info in admitted.items():
        if durable.agents[agent_id] != info:
            checker.fail(f"agent {agent_id}: the registry holds an older AgentInfo")
    _same(checker, "unreachable agents", set(core.unreachable_agents), set(durable.unreachable))
    _same(checker, "gone agents", set(core.gone_agents), set(durable.gone))
    for role in sorted(set(durable.weights) | set(WEIGHED_ROLES)):
        weight = durable.weights.get(role, 1.0)
        if core.allocator.weight(role) != weight:
            checker.fail(
                f"role {role!r} weighs {core.allocator.weight(role)} in the master "
                f"but {weight} in the registry"
            )


def _same(checker: InvariantChecker, what: str, master: set[str], durable: set[str]) -> None:
    if master != durable:
        checker.fail(
            f"{what}: the master holds {sorted(master - durable)} that the registry lacks "
            f"and lacks {sorted(durable - master)} that it holds"
        )
