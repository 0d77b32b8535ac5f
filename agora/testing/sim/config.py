"""How big a simulated cluster is and how hostile its world is, all drawn from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class SimConfig:
    agents: int = 5
    frameworks: int = 3
    tasks_per_framework: int = 40
    live_tasks_per_framework: int = 8  # at once: the work spreads over the run
    duration_s: float = 240.0  # faults happen during this time...
    quiesce_s: float = 240.0  # ...then the network heals and everything settles
    # agent <-> master links
    drop_rate: float = 0.02
    duplicate_rate: float = 0.02
    delay_s: tuple[float, float] = (0.001, 0.05)
    slow_rate: float = 0.02  # a message takes up to slow_delay_s instead
    slow_delay_s: float = 2.0
    partitions: int = 2  # agents cut off for a while
    partition_s: tuple[float, float] = (10.0, 120.0)
    socket_break_rate: float = 0.5  # share of partitions the master notices as a disconnect
    stream_breaks: int = 2  # framework event streams that break (framework fails over)
    task_duration_s: tuple[float, float] = (1.0, 30.0)
    task_failure_rate: float = 0.1
    checkpointing_rate: float = 0.7  # share of frameworks with FrameworkInfo.checkpoint
    # master processes and the registry
    master_crashes: int = 1
    crash_in_write_rate: float = 0.5  # share of crashes (master or agent) inside a write
    election_s: tuple[float, float] = (2.0, 20.0)  # from a master's death to a new leader
    detect_s: tuple[float, float] = (0.1, 5.0)  # from an election to its detection
    late_framework_rate: float = 0.25  # share of frameworks that re-subscribe late...
    late_s: tuple[float, float] = (30.0, 150.0)  # ...this long after the election
    registry_write_s: tuple[float, float] = (0.002, 0.2)
    # Scaled down from Mesos's 10 minutes so that a run sees it expire; drawn per seed.
    agent_reregister_timeout_s: float = 600.0
    weight_updates: int = 1  # operator calls to change a role's weight
    # agent processes and hosts
    agent_restarts: int = 1
    host_reboots: int = 0
    agent_down_s: tuple[float, float] = (0.5, 30.0)
    checkpoint_write_s: tuple[float, float] = (0.001, 0.02)

    @staticmethod
    def draw(rng: random.Random) -> SimConfig:
        """A random but reproducible configuration for one seed."""
        return SimConfig(
            agents=rng.randint(2, 8),
            frameworks=rng.randint(1, 4),
            tasks_per_framework=rng.randint(10, 60),
            live_tasks_per_framework=rng.randint(2, 8),
            drop_rate=rng.choice([0.0, 0.01, 0.05]),
            duplicate_rate=rng.choice([0.0, 0.01, 0.05]),
            slow_rate=rng.choice([0.0, 0.02, 0.1]),
            partitions=rng.randint(0, 3),
            stream_breaks=rng.randint(0, 3),
            socket_break_rate=rng.random(),
            task_failure_rate=rng.choice([0.0, 0.1, 0.3]),
            checkpointing_rate=rng.choice([0.5, 0.8, 1.0]),
            master_crashes=rng.choice([0, 1, 1, 2, 3]),
            crash_in_write_rate=rng.choice([0.3, 0.6]),
            late_framework_rate=rng.choice([0.0, 0.3, 0.6]),
            agent_reregister_timeout_s=rng.choice([60.0, 150.0, 600.0]),
            weight_updates=rng.randint(0, 2),
            agent_restarts=rng.randint(0, 3),
            host_reboots=rng.choice([0, 0, 1, 2]),
        )
