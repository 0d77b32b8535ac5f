"""Hierarchical DRF sorter (Mesos `sorter/drf`), kept sorted incrementally.

Clients are paths (`eng`, `eng/web`; framework ids are single-level paths). The tree
mirrors the paths; each node keeps its children sorted by the DRF key
`(share / weight, allocation count, name)`, where share is the node's dominant share
of the cluster total. If both `a` and `a/b` are clients, `a`'s own allocation lives
in a virtual leaf `a/.` as in Mesos.

`order()` returns the active leaves in pre-order (best subtree first). The list it
returns is never mutated afterwards, so a caller may iterate it while allocating and
get Mesos's snapshot semantics; the sorter builds a fresh list when the order changes.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping

VIRTUAL = "."

SortKey = tuple[float, int, str]


class _Node:
    __slots__ = (
        "path",
        "parent",
        "children",
        "keys",
        "names",
        "allocation",
        "count",
        "key",
        "active",
        "is_client",
        "weight",
        "divisor",
    )

    def __init__(self, path: str, parent: _Node | None) -> None:
        self.path = path
        self.parent = parent
        self.children: dict[str, _Node] = {}
        self.keys: list[SortKey] = []  # sorted keys of active-or-internal children
        self.names: list[str] = []  # child paths in the same order as `keys`
        self.allocation: dict[str, int] = {}
        self.count = 0
        self.key: SortKey | None = None  # this node's key inside its parent's list
        self.active = False
        self.is_client = False
        self.weight = 1.0
        # A virtual leaf `a/.` is weighed 1; the role's weight applies to `a` itself.
        self.divisor = 1.0

    def set_weight(self, weight: float) -> None:
        self.weight = weight
        if not self.path.endswith(f"/{VIRTUAL}"):
            self.divisor = weight

    def visible(self) -> bool:
        """Internal nodes and active leaves take part in the order."""
        return bool(self.children) or (self.is_client and self.active)


class DRFSorter:
    """Sorts clients by weighted dominant resource share, ties by count then name."""

    def __init__(self, excluded_names: Iterable[str] = ()) -> None:
        self._root = _Node("", None)
        self._nodes: dict[str, _Node] = {}  # client path -> leaf node
        self._total: dict[str, int] = {}
        self._excluded = frozenset(excluded_names)
        self._inverse_total: dict[str, float] = {}  # 1 / total for names that count
        self._weights: dict[str, float] = {}
        self._order: list[str] | None = []
        self._active_count = 0
        # The cluster total changed: every key is stale until the next full re-sort.
        # Adding 10,000 agents must not re-sort 10,000 times (Mesos marks dirty too).
        self._dirty = False
        # True when every client is a child of the root (no role hierarchy): then the
        # root's sorted child list *is* the order, kept current in place. None = unknown.
        self._flat: bool | None = True

    # ------------------------------------------------------------------ membership

    def __contains__(self, client: str) -> bool:
        return client in self._nodes

    def clients(self) -> list[str]:
        return list(self._nodes)

    def active_count(self) -> int:
        """How many clients are active (take part in `order()`)."""
        return self._active_count

    def is_active(self, client: str) -> bool:
        node = self._nodes.get(client)
        return node is not None and node.active

    def add(self, client: str) -> None:
        if client in self._nodes:
            return
        parent = self._root
        parts = client.split("/")
        path = ""
        for depth, part in enumerate(parts):
            path = part if not path else f"{path}/{part}"
            child = parent.children.get(path)
            if child is None:
                child = _Node(path, parent)
                child.set_weight(self._weights.get(path, 1.0))
                self._attach(parent, child)
            elif depth < len(parts) - 1 and child.is_client and not child.children:
                self._split_virtual(child)
            parent = child
        if parent.children:
            # `client` is an internal node already: its own allocation goes to a virtual leaf.
            leaf = _Node(f"{client}/{VIRTUAL}", parent)
            self._attach(parent, leaf)
            self._nodes[client] = leaf
            leaf.is_client = True
            return
        parent.is_client = True
        self._nodes[client] = parent

    def _split_virtual(self, node: _Node) -> None:
        """`node` was a leaf client and is getting children: move it to `node/.`."""
        leaf = _Node(f"{node.path}/{VIRTUAL}", node)
        leaf.is_client = True
        leaf.active = node.active
        leaf.allocation = dict(node.allocation)
        leaf.count = node.count
        node.is_client = False
        node.active = False
        self._nodes[node.path] = leaf
        self._attach(node, leaf)

    def remove(self, client: str) -> None:
        node = self._nodes.pop(client, None)
        if node is None:
            return
        if node.active:
            self._active_count -= 1
        # A copy: the walk empties the leaf's own dict before reaching its ancestors.
        self._subtract_path(node, dict(node.allocation))
        node.is_client = False
        node.active = False
        self._prune(node)

    def _prune(self, node: _Node) -> None:
        while node.parent is not None and not node.children and not node.is_client:
            parent = node.parent
            del parent.children[node.path]
            self._detach(parent, node)
            node = parent
        # An internal node left with only its virtual leaf collapses back into a leaf.
        if node.parent is not None and len(node.children) == 1:
            (only,) = node.children.values()
            if only.path == f"{node.path}/{VIRTUAL}":
                node.children.clear()
                self._detach(node, only)
                node.is_client = True
                node.active = only.active
                node.count = only.count
                self._nodes[node.path] = node
                self._reposition(node)
        self._order = None

    def activate(self, client: str) -> None:
        node = self._nodes[client]
        if node.active:
            return
        node.active = True
        self._active_count += 1
        self._reposition(node)

    def deactivate(self, client: str) -> None:
        node = self._nodes[client]
        if not node.active:
            return
        node.active = False
        self._active_count -= 1
        self._reposition(node)

    # ---------------------------------------------------------------- allocations

    def allocated(self, client: str, quantities: Mapping[str, int]) -> None:
        """Add to a client's allocation (and its ancestors'), bumping the counts."""
        node: _Node | None = self._nodes[client]
        assert node is not None
        if node.parent is self._root and node.key is not None and not self._dirty:
            self._allocated_top(node, quantities)
            return
        while node is not None and node.parent is not None:
            alloc = node.allocation
            for name, amount in quantities.items():
                alloc[name] = alloc.get(name, 0) + amount
            node.count += 1
            self._reposition(node)
            node = node.parent

    def _allocated_top(self, node: _Node, quantities: Mapping[str, int]) -> None:
        """`allocated` for a visible child of the root: the allocation pass's hot path.

        Allocating only ever moves a client right (its count grows and its share cannot
        shrink), so the new place is searched for to the right of the old one only.
        """
        alloc = node.allocation
        for name, amount in quantities.items():
            alloc[name] = alloc.get(name, 0) + amount
        node.count += 1
        inverse = self._inverse_total
        share = 0.0
        for name, amount in alloc.items():
            factor = inverse.get(name)
            if factor is not None and amount * factor > share:
                share = amount * factor
        divisor = node.divisor
        old = node.key
        assert old is not None  # callers only take this path for visible nodes
        new = (share / divisor if divisor > 0 else float("inf"), node.count, node.path)
        node.key = new
        keys = self._root.keys
        index = bisect_left(keys, old)
        if index + 1 == len(keys) or keys[index + 1] > new:
            keys[index] = new  # still in the same place
            return
        names = self._root.names
        to = bisect_left(keys, new, index + 1)
        del keys[index]
        del names[index]
        keys.insert(to - 1, new)
        names.insert(to - 1, node.path)
        self._order = None

    def unallocated(self, client: str, quantities: Mapping[str, int]) -> None:
        self._subtract_path(self._nodes[client], quantities)

    def _subtract_path(self, node: _Node | None, quantities: Mapping[str, int]) -> None:
        while node is not None and node.parent is not None:
            alloc = node.allocation
            for name, amount in list(quantities.items()):
                left = alloc.get(name, 0) - amount
                if left > 0:
                    alloc[name] = left
                else:
                    alloc.pop(name, None)
            self._reposition(node)
            node = node.parent

    def allocation(self, client: str) -> dict[str, int]:
        return dict(self._nodes[client].allocation)

    def share(self, client: str) -> float:
        """The client's weighted dominant share (what orders it among its siblings)."""
        return self._share(self._nodes[client])

    def key(self, client: str) -> SortKey | None:
        """The client's current sort key `(share, count, path)`; None when inactive."""
        self._clean()
        return self._nodes[client].key

    def node_share(self, path: str) -> float:
        """Weighted share of any node (client or internal) by path."""
        node = self._find(path)
        return 0.0 if node is None else self._share(node)

    def _find(self, path: str) -> _Node | None:
        node = self._root
        acc = ""
        for part in path.split("/"):
            acc = part if not acc else f"{acc}/{part}"
            nxt = node.children.get(acc)
            if nxt is None:
                return None
            node = nxt
        return node

    # --------------------------------------------------------------- cluster total

    def add_total(self, quantities: Mapping[str, int]) -> None:
        for name, amount in quantities.items():
            self._total[name] = self._total.get(name, 0) + amount
        self._mark_dirty()

    def remove_total(self, quantities: Mapping[str, int]) -> None:
        for name, amount in quantities.items():
            left = self._total.get(name, 0) - amount
            if left > 0:
                self._total[name] = left
            else:
                self._total.pop(name, None)
        self._mark_dirty()

    def _mark_dirty(self) -> None:
        self._dirty = True
        self._order = None
        self._inverse_total = {
            name: 1.0 / cap
            for name, cap in self._total.items()
            if cap > 0 and name not in self._excluded
        }

    def _clean(self) -> None:
        if self._dirty:
            self._dirty = False
            self._resort_all()

    def total(self) -> dict[str, int]:
        return dict(self._total)

    def update_weight(self, path: str, weight: float) -> None:
        self._weights[path] = weight
        node = self._find(path)
        if node is not None:
            node.set_weight(weight)
            self._reposition(node)

    # ------------------------------------------------------------------- ordering

    def order(self) -> list[str]:
        """Active clients, best first (pre-order over the sorted tree).

        The list stays valid until the next change to the sorter: callers that allocate
        while iterating must apply their sorter updates after the loop (snapshot
        semantics, as Mesos's `sort()` copy gives). Do not mutate it."""
        self._clean()
        flat = self._flat
        if flat is None:
            flat = self._flat = all(not child.children for child in self._root.children.values())
        if flat:
            return self._root.names
        order = self._order
        if order is None:
            order = []
            self._walk(self._root, order)
            self._order = order
        return order

    def _walk(self, node: _Node, out: list[str]) -> None:
        children = node.children
        for path in node.names:
            child = children[path]
            if child.children:
                self._walk(child, out)
            elif child.active:
                out.append(path[:-2] if path.endswith(f"/{VIRTUAL}") else path)

    def _share(self, node: _Node) -> float:
        inverse = self._inverse_total
        share = 0.0
        for name, amount in node.allocation.items():
            factor = inverse.get(name)
            if factor is not None:
                ratio = amount * factor
                share = max(share, ratio)
        divisor = node.divisor
        return share / divisor if divisor > 0 else float("inf")

    def _key(self, node: _Node) -> SortKey:
        return (self._share(node), node.count, node.path)

    def _attach(self, parent: _Node, child: _Node) -> None:
        parent.children[child.path] = child
        self._order = None
        self._flat = None
        if child.visible() and not self._dirty:
            key = self._key(child)
            child.key = key
            index = bisect_left(parent.keys, key)
            parent.keys.insert(index, key)
            parent.names.insert(index, child.path)
        # A node that just got its first child becomes visible in its own parent's list.
        self._reposition(parent)

    def _detach(self, parent: _Node, child: _Node) -> None:
        self._flat = None
        if child.key is not None and not self._dirty:
            index = bisect_left(parent.keys, child.key)
            del parent.keys[index]
            del parent.names[index]
            child.key = None
        self._order = None
        # ...and one that lost its last child may drop out of it.
        self._reposition(parent)

    def _reposition(self, node: _Node) -> None:
        """Move `node` to its place among its siblings after its key may have changed."""
        parent = node.parent
        if parent is None or self._dirty:
            return
        old = node.key
        new = self._key(node) if node.visible() else None
        if old == new:
            return
        keys, names = parent.keys, parent.names
        if old is not None and new is not None and len(keys) == 1:
            keys[0] = node.key = new  # no siblings: nothing can move
            return
        old_index = -1
        if old is not None:
            old_index = bisect_left(keys, old)
            del keys[old_index]
            del names[old_index]
        node.key = new
        if new is not None:
            index = bisect_left(keys, new)
            keys.insert(index, new)
            names.insert(index, node.path)
            if index == old_index:
                return  # same place among its siblings: the cached order still holds
        self._order = None

    def _resort_all(self) -> None:
        """Shares changed everywhere (cluster total moved): recompute every key."""
        stack = [self._root]
        while stack:
            node = stack.pop()
            keys: list[SortKey] = []
            names: list[str] = []
            for child in node.children.values():
                stack.append(child)
                if child.visible():
                    child.key = self._key(child)
                    insort(keys, child.key)
                else:
                    child.key = None  # a stale key would be looked for and not found
            names = [key[2] for key in keys]
            node.keys, node.names = keys, names
        self._order = None
