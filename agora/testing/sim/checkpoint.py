"""A simulated agent's checkpoint (its `meta/` directory) and the writes that fill it.

Only what is written survives an agent restart: the agent id, the FrameworkInfo and
tasks of checkpointing frameworks, and each task's status updates and the
acknowledgements of them (Mesos's `task.updates`). A write becomes durable a moment
after it is made (the fsync); writes complete in the order they were made, so what
survives a crash is always a prefix of what was written, and whatever was to happen
after a write (forwarding an update, starting a process) happens only once it is
durable. A crash inside that moment loses the write: the lost unsynced write.

A host reboot wipes the checkpoint: the agent comes back as a new agent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agora.core.master.info import FrameworkInfo, TaskStatus
from agora.core.resources import Resources

if TYPE_CHECKING:
    from agora.testing.sim.world import Simulation

TaskKey = tuple[str, str]  # framework id, task id


@dataclass
class CheckpointedTask:
    name: str
    resources: Resources
    updates: list[TaskStatus] = field(default_factory=list)
    acknowledged: set[bytes] = field(default_factory=set)

    def unacknowledged(self) -> list[TaskStatus]:
        return [u for u in self.updates if u.uuid not in self.acknowledged]


@dataclass
class Checkpoint:
    agent_id: str | None = None
    frameworks: dict[str, FrameworkInfo] = field(default_factory=dict)
    tasks: dict[TaskKey, CheckpointedTask] = field(default_factory=dict)


@dataclass
class PendingWrite:
    what: str  # "agent id", "task", "update", "acknowledgement"
    key: TaskKey | None
    apply: Callable[[Checkpoint], None]
    then: Callable[[], None]


class CheckpointWriter:
    """Writes to one agent's checkpoint, in order, each durable after the fsync."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.checkpoint = Checkpoint()
        self.pending: list[PendingWrite] = []
        self._clock = 0.0
        self._generation = 0  # bumped by a crash: writes of the dead process never land
        # Called with the time a write will take, as it starts (fault injection).
        self.on_write: Callable[[float], None] | None = None

    def write(
        self,
        what: str,
        key: TaskKey | None,
        apply: Callable[[Checkpoint], None],
        then: Callable[[], None],
    ) -> None:
        sim = self.sim
        done = max(self._clock, sim.now) + sim.rng.uniform(*sim.config.checkpoint_write_s)
        self._clock = done
        write = PendingWrite(what, key, apply, then)
        self.pending.append(write)
        generation = self._generation
        if self.on_write is not None:
            self.on_write(done - sim.now)
        sim.at(done, lambda: self._durable(generation, write))

    def _durable(self, generation: int, write: PendingWrite) -> None:
        if generation != self._generation:
            return
        assert self.pending and self.pending[0] is write, "writes complete in order"
        self.pending.pop(0)
        write.apply(self.checkpoint)
        write.then()

    def crash(self) -> list[PendingWrite]:
        """The agent process died: its unsynced writes are lost (returned)."""
        self._generation += 1
        lost, self.pending = self.pending, []
        self._clock = self.sim.now
        return lost

    def wipe(self) -> None:
        """The host rebooted and its work dir is gone."""
        self.checkpoint = Checkpoint()
