"""`Resources`: an immutable, canonical collection of resource entries and its algebra.

Divisible entries (scalars, ranges, sets) are merged per `ResourceMeta`; atomic
entries (shared or persistent volumes, MOUNT/BLOCK disks, RAW disks with an id) are
kept whole with a count. Because every value is canonical, `==` and `hash` are
structural, and the allocator can memoise on them.

Arithmetic is strict where Mesos is silent: `a - b` raises unless `a` contains `b`,
and `a + b` raises if it would count a port, set item or non-shared volume twice.
`saturating_sub` gives Mesos's forgiving subtraction where that is what is meant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from agora.core.errors import ResourceArithmeticError
from agora.core.quantities import Quantities
from agora.core.resource_meta import (
    Reservation,
    Resource,
    ResourceMeta,
    is_atomic,
    validate_resource,
)
from agora.core.roles import ancestors
from agora.core.values import (
    Kind,
    Ranges,
    SetItems,
    Value,
    ranges_add,
    ranges_contains,
    ranges_subtract,
    ranges_take,
    sets_add,
    value_quantity,
)

AtomKey = tuple[ResourceMeta, Value]

_NO_ATOMS: dict[AtomKey, int] = {}
_UNKNOWN = object()  # a memo entry not computed yet (where None is a value)


@lru_cache(maxsize=1 << 16)
def _meta_with_role(meta: ResourceMeta, role: str | None) -> ResourceMeta:
    """`meta` with its allocation role replaced; cached because offers repeat it a lot."""
    return meta._replace(allocation_role=role)


_NAME_ORDER = {"cpus": 0, "gpus": 1, "mem": 2, "disk": 3, "ports": 4}


def _merge(cur: Value, add: Value) -> Value:
    if type(cur) is int:
        return cur + add  # type: ignore[operator]
    if type(cur) is tuple:
        return ranges_add(cur, add)  # type: ignore[arg-type]
    return sets_add(cur, add)  # type: ignore[arg-type]


def _value_contains(cur: Value, part: Value) -> bool:
    if type(cur) is int:
        return cur >= part  # type: ignore[operator]
    if cur is part or cur == part:
        return True
    if type(cur) is tuple:
        return ranges_contains(cur, part)  # type: ignore[arg-type]
    return cur >= part  # type: ignore[operator]


def _value_minus(cur: Value, part: Value) -> Value:
    """Difference of two values, clamped at empty (the caller checks containment)."""
    if type(cur) is int:
        left = cur - part  # type: ignore[operator]
        return left if left > 0 else 0
    if type(cur) is tuple:
        return ranges_subtract(cur, part)  # type: ignore[arg-type]
    return cur - part  # type: ignore[operator]


class Resources:
    """An immutable multiset of resource entries (see module docstring)."""

    __slots__ = ("_div", "_atoms", "_hash", "_qty", "_memo", "_unallocated")

    _div: dict[ResourceMeta, Value]
    _atoms: dict[AtomKey, int]
    _hash: int | None
    _qty: Quantities | None
    _memo: dict[Any, Any] | None
    _unallocated: Resources | None

    def __init__(self, entries: Iterable[Resource] = ()) -> None:
        """Build from entries, validating each one; equal-metadata entries merge."""
        div: dict[ResourceMeta, Value] = {}
        atoms: dict[AtomKey, int] = {}
        for entry in entries:
            validate_resource(entry)
            meta, value, count = entry
            if not value:
                continue
            if is_atomic(meta):
                key = (meta, value)
                if key in atoms and not meta.shared:
                    raise ResourceArithmeticError(f"{_describe(meta, value)} is given twice")
                atoms[key] = atoms.get(key, 0) + count
            elif meta in div:
                div[meta] = _merge(div[meta], value)
            else:
                div[meta] = value
        self._div = div
        self._atoms = atoms or _NO_ATOMS
        self._hash = None
        self._qty = None
        self._memo = None
        self._unallocated = None

    @classmethod
    def _trusted(cls, div: dict[ResourceMeta, Value], atoms: dict[AtomKey, int]) -> Resources:
        """Wrap already-canonical dicts without copying or validating them."""
        r = cls.__new__(cls)
        r._div = div
        r._atoms = atoms or _NO_ATOMS
        r._hash = None
        r._qty = None
        r._memo = None
        r._unallocated = None
        return r

    # ------------------------------------------------------------------ basic protocol

    def __bool__(self) -> bool:
        return bool(self._div) or bool(self._atoms)

    def is_empty(self) -> bool:
        return not self._div and not self._atoms

    def __len__(self) -> int:
        return len(self._div) + len(self._atoms)

    def __iter__(self) -> Iterator[Resource]:
        for meta, value in self._div.items():
            yield Resource(meta, value)
        for (meta, value), count in self._atoms.items():
            yield Resource(meta, value, count)

    def sorted_entries(self) -> list[Resource]:
        """Entries in a stable, human order (cpus, gpus, mem, disk, ports, others)."""
        return sorted(self, key=_entry_sort_key)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Resources):
            return NotImplemented
        if self._hash is not None and other._hash is not None and self._hash != other._hash:
            return False
        return self._div == other._div and self._atoms == other._atoms

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash((frozenset(self._div.items()), frozenset(self._atoms.items())))
            self._hash = h
        return h

    def __repr__(self) -> str:
        from agora.core.resource_text import format_resources

        return f"Resources({format_resources(self)!r})"

    def __str__(self) -> str:
        from agora.core.resource_text import format_resources

        return format_resources(self)

    # ---------------------------------------------------------------------- arithmetic

    def __add__(self, other: Resources) -> Resources:
        if not other._div and not other._atoms:
            return self
        if not self._div and not self._atoms:
            return other
        div = self._div.copy()
        for meta, value in other._div.items():
            cur = div.get(meta)
            div[meta] = value if cur is None else _merge(cur, value)
        atoms = self._atoms
        if other._atoms:
            atoms = atoms.copy()
            for key, count in other._atoms.items():
                if key in atoms and not key[0].shared:
                    raise ResourceArithmeticError(f"{_describe(*key)} would be counted twice")
                atoms[key] = atoms.get(key, 0) + count
        return Resources._trusted(div, atoms)

    def __sub__(self, other: Resources) -> Resources:
        """Strict difference: raises ResourceArithmeticError unless self contains other."""
        if other is self:
            return EMPTY
        return self._subtract(other, strict=True)

    def saturating_sub(self, other: Resources) -> Resources:
        """Mesos's `-`: remove what is there, ignore what is not."""
        return self._subtract(other, strict=False)

    def _subtract(self, other: Resources, strict: bool) -> Resources:
        if not other._div and not other._atoms:
            return self
        div = self._div.copy()
        for meta, value in other._div.items():
            cur = div.get(meta)
            if cur is value or (cur == value and cur is not None):
                del div[meta]
                continue
            if cur is None or (strict and not _value_contains(cur, value)):
                if strict:
                    raise ResourceArithmeticError(
                        f"cannot subtract {_describe(meta, value)} from {self}"
                    )
                continue
            left = _value_minus(cur, value)
            if left:
                div[meta] = left
            else:
                del div[meta]
        atoms = self._atoms
        if other._atoms:
            atoms = atoms.copy()
            for key, count in other._atoms.items():
                have = atoms.get(key, 0)
                if strict and have < count:
                    raise ResourceArithmeticError(f"cannot subtract {_describe(*key)} from {self}")
                if have <= count:
                    atoms.pop(key, None)
                else:
                    atoms[key] = have - count
        if not div and not atoms:
            return EMPTY  # one shared empty value: less garbage on the allocation path
        return Resources._trusted(div, atoms)

    def contains(self, other: Resources) -> bool:
        """True when every entry of `other` fits inside the matching entry here."""
        div = self._div
        for meta, value in other._div.items():
            cur = div.get(meta)
            if cur is None or not _value_contains(cur, value):
                return False
        if other._atoms:
            atoms = self._atoms
            for key, count in other._atoms.items():
                if atoms.get(key, 0) < count:
                    return False
        return True

    def __le__(self, other: Resources) -> bool:
        return other.contains(self)

    def __ge__(self, other: Resources) -> bool:
        return self.contains(other)

    @staticmethod
    def sum(items: Iterable[Resources]) -> Resources:
        total = EMPTY
        for item in items:
            total = total + item
        return total

    # ------------------------------------------------------------------------- queries

    def quantities(self) -> Quantities:
        """Per-name amounts (milli-units; ranges and sets count items). Cached."""
        q = self._qty
        if q is None:
            amounts: dict[str, int] = {}
            for meta, value in self._div.items():
                amounts[meta.name] = amounts.get(meta.name, 0) + value_quantity(meta.kind, value)
            for (meta, value), _count in self._atoms.items():
                # A shared volume counts once however many times it is shared.
                amounts[meta.name] = amounts.get(meta.name, 0) + value_quantity(meta.kind, value)
            q = Quantities._trusted({k: v for k, v in amounts.items() if v})
            self._qty = q
        return q

    def scalar_quantities(
        self, unreserved_only: bool = False, include_revocable: bool = True
    ) -> Quantities:
        """Quantities of scalar entries only (what DRF shares and quota count). Cached."""
        key = ("scalar_q", unreserved_only, include_revocable)
        memo = self._memo
        if memo is not None:
            found = memo.get(key)
            if found is not None:
                return found  # type: ignore[no-any-return]
        result = _scalar_sum(self, unreserved_only, include_revocable)
        if memo is None:
            memo = self._memo = {}
        memo[key] = result
        return result

    def covers_any(self, minimums: tuple[Quantities, ...]) -> bool:
        """True when the quantities here cover at least one of `minimums` (an OR of
        AND-sets, like Mesos's min_allocatable_resources). Cached per minimums."""
        memo = self._memo
        key = ("covers_any", minimums)
        if memo is not None:
            found = memo.get(key)
            if found is not None:
                return found  # type: ignore[no-any-return]
        have = self.quantities().amounts.get
        result = False
        for minimum in minimums:
            for name, amount in minimum.amounts.items():
                if have(name, 0) < amount:
                    break
            else:
                result = True
                break
        if memo is None:
            memo = self._memo = {}
        memo[key] = result
        return result

    def scalar(self, name: str) -> int:
        """Total milli-units of the scalar resource `name` across all entries."""
        return self.quantities()[name]

    def names(self) -> set[str]:
        return {meta.name for meta in self._div} | {key[0].name for key in self._atoms}

    def ranges(self, name: str) -> Ranges:
        """All items of the ranges resource `name`, merged across entries."""
        out: Ranges = ()
        for meta, value in self._div.items():
            if meta.name == name and meta.kind is Kind.RANGES:
                out = ranges_add(out, value)  # type: ignore[arg-type]
        return out

    def set_items(self, name: str) -> SetItems:
        out: SetItems = frozenset()
        for meta, value in self._div.items():
            if meta.name == name and meta.kind is Kind.SET:
                out = out | value  # type: ignore[operator]
        return out

    def roles(self) -> set[str]:
        """Reservation roles present (innermost reservation of each entry)."""
        out = set()
        for meta in self._metas():
            if meta.reservations:
                out.add(meta.reservations[-1].role)
        return out

    def _metas(self) -> Iterator[ResourceMeta]:
        yield from self._div
        for key in self._atoms:
            yield key[0]

    # ------------------------------------------------------------------------- filters

    def filter(self, keep: Callable[[ResourceMeta], bool]) -> Resources:
        div = {m: v for m, v in self._div.items() if keep(m)}
        atoms = {k: c for k, c in self._atoms.items() if keep(k[0])} if self._atoms else _NO_ATOMS
        if len(div) == len(self._div) and len(atoms) == len(self._atoms):
            return self
        return Resources._trusted(div, atoms)

    def cached(self, key: Any, compute: Callable[[], Resources]) -> Resources:
        """Memoise a derived value on this (immutable) object."""
        memo = self._memo
        if memo is None:
            memo = self._memo = {}
        found = memo.get(key)
        if found is None:
            found = memo[key] = compute()
        return found

    def reserved(self, role: str | None = None) -> Resources:
        """Reserved entries; with `role`, those whose current reservation is `role`."""
        if role is None:
            return self.filter(lambda m: bool(m.reservations))
        return self.filter(lambda m: bool(m.reservations) and m.reservations[-1].role == role)

    def unreserved(self) -> Resources:
        return self.cached("unreserved", lambda: self.filter(lambda m: not m.reservations))

    def allocatable_to(self, role: str) -> Resources:
        """Unreserved entries plus those reserved to `role` or to one of its ancestors."""

        def compute() -> Resources:
            allowed = {role, *ancestors(role)}
            return self.filter(lambda m: not m.reservations or m.reservations[-1].role in allowed)

        return self.cached(("allocatable", role), compute)

    def revocable(self) -> Resources:
        return self.filter(lambda m: m.revocable)

    def non_revocable(self) -> Resources:
        return self.filter(lambda m: not m.revocable)

    def shared(self) -> Resources:
        if not self._atoms:  # shared entries are always atomic
            return EMPTY
        return self.filter(lambda m: m.shared)

    def non_shared(self) -> Resources:
        if not self._atoms:
            return self
        return self.filter(lambda m: not m.shared)

    def has_atomic(self) -> bool:
        """True when some entry is indivisible (shared or persistent volumes, whole disks)."""
        return bool(self._atoms)

    def persistent_volumes(self) -> Resources:
        return self.filter(lambda m: m.is_persistent_volume)

    def scalars(self) -> Resources:
        return self.filter(lambda m: m.kind is Kind.SCALAR)

    def non_scalars(self) -> Resources:
        return self.filter(lambda m: m.kind is not Kind.SCALAR)

    def named(self, name: str) -> Resources:
        return self.filter(lambda m: m.name == name)

    def refined(self) -> Resources:
        """Entries whose reservation stack is deeper than one (need RESERVATION_REFINEMENT)."""
        return self.filter(lambda m: len(m.reservations) > 1)

    def has_any(self, test: Callable[[ResourceMeta], bool]) -> bool:
        return any(test(m) for m in self._metas())

    # ----------------------------------------------------------------- transformations

    def map_meta(self, change: Callable[[ResourceMeta], ResourceMeta]) -> Resources:
        """Apply `change` to every entry's metadata, merging entries that become equal.

        An entry may change between divisible and atomic (CREATE and DESTROY do).
        """
        return Resources._from_entries(
            Resource(change(meta), value, count) for meta, value, count in self
        )

    def allocate(self, role: str | None) -> Resources:
        """Tag every entry as offered or allocated to `role` (None clears the tag)."""
        memo = self._memo
        if memo is not None:
            found = memo.get(("allocate", role))
            if found is not None:
                return found  # type: ignore[no-any-return]
        with_role = _meta_with_role
        div = {with_role(m, role): v for m, v in self._div.items()}
        atoms = (
            {(with_role(k[0], role), k[1]): c for k, c in self._atoms.items()}
            if self._atoms
            else _NO_ATOMS
        )
        if len(div) < len(self._div) or len(atoms) < len(self._atoms):
            # Entries that differed only by allocation role now coincide: merge them.
            out = Resources._from_entries(
                Resource(with_role(meta, role), value, count) for meta, value, count in self
            )
        else:
            out = Resources._trusted(div, atoms)
        if role is not None and all(m.allocation_role is None for m in self._metas()):
            out._unallocated = self
        if memo is None:
            memo = self._memo = {}
        memo[("allocate", role)] = out
        return out

    def unallocate(self) -> Resources:
        """Clear the allocation role of every entry."""
        if self._unallocated is not None:
            return self._unallocated
        return self.allocate(None)

    def allocations(self) -> dict[str | None, Resources]:
        """Split by allocation role (None for untagged entries)."""
        split: dict[str | None, list[Resource]] = {}
        for entry in self:
            split.setdefault(entry.meta.allocation_role, []).append(entry)
        return {role: Resources._from_entries(items) for role, items in split.items()}

    def allocation_role(self) -> str | None:
        """The single allocation role of all entries, or None if untagged or mixed.
        Cached: every task and holding asks its resources this."""
        memo = self._memo
        if memo is None:
            memo = self._memo = {}
        found = memo.get("allocation_role", _UNKNOWN)
        if found is _UNKNOWN:
            roles = {m.allocation_role for m in self._metas()}
            found = memo["allocation_role"] = roles.pop() if len(roles) == 1 else None
        return found  # type: ignore[no-any-return]

    def push_reservation(self, reservation: Reservation) -> Resources:
        return self.map_meta(lambda m: m._replace(reservations=(*m.reservations, reservation)))

    def pop_reservation(self) -> Resources:
        return self.map_meta(lambda m: m._replace(reservations=m.reservations[:-1]))

    def to_unreserved(self) -> Resources:
        return self.map_meta(lambda m: m._replace(reservations=()))

    @classmethod
    def _from_entries(cls, entries: Iterable[Resource]) -> Resources:
        div: dict[ResourceMeta, Value] = {}
        atoms: dict[AtomKey, int] = {}
        for meta, value, count in entries:
            if is_atomic(meta):
                atoms[(meta, value)] = atoms.get((meta, value), 0) + count
            elif meta in div:
                div[meta] = _merge(div[meta], value)
            else:
                div[meta] = value
        return cls._trusted(div, atoms)

    def shrink_to(self, target: Mapping[str, int], absent_unlimited: bool = False) -> Resources:
        """Keep at most `target` of each name.

        Names absent from `target` are dropped, or kept whole when `absent_unlimited`
        (limits semantics). Scalars are chopped, ranges keep their lowest items, sets
        their smallest; atomic entries are kept whole or not at all. Entries are
        visited in a stable order, so the result is deterministic.
        """
        left = dict(target.items())
        kept: list[Resource] = []
        changed = False
        for entry in self.sorted_entries():
            meta, value, _count = entry
            if meta.name not in left:
                if absent_unlimited:
                    kept.append(entry)
                else:
                    changed = True
                continue
            budget = left[meta.name]
            amount = value_quantity(meta.kind, value)
            if amount <= budget:
                kept.append(entry)
                left[meta.name] = budget - amount
                continue
            changed = True
            if budget <= 0 or is_atomic(meta):
                continue
            chopped = _chop(meta.kind, value, budget)
            if chopped:  # a budget under one port or set item keeps nothing
                kept.append(Resource(meta, chopped))
            left[meta.name] = 0
        return Resources._from_entries(kept) if changed else self


