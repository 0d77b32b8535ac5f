"""Agents as the master sees them: registration, re-registration, liveness (pings,
disconnection, unreachability and return), and what agents report (status updates,
executor exits, executor messages)."""

from __future__ import annotations

from dataclasses import replace

from agora.core.allocator.state import AgentProfile
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master import registry as reg
from agora.core.master.core import MasterCore, TimerKind, handles
from agora.core.master.frameworks import new_framework_record
from agora.core.master.info import AgentInfo, FrameworkInfo
from agora.core.master.model import Agent, Executor, Framework, Task, UnreachableAgent
from agora.core.task_states import Reason, TaskState


def agent_profile(info: AgentInfo, capabilities: frozenset[str]) -> AgentProfile:
    return AgentProfile(
        hostname=info.hostname,
        attributes=info.attributes.texts(),
        region=info.region,
        zone=info.zone,
        capabilities=capabilities,
    )


def _start_pinging(master: MasterCore, agent: Agent, now: float) -> None:
    """The first ping goes one ping interval after (re-)registration, which itself shows
    the agent alive: a failover's herd of re-registering agents is not pinged, and
    answering, in the same burst."""
    agent.timer_epoch += 1
    agent.pings_missed = 0
    agent.pong_pending = False
    master.arm(
        now + master.options.agent_ping_timeout_s, TimerKind.PING, agent.id, agent.timer_epoch
    )


@handles(ev.RegisterAgent)
def on_register(master: MasterCore, event: ev.RegisterAgent, now: float) -> None:
    info = event.info
    other = master.agent_at(info.hostname, info.port)
    if other is not None:
        if other.connected and other.connection_id == event.connection_id:
            # A retry of a registration we already took: just answer again.
            master.to_agent(other, cmd.AgentRegistered(other.id, master.info.id))
            return
        # The same host and port registering anew: the old agent restarted with a
        # fresh identity (e.g. after a reboot); its tasks are gone.
        remove_agent(master, other, Reason.AGENT_RESTARTED, "Agent restarted with a new id")
    agent_id = master.new_agent_id()
    master.persist(reg.AdmitAgent(agent_id, info))
    agent = Agent(
        id=agent_id,
        info=info,
        capabilities=event.capabilities,
        version=event.version,
        connection_id=event.connection_id,
        registered_time=now,
    )
    master.add_agent_record(agent)
    master.allocator.add_agent(agent_id, agent_profile(info, event.capabilities), info.resources)
    master.emit(cmd.AcceptAgent(event.connection_id, agent_id))
    master.to_agent(agent, cmd.AgentRegistered(agent_id, master.info.id))
    _start_pinging(master, agent, now)


@handles(ev.ReregisterAgent)
def on_reregister(master: MasterCore, event: ev.ReregisterAgent, now: float) -> None:
    if event.agent_id in master.gone_agents:
        master.emit(
            cmd.DropAgentConnection(event.connection_id, "Agent has been marked gone", refused=True)
        )
        return
    agent = master.agents.get(event.agent_id)
    if agent is not None and agent.connected and agent.connection_id == event.connection_id:
        # A retry on the connection we already accepted: its report is no newer.
        master.to_agent(agent, cmd.AgentReregistered(agent.id, master.info.id))
        return
    if agent is not None:
        _reconnect_known(master, agent, event, now)
        return
    was_unreachable = master.unreachable_agents.pop(event.agent_id, None) is not None
    recorded = master.recovered_agents.pop(event.agent_id, None)
    if was_unreachable:
        master.persist(reg.MarkReachable(event.agent_id, event.info))
    elif recorded != event.info:
        # New to the registry (or its AgentInfo changed since it was admitted).
        master.persist(reg.AdmitAgent(event.agent_id, event.info))
    agent = Agent(
        id=event.agent_id,
        info=event.info,
        capabilities=event.capabilities,
        version=event.version,
        connection_id=event.connection_id,
        registered_time=now,
        reregistered_time=now,
    )
    master.add_agent_record(agent)
    master.emit(cmd.AcceptAgent(event.connection_id, agent.id))
    _recover_frameworks(master, event.frameworks, event.tasks, event.executors)
    for executor_report in event.executors:
        framework = master.frameworks.get(executor_report.framework_id)
        if framework is not None:
            role = executor_report.resources.allocation_role() or framework.info.roles[0]
            executor = Executor(
                executor_report.executor_id,
                framework.id,
                agent.id,
                role,
                executor_report.resources,
                executor_report.raw,
            )
            master.add_executor(framework, agent, executor)
    for task_report in event.tasks:
        _adopt_task(master, agent, task_report, announce=was_unreachable)
    if was_unreachable:
        _forget_unreported(master, agent.id)
    master.allocator.add_agent(
        agent.id,
        agent_profile(event.info, event.capabilities),
        event.info.resources,
        agent.used_by(master.resource_sums),
    )
    _shutdown_completed(master, agent, event)
    master.to_agent(agent, cmd.AgentReregistered(agent.id, master.info.id))
    _send_pending_kills(master, agent)
    _start_pinging(master, agent, now)


