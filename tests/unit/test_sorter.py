"""The hierarchical DRF sorter, ported from Mesos's sorter_tests.cpp scenarios."""

from __future__ import annotations

import pytest

from agora.core.allocator.sorter import DRFSorter
from tests.unit.allocator_kit import qty


def sorter_with(total: str, *clients: str, excluded: tuple[str, ...] = ()) -> DRFSorter:
    s = DRFSorter(excluded)
    s.add_total(qty(total))
    for client in clients:
        add(s, client)
    return s


def add(s: DRFSorter, client: str, weight: float | None = None) -> None:
    if weight is not None:
        s.update_weight(client, weight)
    s.add(client)
    s.activate(client)


# ------------------------------------------------------------------ flat DRF


def test_drf_sequence_from_mesos():
    """SorterTest.DRFSorter: shares decide the order through adds, removals and
    changes of the cluster total; deactivated clients drop out of the order."""
    s = sorter_with("cpus:100;mem:100")
    add(s, "a")
    s.allocated("a", qty("cpus:5;mem:5"))
    add(s, "b")
    s.allocated("b", qty("cpus:6;mem:6"))
    assert s.order() == ["a", "b"]  # a .05, b .06

    add(s, "c")
    s.allocated("c", qty("cpus:1;mem:1"))
    add(s, "d")
    s.allocated("d", qty("cpus:3;mem:1"))
    assert s.order() == ["c", "d", "a", "b"]  # c .01, d .03

    s.remove("a")
    s.unallocated("b", qty("cpus:4;mem:4"))
    assert s.order() == ["c", "b", "d"]  # b .02

    add(s, "e")
    s.allocated("e", qty("cpus:1;mem:5"))
    s.remove_total(qty("cpus:50"))  # total: cpus 50, mem 100
    assert s.order() == ["c", "b", "e", "d"]  # c .02, b .04, e .05, d .06

    s.add_total(qty("mem:100"))  # total: cpus 50, mem 200
    add(s, "f")
    s.allocated("f", qty("cpus:5;mem:1"))
    s.allocated("c", qty("mem:15"))
    assert s.order() == ["e", "b", "d", "c", "f"]  # e .025, b .04, d .06, c .08, f .1

    assert "b" in s
    assert "a" not in s
    assert len(s.clients()) == 5

    s.deactivate("d")
    assert "d" in s
    assert not s.is_active("d")
    assert s.order() == ["e", "b", "c", "f"]
    assert s.active_count() == 4
    assert s.key("d") is None

    s.activate("d")
    assert s.order() == ["e", "b", "d", "c", "f"]


def test_weighted_drf_sequence_from_mesos():
    """SorterTest.WDRFSorter: a client's share is divided by its weight."""
    s = sorter_with("cpus:100;mem:100")
    add(s, "a")
    s.allocated("a", qty("cpus:5;mem:5"))
    add(s, "b", weight=2)
    s.allocated("b", qty("cpus:6;mem:6"))
    assert s.order() == ["b", "a"]  # a .05, b .03
    assert s.share("b") == pytest.approx(0.03)

    add(s, "c")
    s.allocated("c", qty("cpus:4;mem:4"))
    assert s.order() == ["b", "c", "a"]

    add(s, "d", weight=10)
    s.allocated("d", qty("cpus:10;mem:20"))
    assert s.order() == ["d", "b", "c", "a"]  # d .02

    s.remove("b")
    assert s.order() == ["d", "c", "a"]

    s.allocated("d", qty("cpus:10;mem:25"))
    assert s.order() == ["c", "d", "a"]  # d .045

    add(s, "e", weight=0.1)
    s.allocated("e", qty("cpus:1;mem:1"))
    assert s.order() == ["c", "d", "a", "e"]  # e .1

    s.remove("a")
    assert s.order() == ["c", "d", "e"]


def test_weight_change_reorders():
    s = sorter_with("cpus:10", "a", "b")
    s.allocated("a", qty("cpus:2"))
    s.allocated("b", qty("cpus:3"))
    assert s.order() == ["a", "b"]
    s.update_weight("b", 2.0)  # b: .3 / 2 = .15 < a .2
    assert s.order() == ["b", "a"]
    s.update_weight("b", 1.0)
    assert s.order() == ["a", "b"]


