"""Builders and Hypothesis strategies for valid `Resources` (shared by the resource tests).

Entries drawn for one example get an index; ranges, set items, persistent volume ids
and MOUNT roots are derived from it, so entries with different indices never overlap.
That lets a test split one drawn list into several collections whose sum is defined
(`a + b` refuses to count a port, set item or non-shared volume twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from agora.core.resource_meta import (
    DiskInfo,
    DiskSource,
    DiskSourceType,
    Labels,
    Reservation,
    Resource,
    ResourceMeta,
    Volume,
    VolumeMode,
    dynamic,
    static,
)
from agora.core.resources import Resources
from agora.core.roles import is_strict_descendant
from agora.core.values import Kind, Ranges, make_ranges, make_set, scalar_to_millis

LAWS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ROLES = ("eng", "eng/web", "eng/web/db", "ops", "ops/ci", "a.b", "x-y")
PRINCIPALS: tuple[str | None, ...] = (None, "alice", "bob")
LABEL_SETS: tuple[Labels, ...] = ((), (("team", "a"),), (("k", None),), (("k", "v"), ("z", None)))

SCALAR_NAMES = ("cpus", "mem", "gpus", "disk", "foo")
RANGE_NAMES = ("ports", "vlans")
SET_NAMES = ("zones", "gpu_ids")


# ------------------------------------------------------------------------------ builders


def meta(
    name: str,
    kind: Kind = Kind.SCALAR,
    *,
    reservations: Sequence[Reservation] = (),
    alloc: str | None = None,
    disk: DiskInfo | None = None,
    revocable: bool = False,
    shared: bool = False,
    provider: str | None = None,
) -> ResourceMeta:
    return ResourceMeta(name, kind, tuple(reservations), alloc, disk, revocable, shared, provider)


def one(
    name: str,
    kind: Kind,
    value: int | Ranges | frozenset[str],
    *,
    reservations: Sequence[Reservation] = (),
    alloc: str | None = None,
    disk: DiskInfo | None = None,
    revocable: bool = False,
    shared: bool = False,
    provider: str | None = None,
    copies: int = 1,
) -> Resources:
    m = meta(
        name,
        kind,
        reservations=reservations,
        alloc=alloc,
        disk=disk,
        revocable=revocable,
        shared=shared,
        provider=provider,
    )
    return Resources([Resource(m, value, copies)])


def scalar(name: str, amount: float, **kw) -> Resources:
    """One scalar entry; `amount` in user units (cpus:1.5 -> 1.5)."""
    return one(name, Kind.SCALAR, scalar_to_millis(amount), **kw)


def ranges(name: str, pairs: Iterable[tuple[int, int]], **kw) -> Resources:
    return one(name, Kind.RANGES, make_ranges(pairs), **kw)


def items(name: str, values: Iterable[str], **kw) -> Resources:
    return one(name, Kind.SET, make_set(values), **kw)


def volume_disk(
    persistence_id: str,
    *,
    container_path: str = "data",
    principal: str | None = None,
    mode: VolumeMode = VolumeMode.RW,
    source: DiskSource | None = None,
) -> DiskInfo:
    return DiskInfo(persistence_id, principal, Volume(container_path, mode), source)


def volume(
    amount: float,
    persistence_id: str,
    reservations: Sequence[Reservation],
    *,
    shared: bool = False,
    copies: int = 1,
    alloc: str | None = None,
    principal: str | None = None,
) -> Resources:
    """A persistent volume of `amount` MB of disk."""
    return scalar(
        "disk",
        amount,
        reservations=reservations,
        disk=volume_disk(persistence_id, principal=principal),
        shared=shared,
        copies=copies,
        alloc=alloc,
    )


def ranges_from_points(points: Iterable[int]) -> Ranges:
    """Canonical ranges covering exactly `points`."""
    return make_ranges((p, p) for p in sorted(set(points)))


# ---------------------------------------------------------------------------- strategies


@st.composite
def reservation_stacks(draw: st.DrawFn, refined: bool = True) -> tuple[Reservation, ...]:
    """Empty, static, dynamic, or (when `refined`) a chain of dynamic refinements."""
    choice = draw(st.sampled_from(("none", "static", "dynamic")))
    if choice == "none":
        return ()
    role = draw(st.sampled_from(ROLES))
    if choice == "static":
        stack: list[Reservation] = [static(role)]
    else:
        stack = [
            dynamic(role, draw(st.sampled_from(PRINCIPALS)), draw(st.sampled_from(LABEL_SETS)))
        ]
    while refined:
        below = [r for r in ROLES if is_strict_descendant(r, stack[-1].role)]
        if not below or not draw(st.booleans()):
            break
        stack.append(dynamic(draw(st.sampled_from(below)), draw(st.sampled_from(PRINCIPALS))))
    return tuple(stack)


@st.composite
def _range_value(draw: st.DrawFn, index: int) -> Ranges:
    base = 1000 * (index + 1)
    runs = draw(
        st.lists(st.tuples(st.integers(0, 950), st.integers(0, 40)), min_size=1, max_size=4)
    )
    points = {base + start + k for start, length in runs for k in range(length + 1)}
    return ranges_from_points(points)


@st.composite
def _set_value(draw: st.DrawFn, index: int) -> frozenset[str]:
    letters = draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=4, unique=True))
    return frozenset(f"s{index}-{x}" for x in letters)


_SCALAR_MILLIS = st.integers(1, 10**7)


@st.composite
def entries(draw: st.DrawFn, index: int, simple: bool = False) -> Resource:
    """One valid entry. `simple`: expressible in the plain text form."""
    kinds = (
        ["scalar", "ranges", "set"]
        if simple
        else ["scalar", "ranges", "set", "volume", "mount", "path"]
    )
    kind = draw(st.sampled_from(kinds))
    if simple:
        role = draw(st.sampled_from((None, *ROLES)))
        stack: tuple[Reservation, ...] = () if role is None else (static(role),)
        alloc = provider = None
    else:
        stack = draw(reservation_stacks())
        alloc = draw(st.sampled_from((None, *ROLES)))
        provider = draw(st.sampled_from((None, None, "rp1")))
    value: int | Ranges | frozenset[str]
    disk = None
    shared = revocable = False
    if kind == "scalar":
        name, k, value = draw(st.sampled_from(SCALAR_NAMES)), Kind.SCALAR, draw(_SCALAR_MILLIS)
    elif kind == "ranges":
        name, k, value = draw(st.sampled_from(RANGE_NAMES)), Kind.RANGES, draw(_range_value(index))
    elif kind == "set":
        name, k, value = draw(st.sampled_from(SET_NAMES)), Kind.SET, draw(_set_value(index))
    else:
        name, k, value = "disk", Kind.SCALAR, draw(_SCALAR_MILLIS)
        if kind == "volume":
            if not stack:
                stack = (static(draw(st.sampled_from(ROLES))),)
            source = draw(st.sampled_from((None, DiskSource(DiskSourceType.PATH, "/p1"))))
            disk = DiskInfo(
                f"vol{index}",
                draw(st.sampled_from(PRINCIPALS)),
                Volume(f"data{index}", draw(st.sampled_from(tuple(VolumeMode)))),
                source,
            )
            shared = draw(st.booleans())
        elif kind == "mount":
            disk = DiskInfo(source=DiskSource(DiskSourceType.MOUNT, f"/mnt/{index}"))
        else:
            root = draw(st.sampled_from(("/p1", "/p2")))
            disk = DiskInfo(source=DiskSource(DiskSourceType.PATH, root))
    if not simple and not stack and disk is None:
        revocable = draw(st.booleans())
    copies = draw(st.integers(1, 3)) if shared else 1
    m = ResourceMeta(name, k, stack, alloc, disk, revocable, shared, provider)
    return Resource(m, value, copies)


@st.composite
def entry_lists(
    draw: st.DrawFn, min_size: int = 0, max_size: int = 8, simple: bool = False
) -> list[Resource]:
    n = draw(st.integers(min_size, max_size))
    return [draw(entries(i, simple=simple)) for i in range(n)]


def resources(
    min_size: int = 0, max_size: int = 8, simple: bool = False
) -> st.SearchStrategy[Resources]:
    return entry_lists(min_size, max_size, simple).map(Resources)


@st.composite
def disjoint_groups(draw: st.DrawFn, count: int, max_size: int = 10) -> tuple[Resources, ...]:
    """`count` collections whose sums are defined: only shared volumes may repeat."""
    groups: list[list[Resource]] = [[] for _ in range(count)]
    for entry in draw(entry_lists(0, max_size)):
        if entry.meta.shared:
            chosen = draw(
                st.lists(st.integers(0, count - 1), min_size=1, max_size=count, unique=True)
            )
        else:
            chosen = [draw(st.integers(0, count - 1))]
        for g in chosen:
            groups[g].append(entry)
    return tuple(Resources(g) for g in groups)


@st.composite
def parts_of(draw: st.DrawFn, whole: Resources) -> Resources:
    """A collection contained in `whole`: some entries, each possibly cut down."""
    kept: list[Resource] = []
    for m, value, copies in whole:
        if not draw(st.booleans()):
            continue
        if m.shared:
            kept.append(Resource(m, value, draw(st.integers(1, copies))))
        elif isinstance(value, int):
            atomic = m.disk is not None and (
                m.disk.persistence_id is not None
                or (m.disk.source is not None and m.disk.source.type is DiskSourceType.MOUNT)
            )
            kept.append(Resource(m, value if atomic else draw(st.integers(1, value))))
        elif isinstance(value, tuple):
            points = [p for b, e in value for p in range(b, e + 1)]
            chosen = draw(st.lists(st.sampled_from(points), min_size=1, unique=True))
            kept.append(Resource(m, ranges_from_points(chosen)))
        else:
            chosen_items = draw(st.lists(st.sampled_from(sorted(value)), min_size=1, unique=True))
            kept.append(Resource(m, frozenset(chosen_items)))
    return Resources(kept)