def _recover_frameworks(
    master: MasterCore,
    infos: tuple[FrameworkInfo, ...],
    tasks: tuple[ev.AgentTask, ...],
    executors: tuple[ev.AgentExecutor, ...],
) -> None:
    """Frameworks an agent reports that this master has not seen (it failed over):
    known as "recovered", inactive until their scheduler re-subscribes."""
    wanted = {t.framework_id for t in tasks} | {e.framework_id for e in executors}
    by_id = {info.id: info for info in infos if info.id is not None}
    for framework_id in sorted(wanted):
        if framework_id in master.frameworks or framework_id in master.completed_frameworks:
            continue
        info = by_id.get(framework_id) or FrameworkInfo(user="", name="", id=framework_id)
        roles = {
            role
            for t in tasks
            if t.framework_id == framework_id
            for role in [t.resources.allocation_role()]
            if role is not None
        }
        if roles - set(info.roles):
            info = replace(info, roles=tuple(sorted(set(info.roles) | roles)))
        framework = new_framework_record(master, info.with_id(framework_id), master._now)
        framework.recovered = True


def _adopt_task(master: MasterCore, agent: Agent, report: ev.AgentTask, announce: bool) -> None:
    framework = master.frameworks.get(report.framework_id)
    if framework is None:
        return  # a completed framework: the agent is told to shut it down
    task = framework.unreachable_tasks.pop(report.task_id, None) or framework.tasks.get(
        report.task_id
    )
    if task is None:
        task = Task(
            task_id=report.task_id,
            framework_id=framework.id,
            agent_id=agent.id,
            name=report.name,
            role=report.resources.allocation_role() or framework.info.roles[0],
            resources=report.resources,
            executor_id=report.executor_id,
            raw=report.raw,
        )
    task.agent_id = agent.id
    task.state = report.state  # the agent is authoritative after it re-registers
    task.status_update_state = report.status_update_state
    task.status_update_uuid = report.status_update_uuid
    task.unreachable_time = None
    master.add_task(framework, agent, task)
    uuid = report.status_update_uuid
    if uuid is not None and uuid in framework.acked_uuids:
        _reacknowledge(master, framework, agent, task.task_id, uuid)
    if announce:
        # The state being delivered, not the newest: the agent's queue still holds the
        # updates in between, and the framework must see them in order.
        shown = report.status_update_state or report.state
        status = master.master_status(
            task.task_id, shown, Reason.AGENT_REREGISTERED, "Agent re-registered", agent.id
        )
        task.record(status)
        master.send_status(framework, status)


def _forget_unreported(master: MasterCore, agent_id: str) -> None:
    """Tasks left unreachable on an agent that came back without them are gone: the
    agent is authoritative once it re-registers."""
    for framework in list(master.frameworks.values()):
        for task in [t for t in framework.unreachable_tasks.values() if t.agent_id == agent_id]:
            never_started = task.status_update_state is None
            master.terminate_task(
                task,
                _missing_task_state(framework, never_started),
                Reason.TASK_UNKNOWN,
                "Task is unknown to the agent after it re-registered",
            )