def test_weight_set_before_the_client_exists_applies_when_added():
    s = sorter_with("cpus:10")
    s.update_weight("b", 4.0)
    add(s, "a")
    add(s, "b")
    s.allocated("a", qty("cpus:1"))
    s.allocated("b", qty("cpus:3"))  # .3 / 4 = .075 < .1
    assert s.order() == ["b", "a"]


def test_update_total_changes_the_dominant_resource():
    """SorterTest.UpdateTotal."""
    s = sorter_with("cpus:10;mem:100", "a", "b")
    s.allocated("a", qty("cpus:2;mem:1"))  # .2 cpus
    s.allocated("b", qty("cpus:1;mem:2"))  # .1 cpus
    assert s.order() == ["b", "a"]
    s.remove_total(qty("cpus:10;mem:100"))
    s.add_total(qty("cpus:100;mem:10"))  # a .1 (mem), b .2 (mem)
    assert s.order() == ["a", "b"]


def test_revocable_and_reserved_quantities_count_like_any_other():
    """SorterTest.RevocableResources: the sorter sees quantities only."""
    s = sorter_with("cpus:20;mem:100", "a", "b")
    s.allocated("a", qty("cpus:2;mem:1"))  # .1
    s.allocated("b", qty("cpus:10;mem:1"))  # 1 regular + 9 revocable: .5
    assert s.order() == ["a", "b"]


def test_share_ignores_excluded_names_and_zero_totals():
    s = sorter_with("cpus:10;gpus:1", "a", "b", excluded=("gpus",))
    s.allocated("a", qty("cpus:1;gpus:1"))
    s.allocated("b", qty("cpus:2"))
    assert s.share("a") == pytest.approx(0.1)
    assert s.order() == ["a", "b"]
    # A name with no total at all (e.g. the agent holding it went away) is ignored.
    s.allocated("b", qty("disk:100"))
    assert s.share("b") == pytest.approx(0.2)


def test_unallocating_everything_returns_share_to_zero():
    s = sorter_with("cpus:10;mem:10", "a")
    s.allocated("a", qty("cpus:4;mem:2"))
    s.unallocated("a", qty("cpus:4;mem:2"))
    assert s.allocation("a") == {}
    assert s.share("a") == 0.0


# ------------------------------------------------------------- tie breaking


def test_equal_shares_break_ties_by_count_then_name():
    s = sorter_with("cpus:10", "b", "a", "c")
    assert s.order() == ["a", "b", "c"]  # all 0 share, count 0: by name

    s.allocated("a", qty("cpus:1"))
    s.unallocated("a", qty("cpus:1"))  # share back to 0, count stays 1
    assert s.order() == ["b", "c", "a"]
    assert s.key("a") == (0.0, 1, "a")

    s.allocated("b", qty("cpus:1"))
    s.unallocated("b", qty("cpus:1"))
    assert s.order() == ["c", "a", "b"]  # a and b both counted once: name decides


def test_round_robin_among_equal_shares():
    """The count makes clients with equal shares take turns (SameShareFairness)."""
    s = sorter_with("cpus:2;mem:1024", "f1", "f2")
    winners = []
    for _ in range(10):
        first = s.order()[0]
        winners.append(first)
        s.allocated(first, qty("cpus:2;mem:1024"))
        s.unallocated(first, qty("cpus:2;mem:1024"))
    assert winners.count("f1") == 5
    assert winners.count("f2") == 5
    assert winners[:4] == ["f1", "f2", "f1", "f2"]


def test_order_is_a_stable_snapshot():
    """The list order() returns may be iterated while allocating; the caller applies
    its updates afterwards."""
    s = sorter_with("cpus:10", "a", "b")
    first = list(s.order())
    s.allocated("a", qty("cpus:5"))
    assert first == ["a", "b"]
    assert s.order() == ["b", "a"]


# ----------------------------------------------------------- activation


def test_added_clients_start_inactive():
    s = sorter_with("cpus:10")
    s.add("a")
    assert "a" in s
    assert s.order() == []
    assert s.active_count() == 0
    s.activate("a")
    s.activate("a")  # idempotent
    assert s.order() == ["a"]
    assert s.active_count() == 1
    s.deactivate("a")
    s.deactivate("a")
    assert s.active_count() == 0