class SumCache:
    """One object per distinct sum of the same resource objects. Many agents report
    the same task shapes (the agent channel decodes equal resources to one shared
    object), and what the allocator derives from a sum (its untagged form, scalar
    quantities, allocation role) is memoised on the object: sharing the sum lets every
    agent after the first skip that work. Keyed by the parts' identities, which the
    cache keeps alive; bounded (it starts afresh when full)."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._sums: dict[tuple[int, ...], tuple[tuple[Resources, ...], Resources]] = {}

    def total(self, parts: tuple[Resources, ...]) -> Resources:
        if len(parts) == 1:
            return parts[0]
        key = tuple(map(id, parts))
        found = self._sums.get(key)
        if found is not None and all(a is b for a, b in zip(found[0], parts, strict=True)):
            return found[1]
        total = Resources.sum(parts)
        if len(self._sums) >= self._limit:
            self._sums.clear()
        self._sums[key] = (parts, total)
        return total


def _scalar_sum(resources: Resources, unreserved_only: bool, include_revocable: bool) -> Quantities:
    amounts: dict[str, int] = {}
    # (meta, value) pairs straight from the dicts: no entry tuples built. An atomic
    # entry counts once, however many copies of it are shared.
    pairs = list(resources._div.items())
    if resources._atoms:
        pairs += resources._atoms
    for meta, value in pairs:
        if meta.kind is not Kind.SCALAR:
            continue
        if (unreserved_only and meta.reservations) or (not include_revocable and meta.revocable):
            continue
        amounts[meta.name] = amounts.get(meta.name, 0) + value  # type: ignore[operator]
    return Quantities._trusted({k: v for k, v in amounts.items() if v})


def _chop(kind: Kind, value: Value, budget_millis: int) -> Value:
    if kind is Kind.SCALAR:
        return budget_millis
    items = budget_millis // 1000
    if isinstance(value, tuple):
        return ranges_take(value, items)
    assert isinstance(value, frozenset)
    return frozenset(sorted(value)[:items])


def _entry_sort_key(entry: Resource) -> tuple[Any, ...]:
    meta = entry.meta
    return (
        _NAME_ORDER.get(meta.name, len(_NAME_ORDER)),
        meta.name,
        meta.allocation_role or "",
        [_reservation_sort_key(r) for r in meta.reservations],
        meta.revocable,
        meta.shared,
        repr(meta.disk),
        meta.provider_id or "",
        repr(entry.value),
    )


def _reservation_sort_key(r: Reservation) -> tuple[Any, ...]:
    # A label value may be None; compare it as "" (and after a present "").
    labels = [(k, v or "", v is None) for k, v in r.labels]
    return (r.role, r.type.value, r.principal or "", labels)


def _describe(meta: ResourceMeta, value: Value) -> str:
    from agora.core.resource_text import format_entry

    return format_entry(Resource(meta, value))


EMPTY = Resources()
