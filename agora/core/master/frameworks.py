"""Framework lifecycle: SUBSCRIBE (new and failover), disconnect and failover timeout,
TEARDOWN, UPDATE_FRAMEWORK, REVIVE and SUPPRESS."""

from __future__ import annotations

from dataclasses import replace

from agora.core.allocator.state import FrameworkProfile
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.core import MasterCore, TimerKind, handles
from agora.core.master.info import (
    FrameworkInfo,
    InvalidFrameworkInfo,
    framework_info_from_json,
    offer_constraints_from_json,
)
from agora.core.master.model import Framework
from agora.core.task_states import Reason, TaskState


def profile_of(framework: Framework) -> FrameworkProfile:
    info = framework.info
    return FrameworkProfile(
        roles=frozenset(info.roles),
        capabilities=info.capabilities,
        suppressed_roles=framework.suppressed_roles,
        min_allocatable=info.min_allocatable,
        constraints=framework.constraints,
    )


def subscribed_framework(master: MasterCore, call: ev.SchedulerCall) -> Framework | None:
    """The framework a call is for, or None after answering 400/403 saying why."""
    framework = master.frameworks.get(call.framework_id)
    if framework is None:
        if call.framework_id in master.completed_frameworks:
            # Mesos answers 400 for any framework it does not hold (completed ones too).
            master.respond(call.request_id, 400, "Framework has been removed")
        else:
            master.respond(call.request_id, 400, "Framework cannot be found")
        return None
    if not framework.connected:
        master.respond(call.request_id, 403, "Framework is not subscribed")
        return None
    if call.stream_id is None:
        master.respond(
            call.request_id, 400, "All non-subscribe calls should include 'Mesos-Stream-Id'"
        )
        return None
    if call.stream_id != framework.stream_id:
        master.respond(
            call.request_id,
            400,
            f"The stream ID '{call.stream_id}' included in this request didn't match the "
            "stream ID currently associated with framework ID " + framework.id,
        )
        return None
    return framework


def accepted_call(master: MasterCore, call: ev.SchedulerCall) -> Framework | None:
    """The calling framework after answering 202 (the call is taken, its effects follow
    on the event stream), or None after answering why not."""
    framework = subscribed_framework(master, call)
    if framework is not None:
        master.respond(call.request_id, 202)
    return framework


def _check_roles_subset(roles: tuple[str, ...], info: FrameworkInfo, what: str) -> str | None:
    for role in roles:
        if role not in info.roles:
            return f"{what} role {role!r} is not one of the framework's roles {list(info.roles)}"
    return None


@handles(ev.NoEffectCall)
def on_no_effect_call(master: MasterCore, event: ev.NoEffectCall, now: float) -> None:
    accepted_call(master, event)


@handles(ev.Subscribe)
def on_subscribe(master: MasterCore, event: ev.Subscribe, now: float) -> None:
    try:
        info = framework_info_from_json(event.framework_info)
        constraints = offer_constraints_from_json(event.offer_constraints, info.roles)
    except InvalidFrameworkInfo as error:
        master.emit(cmd.RefuseSubscription(event.request_id, str(error)))
        return
    if event.framework_id is not None and event.framework_id != info.id:
        master.respond(
            event.request_id,
            400,
            "'framework_id' differs from 'subscribe.framework_info.id'",
        )
        return
    problem = _check_roles_subset(event.suppressed_roles, info, "suppressed")
    if problem is not None:
        master.emit(cmd.RefuseSubscription(event.request_id, problem))
        return
    if info.id is not None and info.id in master.completed_frameworks:
        master.emit(cmd.RefuseSubscription(event.request_id, "Framework has been removed"))
        return
    framework = master.frameworks.get(info.id) if info.id is not None else None
    if framework is None:
        framework = new_framework_record(master, info, now)
    else:
        if info.principal != framework.info.principal:
            master.emit(
                cmd.RefuseSubscription(
                    event.request_id, "Changing framework's principal is not allowed."
                )
            )
            return
        _fail_over(master, framework, info, now)
    framework.suppressed_roles = frozenset(event.suppressed_roles)
    framework.constraints = constraints
    master.allocator.update_framework(framework.id, profile_of(framework))
    framework.stream_id = master.new_stream_id()
    framework.connected = True
    framework.active = True
    framework.failover_deadline = None
    framework.failover_epoch += 1
    master.allocator.activate_framework(framework.id)
    master.emit(cmd.OpenStream(event.request_id, framework.id, framework.stream_id))
    master.to_framework(
        framework,
        cmd.Subscribed(framework.id, master.options.heartbeat_interval_s, master.info),
    )


def new_framework_record(master: MasterCore, info: FrameworkInfo, now: float) -> Framework:
    # An id this master never issued is a framework failing over to a new master: it
    # keeps its id (Mesos accepts it as a "recovered" framework).
    framework_id = info.id if info.id is not None else master.new_framework_id()
    info = info.with_id(framework_id)
    framework = Framework(id=framework_id, info=info, registered_time=now)
    framework.completed_tasks = type(framework.completed_tasks)(
        maxlen=master.options.max_completed_tasks_per_framework
    )
    master.frameworks[framework_id] = framework
    master.allocator.add_framework(framework_id, profile_of(framework), active=False)
    return framework


def _fail_over(master: MasterCore, framework: Framework, info: FrameworkInfo, now: float) -> None:
    """A scheduler re-subscribes with a known id: it replaces the old session."""
    if framework.connected and framework.stream_id is not None:
        master.emit(cmd.CloseStream(framework.id, framework.stream_id, "Framework failed over"))
        framework.connected = False
    for offer_id in sorted(framework.offers):
        offer = master.offers.get(offer_id)
        if offer is not None:
            master.remove_offer(offer, rescind=False)
    # `user` and `checkpoint` cannot change on re-subscription; Mesos keeps the old ones.
    old = framework.info
    raw = dict(info.raw)
    raw["user"], raw["checkpoint"] = old.user, old.checkpoint
    framework.info = replace(
        info,
        id=framework.id,
        user=old.user,
        checkpoint=old.checkpoint,
        raw={**raw, "id": {"value": framework.id}},
    )
    framework.reregistered_time = now
    framework.recovered = False
    _tell_agents(master, framework)


