"""The only source of randomness in the core: generators the caller seeds.

Core objects take a `Rng` (a `random.Random`) from their creator and never touch the
global random state, so a run is reproducible from its seed. This is the one core
module that imports `random`; the import-rules test forbids module-level random calls.
"""

from __future__ import annotations

from random import Random

Rng = Random


def seeded(seed: int | float | str | bytes = 0) -> Rng:
    """A generator with a fixed seed (the default when a caller injects none)."""
    return Random(seed)


def child(parent: Rng) -> Rng:
    """An independent generator drawn from `parent`, for a sub-component."""
    return Random(parent.getrandbits(64))
