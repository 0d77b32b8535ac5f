"""Swarms of simulated agents that speak the real agent channel to a real master: for
benchmarks (bench/failover.py) and for tests that need many agents (see swarm.py)."""

from agora.testing.swarm.agent import Phase, SwarmAgent
from agora.testing.swarm.swarm import Swarm, SwarmOptions
from agora.testing.swarm.workload import SwarmSpec

__all__ = ["Phase", "Swarm", "SwarmAgent", "SwarmOptions", "SwarmSpec"]