def _tell_agents(master: MasterCore, framework: Framework) -> None:
    """Agents running the framework's tasks or executors learn its new FrameworkInfo."""
    agent_ids = set(framework.executors) | {t.agent_id for t in framework.tasks.values()}
    for agent_id in sorted(agent_ids):
        agent = master.agents.get(agent_id)
        if agent is not None:
            master.to_agent(agent, cmd.UpdateFrameworkInfo(framework.info))


@handles(ev.FrameworkDisconnected)
def on_disconnected(master: MasterCore, event: ev.FrameworkDisconnected, now: float) -> None:
    framework = master.frameworks.get(event.framework_id)
    if framework is None or framework.stream_id != event.stream_id:
        return  # a stream that was already replaced
    framework.connected = False
    framework.active = False
    framework.stream_id = None
    framework.unregistered_time = now
    for offer_id in sorted(framework.offers):
        offer = master.offers.get(offer_id)
        if offer is not None:
            master.remove_offer(offer, rescind=False)
    master.allocator.deactivate_framework(framework.id)
    framework.failover_epoch += 1
    framework.failover_deadline = now + framework.info.failover_timeout_s
    master.arm(
        framework.failover_deadline, TimerKind.FAILOVER, framework.id, framework.failover_epoch
    )


def failover_timeout(master: MasterCore, framework_id: str, epoch: int, now: float) -> None:
    framework = master.frameworks.get(framework_id)
    if framework is None or framework.connected or framework.failover_epoch != epoch:
        return
    remove_framework(master, framework)


def remove_framework(master: MasterCore, framework: Framework) -> None:
    """Tear a framework down: kill its tasks and executors, forget its offers."""
    for offer_id in sorted(framework.offers):
        offer = master.offers.get(offer_id)
        if offer is not None:
            master.remove_offer(offer, rescind=False)
    agent_ids = sorted(set(framework.executors) | {t.agent_id for t in framework.tasks.values()})
    for agent_id in agent_ids:
        agent = master.agents.get(agent_id)
        if agent is not None:
            master.to_agent(agent, cmd.ShutdownFramework(framework.id))
    for task in list(framework.tasks.values()) + list(framework.unreachable_tasks.values()):
        master.terminate_task(
            task, TaskState.KILLED, Reason.FRAMEWORK_REMOVED, "Framework removed", notify=False
        )
    for by_id in list(framework.executors.values()):
        for executor in list(by_id.values()):
            master.remove_executor(executor)
    master.allocator.remove_framework(framework.id)
    if framework.connected and framework.stream_id is not None:
        master.emit(cmd.CloseStream(framework.id, framework.stream_id))
    framework.connected = False
    framework.active = False
    del master.frameworks[framework.id]
    master.completed_frameworks[framework.id] = framework
    while len(master.completed_frameworks) > master.options.max_completed_frameworks:
        del master.completed_frameworks[next(iter(master.completed_frameworks))]


@handles(ev.Teardown)
def on_teardown(master: MasterCore, event: ev.Teardown, now: float) -> None:
    framework = accepted_call(master, event)
    if framework is None:
        return
    remove_framework(master, framework)


@handles(ev.UpdateFramework)
def on_update_framework(master: MasterCore, event: ev.UpdateFramework, now: float) -> None:
    framework = subscribed_framework(master, event)
    if framework is None:
        return
    try:
        info = framework_info_from_json(event.framework_info)
        constraints = offer_constraints_from_json(event.offer_constraints, info.roles)
    except InvalidFrameworkInfo as error:
        master.respond(event.request_id, 400, str(error))
        return
    old = framework.info
    if info.id != framework.id:
        master.respond(event.request_id, 400, "'framework_info.id' must be the framework's id")
        return
    for name in ("principal", "user", "checkpoint"):
        if getattr(info, name) != getattr(old, name):
            master.respond(event.request_id, 400, f"'FrameworkInfo.{name}' cannot be changed")
            return
    problem = _check_roles_subset(event.suppressed_roles, info, "suppressed")
    if problem is not None:
        master.respond(event.request_id, 400, problem)
        return
    removed_roles = set(old.roles) - set(info.roles)
    for offer_id in sorted(framework.offers):
        offer = master.offers.get(offer_id)
        if offer is not None and offer.role in removed_roles:
            master.remove_offer(offer, rescind=True)
    framework.info = info
    framework.suppressed_roles = frozenset(event.suppressed_roles)
    framework.constraints = constraints
    master.allocator.update_framework(framework.id, profile_of(framework))
    _tell_agents(master, framework)
    master.respond(event.request_id, 200)


@handles(ev.Revive, ev.Suppress)
def on_revive_or_suppress(master: MasterCore, event: ev.Revive | ev.Suppress, now: float) -> None:
    framework = subscribed_framework(master, event)
    if framework is None:
        return
    problem = _check_roles_subset(event.roles, framework.info, "")
    if problem is not None:
        master.respond(event.request_id, 400, problem.strip())
        return
    roles = frozenset(event.roles) or frozenset(framework.info.roles)
    if isinstance(event, ev.Revive):
        framework.suppressed_roles -= roles
        master.allocator.revive(framework.id, roles)
    else:
        framework.suppressed_roles |= roles
        master.allocator.suppress(framework.id, roles)
    master.respond(event.request_id, 202)