def _missing_task_state(framework: Framework | None, never_started: bool) -> TaskState:
    """A task an agent no longer has after coming back: never launched there (DROPPED)
    or gone with it (GONE); TASK_LOST for frameworks that are not PARTITION_AWARE."""
    if framework is not None and not framework.partition_aware:
        return TaskState.LOST
    return TaskState.DROPPED if never_started else TaskState.GONE


def _send_pending_kills(master: MasterCore, agent: Agent) -> None:
    for (framework_id, task_id), kill in sorted(master.pending_kills.pop(agent.id, {}).items()):
        task = agent.tasks.get(framework_id, {}).get(task_id)
        if task is not None and not task.state.is_terminal:
            master.to_agent(agent, kill)


def _shutdown_completed(master: MasterCore, agent: Agent, event: ev.ReregisterAgent) -> None:
    reported = {t.framework_id for t in event.tasks} | {e.framework_id for e in event.executors}
    for framework_id in sorted(reported):
        if framework_id in master.completed_frameworks:
            master.to_agent(agent, cmd.ShutdownFramework(framework_id))


def _reconnect_known(
    master: MasterCore, agent: Agent, event: ev.ReregisterAgent, now: float
) -> None:
    """A registered (possibly disconnected) agent re-registers: trust its report, and
    rebuild the allocator's view of the agent from it."""
    master.rescind_offers(set(agent.offers))
    master.allocator.remove_agent(agent.id)
    agent.connection_id = event.connection_id
    agent.connected = True
    agent.reregistered_time = now
    master.emit(cmd.AcceptAgent(event.connection_id, agent.id))
    reported = {(t.framework_id, t.task_id): t for t in event.tasks}
    for task in list(agent.all_tasks()):
        report = reported.pop((task.framework_id, task.task_id), None)
        if report is None and not task.state.is_terminal:
            framework = master.frameworks.get(task.framework_id)
            never_started = task.state is TaskState.STAGING
            master.terminate_task(
                task,
                _missing_task_state(framework, never_started),
                Reason.TASK_UNKNOWN,
                "Task is unknown to the agent after it re-registered",
            )
        elif report is not None and master.set_task_state(task, report.state):
            task.status_update_state = report.status_update_state
            task.status_update_uuid = report.status_update_uuid
    _recover_frameworks(master, event.frameworks, tuple(reported.values()), ())
    for report in reported.values():
        framework = master.frameworks.get(report.framework_id)
        if framework is not None and not framework.info.checkpoint:
            # Told TASK_LOST when the agent disconnected: it must not come back to life.
            master.to_agent(agent, cmd.KillTask(framework.id, report.task_id))
            continue
        _adopt_task(master, agent, report, announce=False)
    if event.info != agent.info:
        master.persist(reg.AdmitAgent(agent.id, event.info))
    if (event.info.hostname, event.info.port) != (agent.info.hostname, agent.info.port):
        master.drop_agent_record(agent)
        agent.info = event.info
        master.add_agent_record(agent)
    agent.info = event.info
    agent.capabilities = event.capabilities
    master.allocator.add_agent(
        agent.id,
        agent_profile(event.info, event.capabilities),
        event.info.resources,
        agent.used_by(master.resource_sums),
    )
    if not agent.active:
        master.allocator.deactivate_agent(agent.id)
    _shutdown_completed(master, agent, event)
    master.to_agent(agent, cmd.AgentReregistered(agent.id, master.info.id))
    _send_pending_kills(master, agent)
    _start_pinging(master, agent, now)


@handles(ev.AgentDisconnected)
def on_disconnected(master: MasterCore, event: ev.AgentDisconnected, now: float) -> None:
    agent = master.agents.get(event.agent_id)
    if agent is None or agent.connection_id != event.connection_id or not agent.connected:
        return
    agent.connected = False
    master.allocator.deactivate_agent(agent.id)
    master.rescind_offers(set(agent.offers))
    # Tasks of frameworks that do not checkpoint die with the agent's connection.
    for task in list(agent.all_tasks()):
        framework = master.frameworks.get(task.framework_id)
        if framework is not None and not framework.info.checkpoint:
            master.terminate_task(
                task, TaskState.LOST, Reason.AGENT_DISCONNECTED, "Agent disconnected"
            )
    for executor in list(agent.all_executors()):
        framework = master.frameworks.get(executor.framework_id)
        if framework is not None and not framework.info.checkpoint:
            master.remove_executor(executor)
    agent.timer_epoch += 1
    master.arm(
        now + master.options.agent_reregister_timeout_s,
        TimerKind.REREGISTER,
        agent.id,
        agent.timer_epoch,
    )
    # Pings go on (unanswered) so that an agent that never comes back is marked
    # unreachable after the ping timeouts, as Mesos's SlaveObserver does.
    master.arm(
        now + master.options.agent_ping_timeout_s, TimerKind.PING, agent.id, agent.timer_epoch
    )
    agent.pong_pending = True


