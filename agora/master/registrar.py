"""The registrar: makes the core's `Persist` commands durable and holds every command
that follows one until it is (the contract in agora/core/master/registry.py).

While nothing is being written, commands are carried out at once (the hot path pays
one scan of the command list). Once a Persist arrives, that dispatch and every later
one queue here in order; one writer applies all persists queued so far to the store in
a single `apply` (group commit: a burst of agent registrations costs one round trip),
then carries out the queued commands in order and hands each dispatch its answers.

A store failure is fatal to this term as leader, as in Mesos (whose master exits when
its registrar fails): the owner is told and must stop acting as leader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from agora.core.master import commands as cmd
from agora.master.registry.records import transaction
from agora.master.registry.store import Store, StoreError

log = logging.getLogger("agora.master")

ResponseCommand = cmd.Respond | cmd.OpenStream | cmd.RefuseSubscription
Answers = list[ResponseCommand]


@dataclass
class _Held:
    commands: list[cmd.Command]
    answers: asyncio.Future[Answers]


class Registrar:
    def __init__(
        self,
        store: Store,
        carry_out: Callable[[list[cmd.Command]], Answers],
        on_failure: Callable[[StoreError], None],
    ) -> None:
        self.store = store
        self._carry_out = carry_out
        self._on_failure = on_failure
        self._held: list[_Held] = []
        self._writer: asyncio.Task[None] | None = None
        self.groups_written = 0
        self.operations_written = 0

    @property
    def holding(self) -> bool:
        """Commands dispatched now must queue behind a write."""
        return self._writer is not None

    def must_hold(self, commands: list[cmd.Command]) -> bool:
        return self._writer is not None or any(isinstance(c, cmd.Persist) for c in commands)

    def hold(self, commands: list[cmd.Command]) -> asyncio.Future[Answers]:
        """Queue a dispatch's commands; the future gets its answers once they are
        carried out (after every persist queued before or with them is durable)."""
        loop = asyncio.get_running_loop()
        held = _Held(commands, loop.create_future())
        self._held.append(held)
        if self._writer is None:
            self._writer = loop.create_task(self._write())
        return held.answers

    def abandon(self) -> None:
        """The master stopped leading: drop what is queued (nothing of it happened)."""
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        for held in self._held:
            held.answers.cancel()
        self._held = []

    async def _write(self) -> None:
        group: list[_Held] = []
        try:
            while self._held:
                group, self._held = self._held, []
                operations = [
                    c.operation for h in group for c in h.commands if isinstance(c, cmd.Persist)
                ]
                if operations:
                    await self.store.apply([transaction(op) for op in operations])
                    self.groups_written += 1
                    self.operations_written += len(operations)
                for held in group:
                    answers = self._carry_out(held.commands)
                    if not held.answers.done():
                        held.answers.set_result(answers)
        except StoreError as error:
            log.critical("the registry could not be written: %s", error)
            self._writer = None
            self._held = group + self._held
            self.abandon()
            self._on_failure(error)
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None
