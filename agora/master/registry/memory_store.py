"""A registry store that forgets everything when the master exits (`--registry
in_memory`, as Mesos's `--registry=in_memory`): for tests, benchmarks and throwaway
clusters. It keeps the Store contract, durability aside."""

from __future__ import annotations

from collections.abc import Sequence

from agora.master.registry.store import Put, Transaction, check_change


class MemoryStore:
    def __init__(self) -> None:
        self.records: dict[str, dict[str, bytes]] = {}

    async def load(self) -> dict[str, dict[str, bytes]]:
        return {kind: dict(keys) for kind, keys in self.records.items() if keys}

    async def apply(self, transactions: Sequence[Transaction]) -> None:
        for transaction in transactions:
            for change in transaction:
                check_change(change)
        for transaction in transactions:
            for change in transaction:
                keys = self.records.setdefault(change.kind, {})
                if isinstance(change, Put):
                    keys[change.key] = change.value
                else:
                    keys.pop(change.key, None)

    async def close(self) -> None:
        """Nothing to release."""