@handles(ev.AgentPong)
def on_pong(master: MasterCore, event: ev.AgentPong, now: float) -> None:
    agent = master.agents.get(event.agent_id)
    if agent is not None and agent.connection_id == event.connection_id:
        agent.pings_missed = 0
        agent.pong_pending = False


def ping_due(master: MasterCore, agent_id: str, epoch: int, now: float) -> None:
    agent = master.agents.get(agent_id)
    if agent is None or agent.timer_epoch != epoch:
        return
    if agent.pong_pending:
        agent.pings_missed += 1
        if agent.pings_missed >= master.options.max_agent_ping_timeouts:
            mark_unreachable(master, agent, now, "health check timed out")
            return
    agent.pong_pending = True
    master.to_agent(agent, cmd.Ping())
    master.arm(now + master.options.agent_ping_timeout_s, TimerKind.PING, agent.id, epoch)


def reregister_timeout(master: MasterCore, agent_id: str, epoch: int, now: float) -> None:
    agent = master.agents.get(agent_id)
    if agent is not None and agent.timer_epoch == epoch and not agent.connected:
        mark_unreachable(master, agent, now, "agent did not re-register in time")


def mark_unreachable(master: MasterCore, agent: Agent, now: float, why: str) -> None:
    """Partitioned: PARTITION_AWARE frameworks hear TASK_UNREACHABLE, others TASK_LOST;
    the tasks are kept so that they can come back if the agent does."""
    master.persist(reg.MarkUnreachable(agent.id, agent.info, now))
    master.rescind_offers(set(agent.offers))
    master.allocator.remove_agent(agent.id)
    for task in list(agent.all_tasks()):
        framework = master.frameworks.get(task.framework_id)
        if framework is None or task.state.is_terminal:
            master.complete_task(task)
            continue
        master.set_task_state(task, TaskState.UNREACHABLE)
        task.unreachable_time = now
        status = master.master_status(
            task.task_id,
            TaskState.UNREACHABLE,
            Reason.AGENT_REMOVED,
            f"Agent {agent.id} is unreachable: {why}",
            agent.id,
            unreachable_time=now,
        )
        task.record(status)
        master.send_status(framework, status)
        framework.tasks.pop(task.task_id, None)
        framework.unreachable_tasks[task.task_id] = task
        _bound_unreachable(master, framework)
    for executor in list(agent.all_executors()):
        master.remove_executor(executor, recover=False)
    if agent.connected:
        # A partitioned connection can come back to life when the network heals; the
        # agent must re-register instead (it then hears of this close and reconnects).
        master.emit(cmd.DropAgentConnection(agent.connection_id, "agent marked unreachable"))
    master.drop_agent_record(agent)
    master.unreachable_agents[agent.id] = UnreachableAgent(agent.info, now)
    for framework in master.frameworks.values():
        master.to_framework(framework, cmd.Failure(agent_id=agent.id))


def _bound_unreachable(master: MasterCore, framework: Framework) -> None:
    limit = master.options.max_unreachable_tasks_per_framework
    while len(framework.unreachable_tasks) > limit:
        oldest = next(iter(framework.unreachable_tasks))
        framework.completed_tasks.append(framework.unreachable_tasks.pop(oldest))


