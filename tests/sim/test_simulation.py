"""Seeded, fault-injecting simulations of a whole cluster around the real master core.

CI runs a fixed set of seeds; `python -m agora.testing.sim --seeds 0-9999` runs more.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable

import pytest

from agora.core.master import commands as cmd
from agora.core.master import core as master_core
from agora.core.master import events as ev
from agora.core.master import registry as reg
from agora.core.master import tasks as master_tasks
from agora.core.task_states import TaskState
from agora.testing.sim import InvariantViolation, SimConfig, Simulation, run_seed
from agora.testing.sim.agent import SimAgent
from agora.testing.sim.checkpoint import CheckpointedTask
from agora.testing.sim.registrar import SimRegistrar

CI_SEEDS = range(240)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_seed_keeps_every_invariant(seed: int) -> None:
    run_seed(seed)


@functools.cache
def _run(seed: int) -> Simulation:
    return run_seed(seed)


def test_same_seed_same_history() -> None:
    first, second = run_seed(7), run_seed(7)
    assert first.steps == second.steps
    assert list(first.trace) == list(second.trace)
    assert first.checker.final_states == second.checker.final_states
    assert first.stats == second.stats and first.store.registry == second.store.registry


def test_different_seeds_differ() -> None:
    assert list(run_seed(1).trace) != list(run_seed(2).trace)


def test_simulations_exercise_what_they_claim() -> None:
    """Across a few seeds, tasks really run and end in every way, agents really get
    partitioned and come back, and the network really loses and duplicates messages."""
    states: collections.Counter[TaskState] = collections.Counter()
    launched = dropped = duplicated = partitioned = 0
    for seed in range(12):
        sim = _run(seed)
        launched += sum(len(f.launched) for f in sim.frameworks)
        for framework in sim.frameworks:
            for seen in framework.observed.values():
                states.update(seen.states)
        dropped += sim.network.stats.dropped
        duplicated += sim.network.stats.duplicated
        partitioned += sim.network.stats.partitioned
    assert launched > 300
    for state in (
        TaskState.RUNNING,
        TaskState.FINISHED,
        TaskState.FAILED,
        TaskState.KILLED,
        TaskState.UNREACHABLE,
        TaskState.LOST,
        TaskState.GONE,
        TaskState.DROPPED,
    ):
        assert states[state] > 0, f"no simulated task was ever {state.value}"
    assert dropped > 0 and duplicated > 0 and partitioned > 0


def test_the_process_faults_really_strike() -> None:
    """Across a few seeds masters really crash (some inside a registry write, which then
    is lost or lands unheard) and new ones are elected; agents really restart and hosts
    reboot; checkpoint writes, status updates among them, are really lost; frameworks
    re-subscribe late and ask again when a new master has no answer yet; the operator's
    calls are answered only once durable; and the registry is really written."""
    totals: collections.Counter[str] = collections.Counter()
    for seed in range(30):
        sim = _run(seed)
        totals.update(dataclasses.asdict(sim.stats))
        totals.update(dataclasses.asdict(sim.store.stats))
        totals["vanished"] += len(sim.checker.vanished_tasks)
        for call, answer in sim.operator.answers:
            totals[f"{type(call).__name__} {answer.status}"] += 1
    for what in (
        "master_crashes",
        "crashes_in_registry_writes",
        "operations_lost",
        "operations_landed_unheard",
        "agent_restarts",
        "host_reboots",
        "reboots_keeping_id",
        "agent_writes_lost",
        "update_writes_lost",
        "late_resubscriptions",
        "reconcile_retries",
        "vanished",
        "MarkAgentGone 200",
        "UpdateWeights 200",
    ):
        assert totals[what] > 0, f"no simulation ever saw {what}"
    assert totals["reboots_keeping_id"] < totals["host_reboots"]  # some came back as new
    assert totals["elections"] > 30 + totals["master_crashes"] * 0.9
    assert totals["groups_written"] < totals["operations_written"]  # writes were grouped


def test_a_quiet_cluster_settles_without_faults() -> None:
    config = SimConfig(
        agents=3,
        frameworks=2,
        tasks_per_framework=20,
        drop_rate=0.0,
        duplicate_rate=0.0,
        slow_rate=0.0,
        partitions=0,
        stream_breaks=0,
        task_failure_rate=0.0,
        master_crashes=0,
        agent_restarts=0,
        weight_updates=0,
    )
    sim = Simulation(5, config)
    sim.run()
    finals = collections.Counter(sim.checker.final_states.values())
    assert sum(len(f.launched) for f in sim.frameworks) == 40
    assert finals[TaskState.FINISHED] + finals[TaskState.KILLED] + finals[TaskState.DROPPED] == 40
    assert sim.stats.elections == 1 and not sim.checker.vanished_tasks


# --------------------------------------------------------------- planted bugs
#
# Each plants one bug and names a seed that must catch it: the invariants can fail.


def _leak_task_resources(mp: pytest.MonkeyPatch) -> None:
    """A task ends but its resources never return to the allocator."""
    mp.setattr(master_core.MasterCore, "_release_task", lambda self, task: None)


def _forget_to_persist_unreachable(mp: pytest.MonkeyPatch) -> None:
    persist = master_core.MasterCore.persist

    def skip(self: master_core.MasterCore, operation: reg.Operation) -> None:
        if not isinstance(operation, reg.MarkUnreachable):
            persist(self, operation)

    mp.setattr(master_core.MasterCore, "persist", skip)


def _persist_after_what_depends_on_it(mp: pytest.MonkeyPatch) -> None:
    handle = master_core.MasterCore.handle

    def persists_last(
        self: master_core.MasterCore, event: ev.MasterEvent, now: float
    ) -> list[cmd.Command]:
        out = handle(self, event, now)
        return sorted(out, key=lambda c: isinstance(c, cmd.Persist))

    mp.setattr(master_core.MasterCore, "handle", persists_last)


def _carry_out_without_waiting_for_writes(mp: pytest.MonkeyPatch) -> None:
    def dispatch(self: SimRegistrar, commands: list[cmd.Command]) -> None:
        operations = [c.operation for c in commands if isinstance(c, cmd.Persist)]
        for command in commands:
            if not isinstance(command, cmd.Persist):
                self._carry_out(command)
        if operations:
            self._after(0.05, lambda: self.store.write(operations))

    mp.setattr(SimRegistrar, "dispatch", dispatch)


def _answer_reconciliation_while_agents_recover(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(master_tasks, "_may_still_appear", lambda master, agent_id: False)


def _recover_without_catching_up(mp: pytest.MonkeyPatch) -> None:
    """A restarted agent adopts its checkpointed tasks as they were recorded."""
    mp.setattr(SimAgent, "_catch_up", lambda self, key, task: None)


def _recover_without_replaying_updates(mp: pytest.MonkeyPatch) -> None:
    """A restarted agent does not resend the updates still unacknowledged."""
    mp.setattr(CheckpointedTask, "unacknowledged", lambda self: [])


def _recover_without_the_acknowledgements(mp: pytest.MonkeyPatch) -> None:
    """A restarted agent resends updates that were already acknowledged."""
    mp.setattr(CheckpointedTask, "unacknowledged", lambda self: list(self.updates))


PLANTED: list[tuple[Callable[[pytest.MonkeyPatch], None], int, str]] = [
    (_leak_task_resources, 3, "allocator holds"),
    (_forget_to_persist_unreachable, 0, "before the agent was durably unreachable"),
    (_persist_after_what_depends_on_it, 0, "before its admission was durable"),
    (_carry_out_without_waiting_for_writes, 0, "the registry"),
    (_answer_reconciliation_while_agents_recover, 1, "while it runs on"),
    (_recover_without_catching_up, 0, "but no agent runs it"),
    (_recover_without_replaying_updates, 2, "were dropped"),
    (_recover_without_the_acknowledgements, 18, "an acknowledged update came back"),
]


@pytest.mark.parametrize(
    ("plant", "seed", "message"), PLANTED, ids=[p[0].__name__.strip("_") for p in PLANTED]
)
def test_a_planted_bug_is_caught_with_a_reproduction_line(
    monkeypatch: pytest.MonkeyPatch,
    plant: Callable[[pytest.MonkeyPatch], None],
    seed: int,
    message: str,
) -> None:
    plant(monkeypatch)
    with pytest.raises(InvariantViolation) as failure:
        run_seed(seed)
    assert message in failure.value.message
    assert f"python -m agora.testing.sim --seed {seed}" in str(failure.value)
