"""The registry's durable store in the simulation, and the registrar in front of it.

`SimRegistrar` is the simulated twin of the shell's Registrar (agora/master/registrar.py)
and keeps its contract with the core (agora/core/master/registry.py): while nothing is
being written, a step's commands are carried out at once; a step with a `Persist`, and
every step after it, queues in order; one write applies every persist queued so far
(group commit) after the store's write latency, and only then are the queued commands
carried out, in order. `AcceptAgent` is carried out at once even when held, as the shell
does: it only binds a connection to an agent id, so that the connection's end is noticed.

The store (`DurableRegistry`) outlives masters. A master that dies loses its queue; a
write it had in flight either never lands (a lost unsynced write) or lands without the
master hearing of it. Either way nothing held behind it was ever carried out, so no
agent, framework or operator was told anything that rests on it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial, reduce

from agora.core.master import commands as cmd
from agora.core.master import registry as reg


@dataclass
class RegistryStats:
    groups_written: int = 0
    operations_written: int = 0
    # Persists of a master that died before they were durable (including those still
    # queued behind a write), and writes that landed but whose master never heard so.
    operations_lost: int = 0
    operations_landed_unheard: int = 0


@dataclass
class DurableRegistry:
    """What a store holds: only completed writes, and it survives every master."""

    registry: reg.Registry = field(default_factory=reg.Registry)
    stats: RegistryStats = field(default_factory=RegistryStats)

    def write(self, operations: list[reg.Operation]) -> None:
        self.registry = reduce(lambda r, op: r.apply(op), operations, self.registry)
        self.stats.groups_written += 1
        self.stats.operations_written += len(operations)


class SimRegistrar:
    def __init__(
        self,
        store: DurableRegistry,
        carry_out: Callable[[cmd.Command], None],
        schedule_after: Callable[[float, Callable[[], None]], None],
        write_s: tuple[float, float],
        rng: random.Random,
    ) -> None:
        self.store = store
        self._carry_out = carry_out
        self._after = schedule_after
        self._write_s = write_s
        self._rng = rng
        # The registry as of the command being carried out: every persist the core
        # emitted before that command, and none after (a group's write may hold later
        # ones too). The invariants judge each command against it.
        self.view = store.registry
        self._held: list[list[cmd.Command]] = []
        self._writing: list[list[cmd.Command]] | None = None
        self._alive = True
        # Called when the last write settles with nothing held (the master's view and
        # the store must then agree).
        self.on_idle: Callable[[], None] = lambda: None
        # Called with the time a write will take, as it starts (fault injection).
        self.on_write: Callable[[float], None] | None = None

    @property
    def idle(self) -> bool:
        """Nothing is being written and nothing waits for a write."""
        return self._writing is None and not self._held

    def dispatch(self, commands: list[cmd.Command]) -> None:
        """Carry out one step's commands, or queue them behind the registry."""
        if self._writing is None and not any(isinstance(c, cmd.Persist) for c in commands):
            self.view = self.store.registry
            for command in commands:
                self._carry_out(command)
            return
        for command in commands:
            if isinstance(command, cmd.AcceptAgent):
                self._carry_out(command)
        self._held.append(commands)
        if self._writing is None:
            self._next_group()

    def _next_group(self) -> None:
        while self._held:
            group, self._held = self._held, []
            operations = _operations(group)
            if operations:
                self._writing = group
                delay = self._rng.uniform(*self._write_s)
                if self.on_write is not None:
                    self.on_write(delay)
                self._after(delay, partial(self._written, group, operations))
                return
            self.view = self.store.registry
            self._carry_out_group(group)  # nothing to write: in order, at once
        self.on_idle()

    def _written(self, group: list[list[cmd.Command]], operations: list[reg.Operation]) -> None:
        if not self._alive or self._writing is not group:
            return
        self.view = self.store.registry
        self.store.write(operations)
        self._writing = None
        self._carry_out_group(group)
        self._next_group()

    def _carry_out_group(self, group: list[list[cmd.Command]]) -> None:
        for commands in group:
            for command in commands:
                if isinstance(command, cmd.Persist):
                    self.view = self.view.apply(command.operation)
                elif not isinstance(command, cmd.AcceptAgent):
                    self._carry_out(command)
        self.view = self.store.registry

    def crash(self, lands: bool) -> None:
        """The master died: a write in flight lands (unheard) or is lost, as `lands`
        says; whatever was queued behind it is lost."""
        self._alive = False
        stats = self.store.stats
        if self._writing is not None:
            operations = _operations(self._writing)
            if lands:
                self.store.write(operations)
                stats.operations_landed_unheard += len(operations)
            else:
                stats.operations_lost += len(operations)
        stats.operations_lost += len(_operations(self._held))
        self._writing = None
        self._held = []


def _operations(group: list[list[cmd.Command]]) -> list[reg.Operation]:
    return [c.operation for commands in group for c in commands if isinstance(c, cmd.Persist)]
