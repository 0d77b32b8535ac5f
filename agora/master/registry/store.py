"""The Store contract every registry backend keeps (SQLite for a single master,
ZooKeeper for HA); tests/integration/test_registry_store.py runs one conformance suite
against each.

The registry is a set of small records, `kind -> key -> value`, not one large object:
10,000 agents would make a whole-registry write (as Mesos does it) megabytes long, and
a ZooKeeper znode holds at most 1 MB. Kinds and keys are any non-empty strings (a role
such as `eng/web` is a key); values are opaque bytes.

`apply` takes a sequence of transactions, each a sequence of changes. Each transaction
is atomic (all of its changes or none are visible after a crash), transactions take
effect in order, and when `apply` returns every one of them is durable. The master
makes each registry operation one transaction and hands all that are pending in one
`apply` call (group commit), so a burst of registrations costs one round trip.

A store may be fenced: a ZooKeeper store refuses to write once its master has lost the
leadership it was created under (`StoreFencedError`), so a deposed leader cannot overwrite
its successor's registry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Put:
    kind: str
    key: str
    value: bytes


@dataclass(frozen=True)
class Delete:
    """Remove a record; deleting one that is not there is not an error."""

    kind: str
    key: str


Change = Put | Delete
Transaction = Sequence[Change]
Records = Mapping[str, Mapping[str, bytes]]  # kind -> key -> value


class StoreError(Exception):
    """The store could not read or write (the master must not go on as if it had)."""


class StoreFencedError(StoreError):
    """This store's master is no longer the leader: it must not write any more."""


class Store(Protocol):
    async def load(self) -> dict[str, dict[str, bytes]]:
        """Every record, by kind then key (kinds without records are absent)."""

    async def apply(self, transactions: Sequence[Transaction]) -> None:
        """Make the transactions durable, in order, each atomically (see the module)."""

    async def close(self) -> None:
        """Release the connection or file; the store is not used afterwards."""


def check_change(change: Change) -> None:
    """Kinds and keys must be non-empty strings; values bytes (all backends refuse alike)."""
    if not isinstance(change.kind, str) or not change.kind:
        raise StoreError(f"a registry kind must be a non-empty string, not {change.kind!r}")
    if not isinstance(change.key, str) or not change.key:
        raise StoreError(f"a registry key must be a non-empty string, not {change.key!r}")
    if isinstance(change, Put) and not isinstance(change.value, bytes):
        raise StoreError(f"the value of {change.kind}/{change.key} must be bytes")
