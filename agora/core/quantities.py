"""Metadata-free resource amounts: `Quantities` (absent = 0) and `Limits` (absent = ∞).

Used by quota, the DRF sorters and `min_allocatable_resources`. Amounts are integer
milli-units; for ranges and sets the quantity is the item count (x 1000).
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView

from agora.core.errors import InvalidResource
from agora.core.values import format_millis, scalar_to_millis


class Quantities(Mapping[str, int]):
    """Name -> amount in milli-units; a name that is absent means zero."""

    __slots__ = ("amounts", "_hash")

    # `amounts` is the plain dict behind the mapping, exposed for hot loops (the
    # allocator's sorters) that cannot afford the Mapping protocol's per-call cost.
    # Never mutate it: Quantities are immutable values.
    amounts: dict[str, int]

    def __init__(self, amounts: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        items = amounts.items() if isinstance(amounts, Mapping) else amounts
        self.amounts = {name: int(v) for name, v in items if v}
        self._hash: int | None = None
        for name, v in self.amounts.items():
            if v < 0:
                raise InvalidResource(f"quantity of {name!r} must not be negative")

    @classmethod
    def _trusted(cls, d: dict[str, int]) -> Quantities:
        q = cls.__new__(cls)
        q.amounts = d
        q._hash = None
        return q

    @classmethod
    def parse(cls, text: str) -> Quantities:
        """`cpus:1;mem:512` -> quantities (the form of --min_allocatable_resources)."""
        amounts: dict[str, int] = {}
        for raw in text.split(";"):
            part = raw.strip()
            if not part:
                continue
            name, sep, value = part.partition(":")
            name = name.strip()
            if not sep or not name:
                raise InvalidResource(f"quantity {part!r} must look like 'name:value'")
            if name in amounts:
                raise InvalidResource(f"quantity {name!r} is given twice")
            amounts[name] = scalar_to_millis(value.strip(), what=f"quantity {name!r}")
        return cls(amounts)

    def __getitem__(self, name: str) -> int:
        return self.amounts.get(name, 0)

    def __contains__(self, name: object) -> bool:
        return name in self.amounts

    # Direct dict views: the Mapping mix-ins would go through __getitem__ per key.
    def items(self) -> ItemsView[str, int]:
        return self.amounts.items()

    def keys(self) -> KeysView[str]:
        return self.amounts.keys()

    def values(self) -> ValuesView[int]:
        return self.amounts.values()

    def get(self, name: str, default: int | None = 0) -> int | None:  # type: ignore[override]
        return self.amounts.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.amounts)

    def __len__(self) -> int:
        return len(self.amounts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Quantities):
            return self.amounts == other.amounts
        return NotImplemented

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash(frozenset(self.amounts.items()))
        return h

    def __add__(self, other: Mapping[str, int]) -> Quantities:
        d = dict(self.amounts)
        for name, v in other.items():
            d[name] = d.get(name, 0) + v
        return Quantities._trusted({k: v for k, v in d.items() if v})

    def __sub__(self, other: Mapping[str, int]) -> Quantities:
        """Saturating difference: never below zero."""
        d = dict(self.amounts)
        for name, v in other.items():
            if name in d:
                d[name] -= v
        return Quantities._trusted({k: v for k, v in d.items() if v > 0})

    def covers(self, other: Mapping[str, int]) -> bool:
        """True when every amount of `other` is at most the amount here."""
        d = self.amounts
        return all(d.get(name, 0) >= v for name, v in other.items())

    def minimum(self, other: Mapping[str, int]) -> Quantities:
        d = self.amounts
        return Quantities._trusted(
            {k: min(v, other[k]) for k, v in d.items() if k in other and min(v, other[k]) > 0}
        )

    def as_dict(self) -> dict[str, int]:
        return dict(self.amounts)

    def __repr__(self) -> str:
        return (
            "Quantities("
            + ";".join(f"{k}:{format_millis(v)}" for k, v in self.amounts.items())
            + ")"
        )


EMPTY_QUANTITIES = Quantities()


class Limits(Mapping[str, int]):
    """Name -> cap in milli-units; a name that is absent is unlimited."""

    __slots__ = ("_d",)

    def __init__(self, caps: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        items = caps.items() if isinstance(caps, Mapping) else caps
        self._d: dict[str, int] = dict(items)
        for name, v in self._d.items():
            if v < 0:
                raise InvalidResource(f"limit of {name!r} must not be negative")

    def __getitem__(self, name: str) -> int:
        return self._d[name]

    def __contains__(self, name: object) -> bool:
        return name in self._d

    def items(self) -> ItemsView[str, int]:
        return self._d.items()

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Limits):
            return self._d == other._d
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._d.items()))

    def allows(self, amounts: Mapping[str, int]) -> bool:
        d = self._d
        return all(v <= d[name] for name, v in amounts.items() if name in d)

    def headroom(self, consumed: Mapping[str, int]) -> Limits:
        """What is left under these limits after `consumed` (never negative)."""
        return Limits({k: max(0, cap - consumed.get(k, 0)) for k, cap in self._d.items()})

    def __repr__(self) -> str:
        return "Limits(" + ";".join(f"{k}:{format_millis(v)}" for k, v in self._d.items()) + ")"


NO_LIMITS = Limits()
