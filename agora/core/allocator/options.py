"""Allocator settings and the Mesos rules for decline filter durations."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agora.core.quantities import Quantities

DEFAULT_REFUSE_S = 5.0
MAX_REFUSE_S = 365 * 24 * 3600.0

DEFAULT_MIN_ALLOCATABLE: tuple[Quantities, ...] = (
    Quantities({"cpus": 10}),  # cpus:0.01
    Quantities({"mem": 32_000}),  # mem:32
)


@dataclass(frozen=True)
class AllocatorOptions:
    allocation_interval_s: float = 1.0
    # OR of AND-sets: an offer must cover at least one of these (empty tuple: any
    # non-empty offer). Frameworks may override it per role.
    min_allocatable: tuple[Quantities, ...] = DEFAULT_MIN_ALLOCATABLE
    fairness_excluded_names: frozenset[str] = field(default_factory=frozenset)
    filter_gpu_resources: bool = True
    master_region: str | None = None


def refuse_duration_s(refuse_seconds: object, allocation_interval_s: float) -> float | None:
    """How long a decline filter lasts, following Mesos's bounds and fallbacks.

    Missing, negative or invalid values fall back to 5 s; 0 means no filter (None);
    values above 365 days are capped; anything shorter than the allocation interval
    is raised to it so the filter outlives at least one batch allocation (MESOS-4302).
    """
    valid_type = isinstance(refuse_seconds, int | float) and not isinstance(refuse_seconds, bool)
    if not valid_type:
        seconds = DEFAULT_REFUSE_S
    else:
        seconds = float(refuse_seconds)  # type: ignore[arg-type]
        if math.isnan(seconds) or seconds < 0:
            seconds = DEFAULT_REFUSE_S
    if seconds == 0:
        return None
    seconds = min(seconds, MAX_REFUSE_S)
    return max(seconds, allocation_interval_s)
