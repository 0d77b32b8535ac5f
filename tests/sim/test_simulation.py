"""Seeded, fault-injecting simulations of a whole cluster around the real master core.

CI runs a fixed set of seeds; `python -m agora.testing.sim --seeds 0-9999` runs more.
"""

from __future__ import annotations

import collections

import pytest

from agora.core.master import core as master_core
from agora.core.task_states import TaskState
from agora.testing.sim import InvariantViolation, SimConfig, Simulation, run_seed

CI_SEEDS = range(120)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_seed_keeps_every_invariant(seed: int) -> None:
    run_seed(seed)


def test_same_seed_same_history() -> None:
    first, second = run_seed(7), run_seed(7)
    assert first.steps == second.steps
    assert list(first.trace) == list(second.trace)
    assert first.checker.final_states == second.checker.final_states


def test_different_seeds_differ() -> None:
    assert list(run_seed(1).trace) != list(run_seed(2).trace)


def test_simulations_exercise_what_they_claim() -> None:
    """Across a few seeds, tasks really run and end in every way, agents really get
    partitioned and come back, and the network really loses and duplicates messages."""
    states: collections.Counter[TaskState] = collections.Counter()
    launched = dropped = duplicated = partitioned = 0
    for seed in range(12):
        sim = run_seed(seed)
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
    ):
        assert states[state] > 0, f"no simulated task was ever {state.value}"
    assert dropped > 0 and duplicated > 0 and partitioned > 0


def test_a_planted_bug_is_caught_with_a_reproduction_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker must fail when the master leaks resources (a task ends but its
    resources are never returned to the allocator)."""
    monkeypatch.setattr(master_core.MasterCore, "_release_task", lambda self, task: None)
    with pytest.raises(InvariantViolation) as failure:
        run_seed(3)
    assert "allocator holds" in failure.value.message
    assert "python -m agora.testing.sim --seed 3" in str(failure.value)


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
