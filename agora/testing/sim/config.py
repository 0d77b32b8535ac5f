"""How big a simulated cluster is and how hostile its network is, all drawn from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class SimConfig:
    agents: int = 5
    frameworks: int = 3
    tasks_per_framework: int = 40
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

    @staticmethod
    def draw(rng: random.Random) -> SimConfig:
        """A random but reproducible configuration for one seed."""
        return SimConfig(
            agents=rng.randint(2, 8),
            frameworks=rng.randint(1, 4),
            tasks_per_framework=rng.randint(10, 60),
            drop_rate=rng.choice([0.0, 0.01, 0.05]),
            duplicate_rate=rng.choice([0.0, 0.01, 0.05]),
            slow_rate=rng.choice([0.0, 0.02, 0.1]),
            partitions=rng.randint(0, 3),
            stream_breaks=rng.randint(0, 3),
            socket_break_rate=rng.random(),
            task_failure_rate=rng.choice([0.0, 0.1, 0.3]),
        )
