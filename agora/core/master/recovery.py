"""What the master remembers across failovers: recovery from the registry after an
election, the re-registration deadline of recovered agents, registry GC, agents
marked gone by an operator, and the maintenance schedule (reference §1.4, §4.3-4.5)."""

from __future__ import annotations

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master import registry as reg
from agora.core.master.agents import remove_agent
from agora.core.master.core import MasterCore, TimerKind, handles
from agora.core.master.maintenance import InvalidSchedule, validate_schedule
from agora.core.master.model import UnreachableAgent
from agora.core.task_states import Reason, TaskState


@handles(ev.RegistryRecovered)
def on_registry_recovered(master: MasterCore, event: ev.RegistryRecovered, now: float) -> None:
    registry = event.registry
    master.persist(reg.RecordLeader(master.info))
    for role, weight in sorted(registry.weights.items()):
        master.allocator.update_weight(role, weight)
    for role, quota in sorted(registry.quotas.items()):
        master.allocator.update_quota(role, quota)
    master.maintenance_schedule = registry.maintenance_schedule
    master.gone_agents.update(registry.gone)
    master.unreachable_agents.update(registry.unreachable)
    for agent_id, info in registry.agents.items():
        if agent_id not in master.agents:
            master.recovered_agents[agent_id] = info
    if master.recovered_agents:
        master.arm(now + master.options.agent_reregister_timeout_s, TimerKind.RECOVERY, "")
    master.arm(now + master.options.registry_gc_interval_s, TimerKind.REGISTRY_GC, "")


def recovery_timeout(master: MasterCore, now: float) -> None:
    """Recovered agents that did not re-register in time become unreachable (their
    tasks, unknown to this master, reconcile as UNREACHABLE / LOST from now on)."""
    for agent_id in sorted(master.recovered_agents):
        info = master.recovered_agents.pop(agent_id)
        master.persist(reg.MarkUnreachable(agent_id, info, now))
        master.unreachable_agents[agent_id] = UnreachableAgent(info, now)
        for framework in master.frameworks.values():
            master.to_framework(framework, cmd.Failure(agent_id=agent_id))


def registry_gc(master: MasterCore, now: float) -> None:
    options = master.options
    master.arm(now + options.registry_gc_interval_s, TimerKind.REGISTRY_GC, "")
    pruned = reg.prune(
        master.unreachable_agents,
        master.gone_agents,
        now,
        options.registry_max_agent_age_s,
        options.registry_max_agent_count,
    )
    if pruned is None:
        return
    master.persist(pruned)
    for agent_id in pruned.unreachable:
        master.unreachable_agents.pop(agent_id, None)
    for agent_id in pruned.gone:
        master.gone_agents.pop(agent_id, None)


# ------------------------------------------------------------------ operator calls


@handles(ev.MarkAgentGone)
def on_mark_agent_gone(master: MasterCore, event: ev.MarkAgentGone, now: float) -> None:
    """Mesos's MARK_AGENT_GONE: idempotent; the agent's tasks are GONE_BY_OPERATOR (LOST
    for frameworks that are not PARTITION_AWARE) and the agent is shut down whenever
    it comes back."""
    agent_id = event.agent_id
    if agent_id in master.gone_agents:
        master.respond(event.request_id, 200)
        return
    agent = master.agents.get(agent_id)
    known = (
        agent is not None
        or agent_id in master.unreachable_agents
        or agent_id in master.recovered_agents
    )
    if not known:
        master.respond(event.request_id, 404, f"agent {agent_id!r} is not known to this master")
        return
    master.persist(reg.MarkGone(agent_id, now))
    master.gone_agents[agent_id] = now
    message = f"Agent {agent_id} was marked gone by an operator"
    if agent is not None:
        master.to_agent(agent, cmd.ShutdownAgent(message))
        remove_agent(
            master,
            agent,
            Reason.AGENT_REMOVED_BY_OPERATOR,
            message,
            state=TaskState.GONE_BY_OPERATOR,
            persist=False,
        )
    master.unreachable_agents.pop(agent_id, None)
    master.recovered_agents.pop(agent_id, None)
    for framework in list(master.frameworks.values()):
        for task in [t for t in framework.unreachable_tasks.values() if t.agent_id == agent_id]:
            master.terminate_task(
                task, TaskState.GONE_BY_OPERATOR, Reason.AGENT_REMOVED_BY_OPERATOR, message
            )
    master.respond(event.request_id, 200)


@handles(ev.UpdateMaintenanceSchedule)
def on_update_schedule(master: MasterCore, event: ev.UpdateMaintenanceSchedule, now: float) -> None:
    try:
        schedule = validate_schedule(event.schedule)
    except InvalidSchedule as error:
        master.respond(event.request_id, 400, str(error))
        return
    master.persist(reg.SetMaintenanceSchedule(schedule))
    master.maintenance_schedule = schedule
    master.respond(event.request_id, 200)