def test_inactive_client_keeps_its_allocation():
    s = sorter_with("cpus:10", "a", "b")
    s.allocated("a", qty("cpus:5"))
    s.deactivate("a")
    assert s.allocation("a") == {"cpus": 5000}
    s.allocated("b", qty("cpus:6"))
    s.activate("a")
    assert s.order() == ["a", "b"]


def test_remove_unknown_client_is_a_no_op():
    s = sorter_with("cpus:10", "a")
    s.remove("zzz")
    assert s.order() == ["a"]


# ------------------------------------------------------------- hierarchy


def test_hierarchical_order_is_preorder_of_sorted_subtrees():
    """Mesos HierarchicalAllocation: the best top-level subtree first, then inside it
    the best child; a low-share leaf under a high-share parent waits its turn."""
    s = sorter_with("cpus:100;mem:100", "eng/web", "eng/db", "sales")
    s.allocated("eng/web", qty("cpus:30"))
    s.allocated("eng/db", qty("cpus:1"))
    s.allocated("sales", qty("cpus:10"))
    # eng = .31 > sales = .10, so sales first even though eng/db has only .01.
    assert s.order() == ["sales", "eng/db", "eng/web"]
    assert s.node_share("eng") == pytest.approx(0.31)
    assert s.share("eng/db") == pytest.approx(0.01)

    s.unallocated("eng/web", qty("cpus:25"))  # eng = .06
    assert s.order() == ["eng/db", "eng/web", "sales"]


def test_weight_of_an_internal_role_applies_to_its_subtree():
    s = sorter_with("cpus:100", "eng/web", "sales")
    s.allocated("eng/web", qty("cpus:30"))
    s.allocated("sales", qty("cpus:20"))
    assert s.order() == ["sales", "eng/web"]
    s.update_weight("eng", 2.0)  # eng: .30 / 2 = .15
    assert s.order() == ["eng/web", "sales"]
    assert s.node_share("eng") == pytest.approx(0.15)


def test_virtual_leaf_when_a_client_gets_a_child():
    """Mesos AddChildToLeaf: `a` was a leaf; adding `a/x` moves a's own allocation to
    the virtual leaf `a/.`, and the subtree `a` sums both."""
    s = sorter_with("cpus:100;mem:100", "a", "b")
    s.allocated("a", qty("cpus:10;mem:10"))
    s.allocated("b", qty("cpus:6;mem:6"))
    assert s.order() == ["b", "a"]

    add(s, "a/x")
    s.allocated("a/x", qty("cpus:1;mem:1"))
    # a = .11 > b = .06; inside a: a/x .01 before a/. .10.
    assert s.order() == ["b", "a/x", "a"]
    assert s.key("a") is not None
    assert s.key("a")[2] == "a/."  # type: ignore[index]
    assert s.allocation("a") == {"cpus": 10000, "mem": 10000}
    assert s.node_share("a") == pytest.approx(0.11)

    s.unallocated("a", qty("cpus:9;mem:9"))  # a = .02
    assert s.order() == ["a", "a/x", "b"]  # a/. .01 ties a/x .01: count, then name

    s.deactivate("a")
    assert s.order() == ["a/x", "b"]
    s.deactivate("a/x")
    assert s.order() == ["b"]


def test_virtual_leaf_when_the_parent_is_added_after_the_child():
    """Mesos AddChildToInternal: adding `a` when `a/x` exists creates `a/.` directly."""
    s = sorter_with("cpus:100", "a/x", "b")
    s.allocated("a/x", qty("cpus:5"))
    s.allocated("b", qty("cpus:6"))
    add(s, "a")
    s.allocated("a", qty("cpus:2"))
    assert s.order() == ["b", "a", "a/x"]  # a = .07 > b = .06; a/. .02 < a/x .05
    assert s.node_share("a") == pytest.approx(0.07)
    assert s.share("a") == pytest.approx(0.02)


def test_virtual_leaf_has_weight_one_and_the_role_weight_goes_to_the_subtree():
    s = sorter_with("cpus:100", "a", "a/x", "b")
    s.update_weight("a", 4.0)
    s.allocated("a", qty("cpus:20"))
    s.allocated("b", qty("cpus:10"))
    assert s.share("a") == pytest.approx(0.20)  # the virtual leaf: weight 1
    assert s.node_share("a") == pytest.approx(0.05)  # the subtree: .20 / 4
    assert s.order() == ["a/x", "a", "b"]


