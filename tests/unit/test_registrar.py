"""The registrar's ordering contract: nothing after a Persist is carried out before the
store says it is durable; persists queued meanwhile share one write; a store failure
carries out nothing that waited on it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

import pytest

from agora.core.allocator.quota import Quota
from agora.core.master import commands as cmd
from agora.core.master import registry as reg
from agora.core.master.info import AgentInfo, MasterInfo
from agora.core.quantities import Limits, Quantities
from agora.master.registrar import Answers, Registrar
from agora.master.registry.memory_store import MemoryStore
from agora.master.registry.records import registry_from_records, transaction
from agora.master.registry.store import StoreError, Transaction


class GatedStore(MemoryStore):
    """Writes wait for `release`; `fail` makes the next write raise."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.applies: list[int] = []
        self.fail = False

    async def apply(self, transactions: Sequence[Transaction]) -> None:
        self.applies.append(len(transactions))
        await self.release.wait()
        if self.fail:
            raise StoreError("disk on fire")
        await super().apply(transactions)


class Recorder:
    def __init__(self) -> None:
        self.done: list[cmd.Command] = []
        self.failures: list[StoreError] = []

    def carry_out(self, commands: list[cmd.Command]) -> Answers:
        self.done.extend(c for c in commands if not isinstance(c, cmd.Persist))
        return [c for c in commands if isinstance(c, cmd.Respond)]


def run(scenario: Coroutine[Any, Any, None]) -> None:
    """A scenario that hangs fails in seconds, not at pytest's timeout."""
    asyncio.run(asyncio.wait_for(scenario, 5.0))


def persist(agent_id: str) -> cmd.Persist:
    return cmd.Persist(reg.MarkGone(agent_id, 1.0))


def test_commands_after_a_persist_wait_for_it_and_persists_group() -> None:
    async def scenario() -> None:
        store, recorder = GatedStore(), Recorder()
        registrar = Registrar(store, recorder.carry_out, recorder.failures.append)
        first: list[cmd.Command] = [persist("a"), cmd.Respond("r1", 200)]
        assert registrar.must_hold(first)
        answers1 = registrar.hold(first)
        await asyncio.sleep(0)  # the writer starts its first apply
        assert registrar.must_hold([cmd.Respond("r2", 202)])  # queued behind the write
        answers2 = registrar.hold([cmd.Respond("r2", 202)])
        third: list[cmd.Command] = [persist("b"), persist("c"), cmd.Respond("r3", 200)]
        answers3 = registrar.hold(third)
        assert recorder.done == []
        store.release.set()
        assert await answers1 == [cmd.Respond("r1", 200)]
        assert await answers2 == [cmd.Respond("r2", 202)]
        assert await answers3 == [cmd.Respond("r3", 200)]
        assert [c.request_id for c in recorder.done if isinstance(c, cmd.Respond)] == [
            "r1",
            "r2",
            "r3",
        ]
        assert store.applies == [1, 2]  # b and c went in one group
        assert set(registry_from_records(await store.load()).gone) == {"a", "b", "c"}
        assert not registrar.must_hold([cmd.Respond("r4", 202)])

    run(scenario())


def test_a_store_failure_carries_out_nothing_that_waited() -> None:
    async def scenario() -> None:
        store, recorder = GatedStore(), Recorder()
        registrar = Registrar(store, recorder.carry_out, recorder.failures.append)
        commands: list[cmd.Command] = [persist("a"), cmd.Respond("r1", 200)]
        answers = registrar.hold(commands)
        store.fail = True
        store.release.set()
        with pytest.raises(asyncio.CancelledError):
            await answers
        assert recorder.done == [] and len(recorder.failures) == 1
        assert registry_from_records(await store.load()).gone == {}

    run(scenario())


@pytest.mark.parametrize(
    "operation",
    [
        reg.RecordLeader(MasterInfo(id="m", ip="10.0.0.1", port=5050, hostname="m1")),
        reg.AdmitAgent("a", AgentInfo(hostname="h", port=5051)),
        reg.MarkUnreachable("a", AgentInfo(hostname="h"), 3.5),
        reg.MarkGone("a", 4.0),
        reg.SetWeights({"eng": 2.0, "eng/web": 0.5}),
        reg.SetMaintenanceSchedule({"windows": []}),
        reg.SetQuotas({"eng": Quota(Quantities({"cpus": 1500}), Limits({"mem": 512_000}))}),
    ],
)
def test_records_round_trip_through_a_store(operation: reg.Operation) -> None:
    async def scenario() -> None:
        store = MemoryStore()
        await store.apply([transaction(operation)])
        assert registry_from_records(await store.load()) == reg.Registry().apply(operation)

    run(scenario())
