"""A simulated network between the master and its agents and frameworks.

Agent links lose, duplicate, delay and reorder messages and can be partitioned; a
message for an agent travels on a connection and is lost if the agent has moved to
a newer connection by the time it arrives (a closed socket loses what was in flight).
Framework event streams and HTTP calls are reliable and ordered (TCP) but a stream
can be broken, which both ends notice.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from agora.testing.sim.config import SimConfig

Schedule = Callable[[float, Callable[[], None]], None]


@dataclass
class LinkStats:
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    partitioned: int = 0


class Network:
    def __init__(self, config: SimConfig, rng: random.Random, schedule: Schedule) -> None:
        self._config = config
        self._rng = rng
        self._schedule = schedule
        self._partitioned: set[str] = set()  # hostnames cut off
        self._stream_clock: dict[str, float] = {}
        self.faults_on = True
        self.stats = LinkStats()

    # ----------------------------------------------------------------- partitions

    def partition(self, host: str) -> None:
        self._partitioned.add(host)

    def heal(self, host: str) -> None:
        self._partitioned.discard(host)

    def is_partitioned(self, host: str) -> bool:
        return host in self._partitioned

    # ---------------------------------------------------------------- agent links

    def _delay(self) -> float:
        c = self._config
        if self.faults_on and self._rng.random() < c.slow_rate:
            return self._rng.uniform(c.delay_s[1], c.slow_delay_s)
        return self._rng.uniform(*c.delay_s)

    def agent_link(self, host: str, now: float, deliver: Callable[[], None]) -> None:
        """Send one message between the master and agent `host` (either direction)."""
        self.stats.sent += 1
        if host in self._partitioned:
            self.stats.partitioned += 1
            return
        c = self._config
        if self.faults_on and self._rng.random() < c.drop_rate:
            self.stats.dropped += 1
            return
        copies = 1
        if self.faults_on and self._rng.random() < c.duplicate_rate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            self._schedule(now + self._delay(), deliver)

    # ------------------------------------------------------------ framework links

    def reliable(self, channel: str, now: float, deliver: Callable[[], None]) -> None:
        """In-order delivery on a TCP-like channel (stream or HTTP connection)."""
        at = max(
            self._stream_clock.get(channel, 0.0), now + self._rng.uniform(*self._config.delay_s)
        )
        self._stream_clock[channel] = at
        self._schedule(at, deliver)
