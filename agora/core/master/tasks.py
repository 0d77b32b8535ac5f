"""Task-level scheduler calls (KILL, SHUTDOWN, ACKNOWLEDGE, RECONCILE, MESSAGE) and the
operator's quota and weight updates."""

from __future__ import annotations

from agora.core.allocator.quota import InvalidQuota, Quota, validate_quota
from agora.core.errors import InvalidRole
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master import registry as reg
from agora.core.master.core import MasterCore, handles
from agora.core.master.frameworks import accepted_call, subscribed_framework
from agora.core.master.info import TaskStatus
from agora.core.master.model import Framework, Task
from agora.core.roles import is_self_or_descendant, validate_role
from agora.core.task_states import Reason, Source, TaskState

UUID_BYTES = 16


def latest_status(master: MasterCore, task: Task) -> TaskStatus:
    """What reconciliation reports for a known task: the state being delivered, else the
    latest (REASON_RECONCILIATION, SOURCE_MASTER; message and data are not repeated).
    A task on an unreachable agent is TASK_UNREACHABLE: nothing is being delivered."""
    state: TaskState
    if task.state is TaskState.UNREACHABLE:
        state = task.state
    else:
        state = task.status_update_state or task.state
    last = task.latest_status()
    return TaskStatus(
        task_id=task.task_id,
        state=state,
        source=Source.MASTER,
        reason=Reason.RECONCILIATION,
        message="Reconciliation: Latest task state",
        agent_id=task.agent_id,
        executor_id=task.executor_id,
        timestamp=master._now,
        healthy=last.healthy if last is not None else None,
        unreachable_time=task.unreachable_time,
    )


def reconcile_unknown(
    master: MasterCore, framework: Framework, task_id: str, agent_id: str | None
) -> TaskStatus:
    """The answer for a task this master does not know (Mesos §4.7 table)."""
    if agent_id is not None and agent_id in master.agents:
        state, reason, message = (
            TaskState.GONE,
            Reason.RECONCILIATION,
            "Task is unknown to the agent",
        )
    elif agent_id is not None and agent_id in master.unreachable_agents:
        since = master.unreachable_agents[agent_id].since
        return master.master_status(
            task_id,
            TaskState.UNREACHABLE,
            Reason.RECONCILIATION,
            "Task is on an unreachable agent",
            agent_id,
            unreachable_time=since,
        )
    elif agent_id is not None and agent_id in master.gone_agents:
        state, reason, message = (
            TaskState.GONE_BY_OPERATOR,
            Reason.RECONCILIATION,
            "Task was on an agent marked gone",
        )
    else:
        state, reason, message = TaskState.UNKNOWN, Reason.RECONCILIATION, "Task is unknown"
    return master.master_status(task_id, state, reason, message, agent_id)


def _reconcile(
    master: MasterCore, framework: Framework, wanted: tuple[tuple[str, str | None], ...]
) -> None:
    if not wanted:
        for task in list(framework.tasks.values()) + list(framework.unreachable_tasks.values()):
            master.send_status(framework, latest_status(master, task))
        return
    for task_id, agent_id in wanted:
        known = framework.tasks.get(task_id) or framework.unreachable_tasks.get(task_id)
        if known is not None:  # Mesos trusts its own record over the given agent id
            master.send_status(framework, latest_status(master, known))
        elif not _may_still_appear(master, agent_id):
            master.send_status(framework, reconcile_unknown(master, framework, task_id, agent_id))


def _may_still_appear(master: MasterCore, agent_id: str | None) -> bool:
    """An unknown task gets no answer while the agent it may be on (any agent, if the
    framework did not say) is recovered from the registry but has not re-registered
    yet: the scheduler asks again later (Mesos §4.5)."""
    if agent_id is None:
        return bool(master.recovered_agents)
    return agent_id in master.recovered_agents


@handles(ev.Reconcile)
def on_reconcile(master: MasterCore, event: ev.Reconcile, now: float) -> None:
    framework = accepted_call(master, event)
    if framework is None:
        return
    _reconcile(master, framework, event.tasks)


