"""The machine under a simulated agent: the processes its supervisor runs.

This is the ground truth the invariants compare against. A process outlives the agent
process that started it (the supervisor keeps it and records its exit), so a task of a
checkpointing framework goes on running while its agent restarts, and an exit during
the downtime is still known afterwards. A host reboot ends every process without a
trace; an agent crash ends those of frameworks that do not checkpoint (their executors
die with the agent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agora.core.task_states import TaskState

if TYPE_CHECKING:
    from agora.testing.sim.world import Simulation

KILL_GRACE_S = 1.0

TaskKey = tuple[str, str]  # framework id, task id
Listener = Callable[[TaskKey, TaskState], None]


@dataclass
class Process:
    key: TaskKey
    survives_agent: bool  # its framework checkpoints
    state: TaskState  # STARTING, RUNNING, or how it ended
    generation: int  # bumped when the process is killed, to cancel its schedule

    @property
    def alive(self) -> bool:
        return not self.state.is_terminal


class Host:
    def __init__(self, sim: Simulation, hostname: str) -> None:
        self.sim = sim
        self.hostname = hostname
        self.processes: dict[TaskKey, Process] = {}
        self._generation = 0
        # The agent process, while it runs, hears of every change.
        self.listener: Listener | None = None

    def running(self) -> list[TaskKey]:
        return [key for key, process in self.processes.items() if process.alive]

    def start(self, key: TaskKey, survives_agent: bool, run_s: float, end: TaskState) -> None:
        """Start a task's process (STARTING); RUNNING soon after, `end` after `run_s`."""
        self._generation += 1
        process = Process(key, survives_agent, TaskState.STARTING, self._generation)
        self.processes[key] = process
        self._tell(key, TaskState.STARTING)
        generation = process.generation
        rng = self.sim.rng
        self.sim.after(
            rng.uniform(0.01, 0.25), lambda: self._move(key, generation, TaskState.RUNNING)
        )
        self.sim.after(run_s, lambda: self._move(key, generation, end))

    def kill(self, key: TaskKey) -> None:
        """Signal the process: it is KILLED after a grace period, agent or not."""
        process = self.processes.get(key)
        if process is None or not process.alive:
            return
        self._generation += 1
        process.generation = self._generation
        generation = process.generation
        self.sim.after(KILL_GRACE_S, lambda: self._move(key, generation, TaskState.KILLED))

    def forget(self, key: TaskKey) -> None:
        """The agent handled the process's end durably: the supervisor may drop it."""
        process = self.processes.get(key)
        if process is not None and not process.alive:
            del self.processes[key]

    def destroy(self, keep: Callable[[Process], bool]) -> list[TaskKey]:
        """End every process `keep` rejects at once, leaving no record of how (a reboot,
        or the agent's death taking its executors along); returns their keys."""
        gone = [key for key, process in self.processes.items() if not keep(process)]
        for key in gone:
            del self.processes[key]
        return gone

    def _move(self, key: TaskKey, generation: int, state: TaskState) -> None:
        process = self.processes.get(key)
        if process is None or process.generation != generation or not process.alive:
            return
        process.state = state
        if state.is_terminal:
            self.sim.checker.record_final(key[0], key[1], state)
        self._tell(key, state)

    def _tell(self, key: TaskKey, state: TaskState) -> None:
        if self.listener is not None:
            self.listener(key, state)