def test_inactive_leaf_getting_a_child_stays_inactive():
    """Mesos AddChildToInactiveLeaf."""
    s = sorter_with("cpus:100", "a", "b")
    s.allocated("a", qty("cpus:10"))
    s.deactivate("a")
    add(s, "a/x")
    assert s.order() == ["b", "a/x"]  # the subtree a (.10) still sorts after b (0)
    assert not s.is_active("a")
    s.activate("a")
    assert s.order() == ["b", "a/x", "a"]


def test_removing_the_last_child_collapses_the_virtual_leaf():
    """Mesos RemoveLeafCollapseParent: `a/.` folds back into `a`, keeping its
    allocation, count and activation."""
    s = sorter_with("cpus:100", "a", "a/x", "b")
    s.allocated("a", qty("cpus:10"))
    s.allocated("b", qty("cpus:20"))
    assert s.key("a")[2] == "a/."  # type: ignore[index]

    s.remove("a/x")
    assert s.order() == ["a", "b"]
    key = s.key("a")
    assert key is not None
    assert key[0] == pytest.approx(0.10)
    assert key[1:] == (1, "a")
    assert s.allocation("a") == {"cpus": 10000}
    assert s.node_share("a") == pytest.approx(0.10)

    # The collapsed leaf still moves with its allocations.
    s.allocated("a", qty("cpus:15"))
    assert s.order() == ["b", "a"]


def test_collapse_keeps_an_inactive_leaf_inactive():
    """Mesos RemoveLeafCollapseParentInactive."""
    s = sorter_with("cpus:100", "a", "a/x", "b")
    s.deactivate("a")
    s.remove("a/x")
    assert s.order() == ["b"]
    assert not s.is_active("a")
    s.activate("a")
    assert s.order() == ["a", "b"]


def test_removing_a_client_with_an_allocation_updates_its_ancestors():
    """The removed client's allocation leaves the whole path to the root."""
    s = sorter_with("cpus:100", "a/x", "a/y", "b")
    s.allocated("a/x", qty("cpus:50"))
    s.allocated("a/y", qty("cpus:1"))
    s.allocated("b", qty("cpus:10"))
    assert s.order() == ["b", "a/y", "a/x"]
    s.remove("a/x")
    assert s.node_share("a") == pytest.approx(0.01)
    assert s.order() == ["a/y", "b"]


def test_removing_all_children_prunes_empty_internal_nodes():
    s = sorter_with("cpus:100", "a/b/c", "d")
    s.allocated("d", qty("cpus:1"))
    s.remove("a/b/c")
    assert s.order() == ["d"]
    assert s.node_share("a") == 0.0
    add(s, "a")  # `a` comes back as a plain leaf
    assert s.order() == ["a", "d"]
    assert s.key("a") == (0.0, 0, "a")


def test_removing_the_parent_client_keeps_the_children():
    s = sorter_with("cpus:100", "a", "a/x")
    s.allocated("a", qty("cpus:30"))
    s.allocated("a/x", qty("cpus:5"))
    s.remove("a")
    assert s.order() == ["a/x"]
    assert "a" not in s
    assert s.node_share("a") == pytest.approx(0.05)


def test_deep_hierarchy_sorts_each_level():
    s = sorter_with("cpus:100", "x/a/1", "x/a/2", "x/b", "y")
    s.allocated("x/a/1", qty("cpus:4"))
    s.allocated("x/a/2", qty("cpus:2"))
    s.allocated("x/b", qty("cpus:5"))
    s.allocated("y", qty("cpus:12"))
    # x = .11 < y = .12; in x: b .05 < a .06; in a: 2 before 1.
    assert s.order() == ["x/b", "x/a/2", "x/a/1", "y"]


def test_counts_bubble_up_to_internal_nodes():
    s = sorter_with("cpus:100", "a/x", "b")
    s.allocated("a/x", qty("cpus:1"))
    s.unallocated("a/x", qty("cpus:1"))
    # a and b both share 0; a was allocated once, so b goes first.
    assert s.order() == ["b", "a/x"]