@handles(ev.Kill)
def on_kill(master: MasterCore, event: ev.Kill, now: float) -> None:
    framework = accepted_call(master, event)
    if framework is None:
        return
    task = framework.tasks.get(event.task_id) or framework.unreachable_tasks.get(event.task_id)
    if task is None or task.state.is_terminal:
        # Unknown task: answer as reconciliation would.
        _reconcile(master, framework, ((event.task_id, event.agent_id),))
        return
    agent = master.agents.get(task.agent_id)
    kill = cmd.KillTask(framework.id, task.task_id, event.kill_policy)
    if agent is not None and agent.connected:
        master.to_agent(agent, kill)
    else:
        # The agent is disconnected or unreachable: kill the task if it comes back
        # (Mesos keeps `killedTasks` for this), and say where the task stands now.
        master.pending_kills.setdefault(task.agent_id, {})[(framework.id, task.task_id)] = kill
        _reconcile(master, framework, ((event.task_id, event.agent_id),))


@handles(ev.Shutdown)
def on_shutdown(master: MasterCore, event: ev.Shutdown, now: float) -> None:
    framework = accepted_call(master, event)
    if framework is None:
        return
    agent = master.agents.get(event.agent_id)
    if agent is not None:
        master.to_agent(agent, cmd.ShutdownExecutor(framework.id, event.executor_id))


@handles(ev.Acknowledge)
def on_acknowledge(master: MasterCore, event: ev.Acknowledge, now: float) -> None:
    framework = subscribed_framework(master, event)
    if framework is None:
        return
    if len(event.uuid) != UUID_BYTES:
        master.respond(event.request_id, 400, "'acknowledge.uuid' must be a 16-byte UUID")
        return
    master.respond(event.request_id, 202)
    framework.remember_ack(event.uuid)
    task = framework.tasks.get(event.task_id)
    # `status_update_state` stays: it is the last state the framework was given, which
    # reconciliation must keep reporting until the agent's next update arrives.
    if (
        task is not None
        and task.status_update_uuid == event.uuid
        and task.status_update_state is not None
        and task.status_update_state.is_terminal
    ):
        master.complete_task(task)  # the terminal update reached the framework
    agent = master.agents.get(event.agent_id)
    if agent is not None:
        master.to_agent(agent, cmd.AcknowledgeUpdate(framework.id, event.task_id, event.uuid))


@handles(ev.Message)
def on_message(master: MasterCore, event: ev.Message, now: float) -> None:
    framework = accepted_call(master, event)
    if framework is None:
        return
    agent = master.agents.get(event.agent_id)
    if agent is not None:
        master.to_agent(agent, cmd.MessageToExecutor(framework.id, event.executor_id, event.data))


@handles(ev.UpdateQuota)
def on_update_quota(master: MasterCore, event: ev.UpdateQuota, now: float) -> None:
    """All or nothing: every config is checked before any is applied."""
    try:
        roles = [role for role, _ in event.configs]
        if len(set(roles)) != len(roles):
            raise InvalidQuota("each role may have only one quota config in an update")
        for role, quota in event.configs:
            validate_role(role)
            validate_quota(role, quota)
            if not event.force:
                _check_limits_hold(master, role, quota)
    except (InvalidQuota, InvalidRole) as error:
        master.respond(event.request_id, 400, str(error))
        return
    master.persist(reg.SetQuotas(dict(event.configs)))
    for role, quota in event.configs:
        master.allocator.update_quota(role, quota)
        # Outstanding offers may now exceed the limit: take them back and re-offer.
        master.rescind_offers(
            {o.id for o in master.offers.values() if is_self_or_descendant(o.role, role)}
        )
    master.respond(event.request_id, 200)


def _check_limits_hold(master: MasterCore, role: str, quota: Quota) -> None:
    consumed = master.allocator.roles().consumed(role)
    for name, cap in quota.limits.items():
        if consumed[name] > cap:
            raise InvalidQuota(
                f"role {role!r} already consumes more {name!r} than the new limit "
                "(use force to set it anyway)"
            )


@handles(ev.UpdateWeights)
def on_update_weights(master: MasterCore, event: ev.UpdateWeights, now: float) -> None:
    for role, weight in event.weights.items():
        try:
            validate_role(role)
        except InvalidRole as error:
            master.respond(event.request_id, 400, str(error))
            return
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            master.respond(event.request_id, 400, f"weight of role {role!r} must be positive")
            return
    weights = {role: float(weight) for role, weight in event.weights.items()}
    master.persist(reg.SetWeights(weights))
    for role, weight in weights.items():
        master.allocator.update_weight(role, weight)
    master.respond(event.request_id, 200)
