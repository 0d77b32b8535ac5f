"""Deterministic simulation of a whole cluster around the real master core.

    from agora.testing.sim import run_seed
    run_seed(42)          # raises InvariantViolation with a reproduction line on failure

or from a shell: `python -m agora.testing.sim --seeds 0-99`.
"""

from agora.testing.sim.config import SimConfig
from agora.testing.sim.invariants import InvariantViolation
from agora.testing.sim.world import Simulation, run_seed

__all__ = ["InvariantViolation", "SimConfig", "Simulation", "run_seed"]