def remove_agent(
    master: MasterCore,
    agent: Agent,
    reason: Reason,
    message: str,
    state: TaskState = TaskState.GONE,
    persist: bool = True,
) -> None:
    """The agent is gone for good (restarted with a new id, or marked gone): its tasks
    are `state` (TASK_LOST for frameworks that are not PARTITION_AWARE).

    A task it reported ended (perhaps only as `latest_state`, its terminal update still
    undelivered) keeps that end in what its framework is told: the agent will never
    deliver it now, and a second, different terminal state would contradict the
    master's own record. (A merely disconnected agent may still deliver its updates, in
    order, so nothing ahead of them is revealed then.)"""
    if persist:
        master.persist(reg.RemoveAgent(agent.id))
    master.rescind_offers(set(agent.offers))
    for task in list(agent.all_tasks()):
        framework = master.frameworks.get(task.framework_id)
        aware = framework is not None and framework.partition_aware
        end = state if aware else TaskState.LOST
        master.terminate_task(task, task.state if task.state.is_terminal else end, reason, message)
    for executor in list(agent.all_executors()):
        master.remove_executor(executor)
    master.allocator.remove_agent(agent.id)
    master.drop_agent_record(agent)
    master.pending_kills.pop(agent.id, None)
    for framework in master.frameworks.values():
        master.to_framework(framework, cmd.Failure(agent_id=agent.id))


# ------------------------------------------------------------------ agent reports


@handles(ev.StatusUpdateFromAgent)
def on_status_update(master: MasterCore, event: ev.StatusUpdateFromAgent, now: float) -> None:
    agent = master.agents.get(event.agent_id)
    if agent is None or not agent.connected:
        return  # the agent retries once it is registered again
    framework = master.frameworks.get(event.framework_id)
    if framework is None:
        if event.framework_id in master.completed_frameworks:
            master.to_agent(agent, cmd.ShutdownFramework(event.framework_id))
        return
    status = event.status
    if status.uuid is not None and status.uuid in framework.acked_uuids:
        # A late duplicate of an update the framework already acknowledged: do not
        # deliver it again (the framework would see its task go back in time).
        _reacknowledge(master, framework, agent, status.task_id, status.uuid)
        return
    if status.agent_id is None or status.timestamp is None:
        status = replace(
            status, agent_id=status.agent_id or agent.id, timestamp=status.timestamp or now
        )
    task = framework.tasks.get(status.task_id)
    if task is not None:
        latest = event.latest_state or status.state
        master.set_task_state(task, latest)
        task.status_update_state = status.state
        task.status_update_uuid = status.uuid
        task.record(status)
    master.send_status(framework, status)


@handles(ev.TaskEndedOnAgent)
def on_task_ended(master: MasterCore, event: ev.TaskEndedOnAgent, now: float) -> None:
    agent = master.agents.get(event.agent_id)
    framework = master.frameworks.get(event.framework_id)
    if agent is None or not agent.connected or framework is None or not event.state.is_terminal:
        return
    task = framework.tasks.get(event.task_id)
    if task is not None and task.agent_id == agent.id:
        master.set_task_state(task, event.state)


def _reacknowledge(
    master: MasterCore, framework: Framework, agent: Agent, task_id: str, uuid: bytes
) -> None:
    """The agent retries an update the framework already acknowledged (the first
    acknowledgement was lost): acknowledge it again, and forget the task if that was
    its terminal update."""
    master.to_agent(agent, cmd.AcknowledgeUpdate(framework.id, task_id, uuid))
    task = framework.tasks.get(task_id)
    if task is not None and task.status_update_uuid == uuid and task.state.is_terminal:
        master.complete_task(task)


@handles(ev.ExecutorExited)
def on_executor_exited(master: MasterCore, event: ev.ExecutorExited, now: float) -> None:
    framework = master.frameworks.get(event.framework_id)
    agent = master.agents.get(event.agent_id)
    if framework is None or agent is None:
        return
    executor = framework.executor(agent.id, event.executor_id)
    if executor is not None:
        master.remove_executor(executor)
    master.to_framework(
        framework,
        cmd.Failure(agent_id=agent.id, executor_id=event.executor_id, status=event.status),
    )


@handles(ev.ExecutorMessage)
def on_executor_message(master: MasterCore, event: ev.ExecutorMessage, now: float) -> None:
    framework = master.frameworks.get(event.framework_id)
    if framework is not None and event.agent_id in master.agents:
        master.to_framework(
            framework, cmd.FrameworkMessage(event.agent_id, event.executor_id, event.data)
        )
