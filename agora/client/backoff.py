"""Exponential backoff with full jitter, and stout duration text (`5secs`, `15mins`)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays that double from `initial_s` up to `max_s`; `reset()` after a success.

    With `jitter` each delay is drawn uniformly from [delay/2, delay] so that many clients
    cut off together do not come back together.
    """

    initial_s: float = 0.1
    max_s: float = 15.0
    factor: float = 2.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random)
    _next_s: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s or self.factor < 1:
            raise ValueError("backoff needs 0 < initial_s <= max_s and factor >= 1")
        self._next_s = self.initial_s

    def next_delay_s(self) -> float:
        delay = self._next_s
        self._next_s = min(self.max_s, self._next_s * self.factor)
        if self.jitter:
            return self.rng.uniform(delay / 2, delay)
        return delay

    def reset(self) -> None:
        self._next_s = self.initial_s


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]+)\s*$")
_UNIT_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "secs": 1.0,
    "mins": 60.0,
    "hrs": 3600.0,
    "days": 86400.0,
    "weeks": 7 * 86400.0,
}


def parse_duration_s(text: str) -> float:
    """stout Duration text -> seconds (`"2secs"` -> 2.0); a bare number means seconds."""
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        pass
    match = _DURATION.match(stripped)
    if not match or match.group(2) not in _UNIT_S:
        raise ValueError(f"not a duration: {text!r} (e.g. 250ms, 5secs, 15mins)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]
