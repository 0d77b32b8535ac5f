"""What must hold once a simulation has settled (network healed, faults stopped, and
everything given time to finish):

  * a master leads, its registry is settled and agrees with it, every live agent is
    registered with it under the id it believes is its own, and the master holds no
    other agent as registered, nor any that an agent ever went by as expected back;
  * no agent still retries an update for a subscribed framework, and no task still runs;
  * the master holds no task as live or unreachable that no host runs;
  * every task a framework launched ended, and the framework was told how: the state
    the task really ended in, as its partition awareness shows it, when an agent could
    report it; when its agent process or host died with it (it vanished), a state the
    master gives for a task it knows is gone;
  * a framework never saw a task reach two different terminal states (TASK_LOST aside:
    a task lost with its agent's connection may still be running);
  * each task's status updates reached its framework in the order its agent made them
    (resent ones repeat the latest, never an earlier, acknowledged one);
  * no status update was dropped: each one an agent took into a stream reached its
    framework or still waits in a stream, unless its task vanished with its agent (it
    was never checkpointed: the master reports what became of the task instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agora.core.task_states import Reason, TaskState, visible_state
from agora.testing.sim.durability import check_registry_settled

if TYPE_CHECKING:
    from agora.testing.sim.framework import SimFramework
    from agora.testing.sim.invariants import InvariantChecker

UNKNOWN_ANSWERS = frozenset(
    {
        TaskState.LOST,
        TaskState.UNKNOWN,
        TaskState.GONE,
        TaskState.GONE_BY_OPERATOR,
        TaskState.UNREACHABLE,
    }
)
# What the master may say of a task that is gone with its agent (TASK_UNKNOWN: the
# agent too is unknown, e.g. removed when its host came back as a new agent).
VANISHED_ANSWERS = frozenset(
    {
        TaskState.LOST,
        TaskState.GONE,
        TaskState.DROPPED,
        TaskState.GONE_BY_OPERATOR,
        TaskState.UNKNOWN,
    }
)


def check_settled(checker: InvariantChecker) -> None:
    _leader_agrees(checker)
    _agents_settled(checker)
    _master_matches_hosts(checker)
    for framework in checker.sim.frameworks:
        if framework.framework_id is None:
            continue
        for task_id in framework.launched:
            _check_task_outcome(checker, framework, task_id)
    _updates_in_order_and_none_dropped(checker)


def _leader_agrees(checker: InvariantChecker) -> None:
    sim = checker.sim
    leader = sim.leader
    if leader is None:
        checker.fail("no master leads after settling")
    if not leader.registrar.idle:
        checker.fail("registry writes are still pending after settling")
    check_registry_settled(checker, leader)
    core = leader.core
    live = {a.agent_id for a in sim.agents if a.up and a.agent_id is not None}
    for agent in sim.agents:
        registered = core.agents.get(agent.agent_id or "")
        if not agent.up or not agent.registered or registered is None:
            checker.fail(f"{agent.hostname} ({agent.agent_id}) is not registered after settling")
        if not registered.connected or registered.connection_id != agent.connection:
            checker.fail(f"the master does not hold {agent.hostname}'s current connection")
    strays = set(core.agents) - live
    if strays:
        checker.fail(f"the master still holds agents {sorted(strays)} that no host runs")
    # A recovered agent no host runs may only be an admission whose agent never heard
    # of it (its master died first); the operator marks every identity a host lost gone.
    forgotten = (set(core.recovered_agents) - live) & checker.learned_agent_ids
    if forgotten:
        checker.fail(f"the master still expects agents {sorted(forgotten)} that no host runs")


def _agents_settled(checker: InvariantChecker) -> None:
    sim = checker.sim
    connected = {f.framework_id for f in sim.frameworks if f.stream_id is not None}
    for agent in sim.agents:
        stuck = [k for k, s in agent.streams.items() if s.pending and k[0] in connected]
        if stuck:
            checker.fail(f"{agent.hostname} still retries unacknowledged updates for {stuck[:5]}")
        if agent.running():
            checker.fail(f"{agent.hostname} still runs {agent.running()[:5]} after settling")


def _master_matches_hosts(checker: InvariantChecker) -> None:
    """Settled, the master holds no task as live or unreachable that no host runs."""
    running = {key for agent in checker.sim.agents for key in agent.running()}
    for framework in checker.sim.master.frameworks.values():
        for tasks in (framework.tasks, framework.unreachable_tasks):
            for task in tasks.values():
                key = (framework.id, task.task_id)
                if not task.state.is_terminal and key not in running:
                    checker.fail(
                        f"the master still holds task {key} as {task.state.value} "
                        "but no agent runs it"
                    )


def _check_task_outcome(checker: InvariantChecker, framework: SimFramework, task_id: str) -> None:
    assert framework.framework_id is not None
    key = (framework.framework_id, task_id)
    seen = framework.observed.get(task_id)
    if seen is None or not seen.states:
        checker.fail(f"{framework.name} launched {task_id} but was never told what became of it")
    told = [s.value for s in seen.states]
    reliable = _meaningful(seen.states, seen.reasons)
    truth = checker.final_states.get(key)
    last = seen.states[-1]
    if key in checker.vanished_tasks:
        allowed = {visible_state(s, framework.partition_aware) for s in VANISHED_ANSWERS}
        if truth is not None:
            allowed.add(visible_state(truth, framework.partition_aware))
        if last not in allowed:
            checker.fail(
                f"{framework.name} task {task_id} vanished with its agent (it ended "
                f"{truth.value if truth else 'unseen'}) but was last told {last.value} "
                f"(told: {told})"
            )
    elif truth is not None:
        # It ran: its end came through the agent's reliable updates.
        expected = visible_state(truth, framework.partition_aware)
        last_reliable = reliable[-1].value if reliable else None
        if last_reliable != expected.value:
            checker.fail(
                f"{framework.name} task {task_id}: last told {last_reliable} "
                f"but it ended {truth.value} (told: {told})"
            )
    elif not (last.is_terminal or last is TaskState.UNKNOWN):
        # It never ran: the framework must have learnt that (possibly by asking; the
        # master may know neither the task nor, any more, the agent it was sent to).
        checker.fail(f"{framework.name} task {task_id} never ran and was last told {told[-1]}")
    _one_terminal_state(checker, framework, task_id, reliable, told)


def _one_terminal_state(
    checker: InvariantChecker,
    framework: SimFramework,
    task_id: str,
    reliable: list[TaskState],
    told: list[str],
) -> None:
    terminal = None
    for state in reliable:
        if state is TaskState.LOST:
            continue  # a task lost with its agent's connection may come back
        if terminal is not None and state is not terminal:
            checker.fail(
                f"{framework.name} task {task_id} was told {terminal.value} and then "
                f"{state.value} (told: {told})"
            )
        if state.is_terminal:
            terminal = state


def _updates_in_order_and_none_dropped(checker: InvariantChecker) -> None:
    sim = checker.sim
    waiting = {
        uuid
        for agent in sim.agents
        for stream in agent.streams.values()
        for status in stream.pending
        if (uuid := status.uuid) is not None
    }
    by_id = {f.framework_id: f for f in sim.frameworks}
    for key, uuids in checker.generated.items():
        framework = by_id.get(key[0])
        if framework is None:
            continue
        seen = framework.observed.get(key[1])
        delivered = [] if seen is None else seen.uuids
        _in_order(checker, key, uuids, delivered)
        if key in checker.vanished_tasks:
            continue
        dropped = [u for u in uuids if u not in delivered and u not in waiting]
        if dropped:
            checker.fail(
                f"{len(dropped)} of the {len(uuids)} status updates of task {key} were "
                "dropped: never delivered to its framework and no agent holds them"
            )


def _in_order(
    checker: InvariantChecker, key: tuple[str, str], made: list[bytes], delivered: list[bytes]
) -> None:
    """The agent's updates reach the framework in the order they were made (a resend
    repeats the latest, never an earlier one: an acknowledged update stays acknowledged)."""
    position = {uuid: i for i, uuid in enumerate(made)}
    latest = -1
    for uuid in delivered:
        index = position.get(uuid, latest)
        if index < latest:
            checker.fail(
                f"task {key}: its framework got update {index + 1} of {len(made)} after "
                f"update {latest + 1} (an acknowledged update came back, or order was lost)"
            )
        latest = index


def _meaningful(states: list[TaskState], reasons: list[str | None]) -> list[TaskState]:
    """Drop reconciliation answers about tasks the master no longer knows."""
    return [
        state
        for state, reason in zip(states, reasons, strict=True)
        if not (reason == Reason.RECONCILIATION.value and state in UNKNOWN_ANSWERS)
    ]
