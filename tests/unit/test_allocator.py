"""HierarchicalAllocator: DRF, roles, reservations, capabilities, lifecycle.

Scenarios follow Mesos's hierarchical_allocator_tests.cpp (named in the docstrings);
the quota scenarios are in test_allocator_quota.py and decline filters in
test_allocator_filters.py. Every allocation through `Cluster` checks that no agent
is over-allocated.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agora.core.allocator import AllocatorError, AllocatorOptions, OfferDecision, Stage
from agora.core.allocator.constraints import Constraint, Predicate, Pseudo, RoleConstraints
from agora.core.allocator.state import AgentProfile, Capability
from agora.core.operations import Conversion, Create, Reserve, conversion
from agora.core.resource_meta import dynamic
from agora.core.resources import EMPTY
from tests.unit.allocator_kit import (
    MULTI,
    Cluster,
    agents_of,
    by_framework,
    check_invariants,
    offered_to,
    profile,
    qty,
    refined,
    res,
    revocable,
    summary,
    volume,
)

# ===================================================================== DRF


def test_unreserved_drf():
    """UnreservedDRF: each new agent goes whole to the framework of the role with the
    lowest dominant share, and inside the role to the framework with the lowest share."""
    c = Cluster()
    c.agent("s1", "cpus:2;mem:1024;disk:0")
    c.framework("f1", "role1")
    [d] = c.allocate()
    assert (d.framework_id, d.agent_id) == ("f1", "s1")
    assert d.resources.unallocate() == res("cpus:2;mem:1024")
    assert d.role == "role1"
    assert d.resources.allocation_role() == "role1"

    c.framework("f2", "role2")
    c.agent("s2", "cpus:1;mem:512;disk:0")
    # role1 .67, role2 0
    assert by_framework(c.allocate()) == {"f2": {"s2": res("cpus:1;mem:512")}}

    c.agent("s3", "cpus:3;mem:2048;disk:0")
    # role1 .33 (2/6 cpus), role2 .17
    assert by_framework(c.allocate()) == {"f2": {"s3": res("cpus:3;mem:2048")}}

    c.framework("f3", "role1")
    c.agent("s4", "cpus:4;mem:4096;disk:0")
    # role1 .2, role2 .4; in role1 f3 (0) before f1
    assert by_framework(c.allocate()) == {"f3": {"s4": res("cpus:4;mem:4096")}}

    c.framework("f4", "role1")
    c.agent("s5", "cpus:1;mem:512;disk:0")
    # role1 .63, role2 .36: f4 has nothing but its role is ahead
    assert by_framework(c.allocate()) == {"f2": {"s5": res("cpus:1;mem:512")}}


def test_reserved_drf():
    """ReservedDRF: reservations count in the role's share, and are shared fairly among
    the frameworks of their role."""
    c = Cluster()
    c.agent("s1", "cpus:1;mem:512;disk:0;cpus(role1):100;mem(role1):1024;disk(role1):0")
    c.framework("f1", "role1")
    assert by_framework(c.allocate()) == {"f1": {"s1": c.alloc.total("s1")}}

    c.framework("f2", "role2")
    c.agent("s2", "cpus:2;mem:512;disk:0")
    assert by_framework(c.allocate()) == {"f2": {"s2": res("cpus:2;mem:512")}}

    c.agent("s3", "cpus:2;mem:512;disk:0")  # f1's share is far bigger
    assert by_framework(c.allocate()) == {"f2": {"s3": res("cpus:2;mem:512")}}

    c.framework("f3", "role1")
    c.agent("s4", "cpus(role1):2;mem(role1):1024;disk(role1):0")
    assert by_framework(c.allocate()) == {"f3": {"s4": res("cpus(role1):2;mem(role1):1024")}}


def test_coarse_grained_offers_give_whole_agents():
    """CoarseGrained: one framework takes all it can of an agent; with two frameworks
    in two roles and two agents each gets one whole agent."""
    c = Cluster()
    c.agent("s1", "cpus:2;mem:1024")
    c.agent("s2", "cpus:2;mem:1024")
    c.framework("f1", "role1")
    first = c.allocate()
    assert by_framework(first) == {
        "f1": {"s1": res("cpus:2;mem:1024"), "s2": res("cpus:2;mem:1024")}
    }
    c.decline_all(first)

    c.framework("f2", "role2")
    offers = by_framework(c.allocate())
    assert set(offers) == {"f1", "f2"}
    assert len(offers["f1"]) == 1
    assert len(offers["f2"]) == 1
    assert offers["f1"].keys() != offers["f2"].keys()
    for agents in offers.values():
        assert list(agents.values()) == [res("cpus:2;mem:1024")]


def test_leftovers_of_an_agent_go_to_the_next_framework():
    """The first framework takes the unreserved part; the reservation of another role
    on the same agent goes to that role in the same pass."""
    c = Cluster()
    c.framework("f1", "role1")
    c.framework("f2", "role2")
    c.agent("s1", "cpus:2;mem:1024;cpus(role2):1;mem(role2):256")
    offers = by_framework(c.allocate())
    unreserved = res("cpus:2;mem:1024")
    reserved = res("cpus(role2):1;mem(role2):256")
    # role1 and role2 tie at share 0: role1 first by name, takes the unreserved part.
    assert offers == {"f1": {"s1": unreserved}, "f2": {"s1": reserved}}


def test_same_share_fairness_alternates_by_count():
    """SameShareFairness: with equal shares the allocation count breaks ties, so two
    frameworks take turns instead of the first name winning every time."""
    c = Cluster()
    c.framework("framework1", "*")
    c.framework("framework2", "*")
    c.agent("s1", "cpus:2;mem:1024")
    counts = {"framework1": 0, "framework2": 0}
    decisions = c.allocate()
    for _ in range(10):
        [d] = decisions
        assert d.resources.unallocate() == res("cpus:2;mem:1024")
        counts[d.framework_id] += 1
        c.decline(d)
        decisions = c.tick()
    assert counts == {"framework1": 5, "framework2": 5}


def test_name_breaks_ties_when_shares_and_counts_are_equal():
    c = Cluster()
    c.framework("fb", "r")
    c.framework("fa", "r")
    c.agent("s1", "cpus:1;mem:512")
    [d] = c.allocate()
    assert d.framework_id == "fa"

    c2 = Cluster()
    c2.framework("f1", "zeta")
    c2.framework("f2", "alpha")
    c2.agent("s1", "cpus:1;mem:512")
    [d] = c2.allocate()
    assert (d.framework_id, d.role) == ("f2", "alpha")


def test_decision_explains_the_shares_it_was_made_on():
    c = Cluster()
    c.framework("f1", "r1")
    c.framework("f2", "r2")
    c.agent("s1", "cpus:1;mem:512")
    c.allocate()
    c.agent("s2", "cpus:1;mem:512")
    [d] = c.allocate()
    assert d.framework_id == "f2"
    assert d.stage is Stage.FAIR_SHARE
    assert d.role_share == 0.0
    assert "lowest weighted DRF share" in d.why()
    assert c.alloc.role_share("r1") == pytest.approx(0.5)
    assert c.alloc.role_share("r2") == pytest.approx(0.5)
    assert c.alloc.framework_share("f1", "r1") == pytest.approx(0.5)
    assert c.alloc.framework_share("f1", "nope") == 0.0
    assert c.alloc.role_share("nope") == 0.0


def _build(seed: int, agents: int = 8) -> Cluster:
    c = Cluster(seed=seed)
    for i in range(agents):
        c.agent(f"s{i}", f"cpus:{1 + i % 3};mem:{512 * (1 + i % 2)}")
    for i, role in enumerate(["r1", "r2", "r2", "r3"]):
        c.framework(f"f{i}", role)
    return c


def test_same_seed_gives_the_same_decisions():
    runs = []
    for _ in range(2):
        c = _build(seed=42)
        rounds = []
        for _ in range(4):
            decisions = c.tick()
            rounds.append(summary(decisions))
            c.decline_all(decisions[::2])  # keep half, decline the rest
        runs.append(rounds)
    assert runs[0] == runs[1]


def test_agent_order_follows_the_seed():
    """Agents are visited in a seeded random order, so different seeds spread offers
    differently while each seed is reproducible."""
    orders = set()
    for seed in range(8):
        c = _build(seed=seed)
        orders.add(tuple(d.agent_id for d in c.allocate()))
    assert len(orders) > 1


def test_a_pass_without_offer_seekers_decides_nothing_and_leaves_the_order_alone():
    """While no framework wants offers (after a failover the frameworks known from
    agents' reports are inactive until they re-subscribe), passes cost nothing: they
    neither decide nor shuffle, so the seeded order of later passes is the same as if
    they had not run."""
    orders = []
    for idle_passes in (0, 3):
        c = Cluster(seed=7)
        c.framework("f", "r", active=False)
        for i in range(8):
            c.agent(f"s{i}", "cpus:1;mem:128")
        for _ in range(idle_passes):
            assert c.tick() == []
        c.alloc.activate_framework("f")
        orders.append([d.agent_id for d in c.tick()])
    assert orders[0] == orders[1] and len(orders[0]) == 8


# ================================================================= weights


def _split(decisions: list[OfferDecision]) -> dict[str, int]:
    return {fw: len(agents) for fw, agents in by_framework(decisions).items()}


def test_weights_share_agents_in_proportion():
    """UpdateWeight: six equal agents split 3:3, then 2:4 after role2 gets weight 2,
    then 1:2:3 when role3 (weight 3) joins."""
    c = Cluster()
    for i in range(6):
        c.agent(f"s{i}", "cpus:2;mem:1024")
    c.framework("f1", "role1")
    first = c.allocate()
    assert _split(first) == {"f1": 6}
    c.framework("f2", "role2")
    assert c.allocate() == []  # everything is offered to f1
    c.decline_all(first)

    decisions = c.tick()
    assert _split(decisions) == {"f1": 3, "f2": 3}
    c.decline_all(decisions)

    c.alloc.update_weight("role2", 2.0)
    assert not c.alloc.pending()  # a weight change does not trigger an allocation
    decisions = c.tick()
    assert _split(decisions) == {"f1": 2, "f2": 4}
    assert c.alloc.role_share("role2") == pytest.approx(c.alloc.role_share("role1"))
    c.decline_all(decisions)

    c.alloc.update_weight("role3", 3.0)  # before any framework uses role3
    c.framework("f3", "role3")
    decisions = c.allocate()
    assert _split(decisions) == {"f1": 1, "f2": 2, "f3": 3}


def test_weight_must_be_positive():
    c = Cluster()
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(AllocatorError):
            c.alloc.update_weight("r", bad)


def test_weight_of_a_parent_role_applies_to_its_subtree():
    c = Cluster()
    for i in range(6):
        c.agent(f"s{i}", "cpus:1;mem:512")
    c.alloc.update_weight("eng", 2.0)
    c.framework("fweb", "eng/web")
    c.framework("fdb", "eng/db")
    c.framework("fsales", "sales")
    assert _split(c.allocate()) == {"fweb": 2, "fdb": 2, "fsales": 2}


# ======================================================= hierarchical roles


def test_hierarchical_roles_share_by_subtree():
    """eng/web and eng/db together get what sales alone gets."""
    c = Cluster()
    for i in range(4):
        c.agent(f"s{i}", "cpus:1;mem:512")
    c.framework("fweb", "eng/web")
    c.framework("fdb", "eng/db")
    c.framework("fsales", "sales")
    assert _split(c.allocate()) == {"fweb": 1, "fdb": 1, "fsales": 2}
    assert c.alloc.role_share("eng/web") == pytest.approx(0.25)


def test_virtual_leaf_parent_and_child_roles():
    """Frameworks in `a` and in `a/b`: a's own allocation sits in the virtual leaf
    `a/.`; the subtree `a` competes with `c` as a whole, and inside it `a/b` goes
    before `a` when its share is lower."""
    c = Cluster()
    c.framework("fa", "a")
    c.framework("fab", "a/b")
    c.framework("fc", "c")
    c.agent("sa", "cpus:2;mem:2048", used={"fa": res("cpus:2;mem:2048").allocate("a")})
    c.agent("sc", "cpus:8;mem:8192", used={"fc": res("cpus:8;mem:8192").allocate("c")})
    c.allocate()
    c.agent("s1", "cpus:1;mem:1024")
    [d] = c.allocate()  # a = 2/11 < c = 8/11; in a: a/b (0) before a/. (2/11)
    assert (d.framework_id, d.role) == ("fab", "a/b")

    # Now a's subtree outweighs c: a/b's own share does not matter.
    c.agent("sa2", "cpus:8;mem:8192", used={"fa": res("cpus:8;mem:8192").allocate("a")})
    c.allocate()
    c.agent("s2", "cpus:1;mem:1024")
    [d] = c.allocate()
    assert (d.framework_id, d.role) == ("fc", "c")


def test_reservation_of_an_ancestor_is_offered_to_a_descendant():
    """Resources reserved to `a` may be offered to `a/b`: the offer is allocated to
    `a/b` while the reservation stays `a`."""
    c = Cluster()
    c.framework("fab", "a/b")
    c.agent("s1", "cpus(a):2;mem(a):512")
    [d] = c.allocate()
    assert d.role == "a/b"
    assert d.resources.unallocate() == res("cpus(a):2;mem(a):512")
    assert {e.meta.reservation_role for e in d.resources} == {"a"}
    assert {e.meta.allocation_role for e in d.resources} == {"a/b"}

    c2 = Cluster()
    c2.framework("fdeep", "a/b/c")
    c2.agent("s1", "cpus(a):2;mem(a):512")
    [d] = c2.allocate()
    assert d.role == "a/b/c"


def test_reservations_are_offered_only_to_their_role_and_descendants():
    """Reservations: statically reserved resources go to frameworks of that role only;
    nobody gets role3's reservation; a child's reservation is not offered to the
    parent, and a role name that merely starts alike is not a descendant."""
    c = Cluster()
    c.agent("s1", "cpus(role1):2;mem(role1):1024;disk(role1):0")
    c.agent("s2", "cpus(role2):2;mem(role2):1024;cpus:1;mem:1024;disk:0")
    c.agent("s3", "cpus(role3):1;mem(role3):1024;disk(role3):0")
    c.framework("f1", "role1")
    assert by_framework(c.allocate()) == {
        "f1": {"s1": res("cpus(role1):2;mem(role1):1024"), "s2": res("cpus:1;mem:1024")}
    }
    c.framework("f2", "role2")
    assert by_framework(c.allocate()) == {"f2": {"s2": res("cpus(role2):2;mem(role2):1024")}}
    assert c.tick() == []
    assert c.alloc.available("s3") == res("cpus(role3):1;mem(role3):1024")

    c2 = Cluster()
    c2.framework("fparent", "a")
    c2.framework("flook", "a10")
    c2.agent("s1", "cpus(a/b):2;mem(a/b):512")
    c2.agent("s2", "cpus(a1):2;mem(a1):512")
    assert c2.allocate() == []


def test_hierarchical_role_needs_a_hierarchical_role_agent():
    c = Cluster()
    c.framework("f1", "eng/web")
    c.agent("old", "cpus:1;mem:512", capabilities=frozenset({Capability.MULTI_ROLE}))
    assert c.allocate() == []
    c.agent("new", "cpus:1;mem:512")
    assert agents_of(c.allocate(), "f1") == {"new"}


def test_multi_role_framework_gets_offers_per_role():
    c = Cluster()
    c.framework("f", "a", "b", caps=MULTI)
    c.agent("s1", "cpus:1;mem:512")
    c.agent("s2", "cpus:1;mem:512")
    decisions = c.allocate()
    assert sorted(d.role for d in decisions) == ["a", "b"]
    assert all(d.resources.allocation_role() == d.role for d in decisions)
    assert c.alloc.role_share("a") == pytest.approx(0.5)
    assert c.alloc.framework_share("f", "b") == pytest.approx(0.5)

    # A reservation of one of its roles is offered under that role.
    c.agent("s3", "cpus(b):1;mem(b):512")
    [d] = c.allocate()
    assert d.role == "b"


def test_multi_role_framework_is_not_offered_a_non_multi_role_agent():
    c = Cluster()
    c.framework("multi", "r", caps=MULTI)
    c.agent("old", "cpus:1;mem:512", capabilities=frozenset())
    assert c.allocate() == []
    c.framework("single", "r")
    assert agents_of(c.allocate(), "single") == {"old"}


# ======================================================= min allocatable


def test_allocatable_minimum_from_mesos():
    """Allocatable: an agent with less than cpus:0.01 and less than mem:32 is not
    offered; either one suffices; reserved and unreserved parts add up."""
    c = Cluster()
    c.framework("f1", "role1")
    c.agent("s1", "cpus:0.005;mem:16;disk:128")
    c.agent("s2", "cpus:0.01;mem:16;disk:128")
    assert agents_of(c.allocate(), "f1") == {"s2"}

    c.agent("s3", "cpus:0.005;mem:32;disk:128")
    assert agents_of(c.allocate(), "f1") == {"s3"}

    c.agent("s4", "cpus:0.006;mem:16;cpus(role1):0.006;mem(role1):16;disk:128")
    decisions = c.allocate()
    assert by_framework(decisions) == {"f1": {"s4": c.alloc.total("s4")}}
    assert c.tick() == []  # s1 stays unoffered


def test_default_minimum_is_cpus_or_mem():
    """`cpus:0.01|mem:32`: a mem-only offer of enough memory is fine, a disk-only or
    ports-only agent is never offered, nor is mem:16 alone."""
    c = Cluster()
    c.framework("f1", "r")
    c.agent("mem", "mem:1024")
    c.agent("small", "mem:16")
    c.agent("disk", "disk:1000")
    c.agent("ports", "ports:[31000-32000]")
    assert agents_of(c.allocate(), "f1") == {"mem"}


def test_global_minimum_as_an_and_set_refuses_mem_only_offers():
    c = Cluster(min_allocatable=(qty("cpus:0.01;mem:32"),))
    c.framework("f1", "r")
    c.agent("mem", "mem:1024")
    c.agent("both", "cpus:1;mem:1024")
    assert agents_of(c.allocate(), "f1") == {"both"}


def test_empty_minimum_allows_any_non_empty_offer():
    c = Cluster(min_allocatable=())
    c.framework("f1", "r")
    c.agent("disk", "disk:1000")
    c.agent("ports", "ports:[31000-31001]")
    assert agents_of(c.allocate(), "f1") == {"disk", "ports"}


def test_framework_minimum_overrides_the_global_one_per_role():
    big = (qty("cpus:4;mem:1024"),)
    c = Cluster()
    c.framework("picky", "a", "b", caps=MULTI, min_allocatable={"a": big})
    c.agent("small", "cpus:1;mem:512")
    [d] = c.allocate()
    assert d.role == "b"  # too small for role a, fine for role b under the default
    c.decline(d, refuse_seconds=100)
    assert c.tick() == []
    c.agent("large", "cpus:8;mem:4096")
    roles = {d.role for d in c.allocate()}
    assert "a" in roles

    # An override may also relax the minimum: no minimum at all for this role.
    c2 = Cluster()
    c2.framework("easy", "r", min_allocatable={"r": ()})
    c2.agent("disk", "disk:10")
    assert agents_of(c2.allocate(), "easy") == {"disk"}


# ========================================================= capabilities


def test_gpu_agents_only_go_to_gpu_frameworks():
    c = Cluster()
    c.framework("plain", "r")
    c.agent("gpu", "cpus:4;mem:1024;gpus:1")
    c.agent("cpu", "cpus:4;mem:1024")
    assert agents_of(c.allocate(), "plain") == {"cpu"}
    assert c.tick() == []  # the GPU agent waits

    c.framework("ml", "r", caps=(Capability.GPU_RESOURCES,))
    assert by_framework(c.allocate()) == {"ml": {"gpu": res("cpus:4;mem:1024;gpus:1")}}


def test_gpu_filter_can_be_turned_off():
    c = Cluster(filter_gpu_resources=False)
    c.framework("plain", "r")
    c.agent("gpu", "cpus:4;mem:1024;gpus:1")
    assert by_framework(c.allocate()) == {"plain": {"gpu": res("cpus:4;mem:1024;gpus:1")}}


def test_revocable_resources_only_for_revocable_frameworks():
    c = Cluster()
    c.framework("f1", "r")
    c.framework("f2", "r", caps=(Capability.REVOCABLE_RESOURCES,))
    c.agent("s1", res("cpus:4;mem:512") + revocable("cpus:2"))
    offers = by_framework(c.allocate())
    # f1 goes first (name) and gets the regular part only; f2 gets the revocable rest.
    assert offers == {"f1": {"s1": res("cpus:4;mem:512")}, "f2": {"s1": revocable("cpus:2")}}


def test_oversubscribed_resources_follow_agent_updates():
    """UpdateSlave / OversubscribedNotAllocated / RecoverOversubscribedResources."""
    c = Cluster()
    c.framework("f1", "role1", caps=(Capability.REVOCABLE_RESOURCES,))
    regular = res("cpus:100;mem:100;disk:100")
    c.agent("s1", regular)
    assert offered_to(c.allocate(), "f1") == regular

    c.alloc.update_agent("s1", total=regular + revocable("cpus:10"))
    assert offered_to(c.allocate(), "f1") == revocable("cpus:10")

    c.alloc.update_agent("s1", total=regular + revocable("cpus:12"))
    assert offered_to(c.allocate(), "f1") == revocable("cpus:2")

    c.alloc.update_agent("s1", total=regular + revocable("cpus:5"))
    assert c.allocate() == []  # nothing left (f1 holds more than the estimate)

    # 6 of the 12 revocable cpus come back: f1 still holds 6 > 5, none is free.
    recovered = revocable("cpus:6") + res("cpus:2")
    c.alloc.recover_resources("f1", "s1", recovered.allocate("role1"))
    assert offered_to(c.tick(), "f1") == res("cpus:2")
    c.alloc.recover_resources("f1", "s1", revocable("cpus:3").allocate("role1"))
    assert offered_to(c.tick(), "f1") == revocable("cpus:2")


def test_recover_oversubscribed_resources():
    """RecoverOversubscribedResources: part of the revocable and regular resources
    come back and are offered again."""
    c = Cluster()
    c.framework("f1", "role1", caps=(Capability.REVOCABLE_RESOURCES,))
    regular = res("cpus:100;mem:100;disk:100")
    c.agent("s1", regular)
    c.allocate()
    c.alloc.update_agent("s1", total=regular + revocable("cpus:10"))
    assert offered_to(c.allocate(), "f1") == revocable("cpus:10")
    recovered = revocable("cpus:6") + res("cpus:2")
    c.alloc.recover_resources("f1", "s1", recovered.allocate("role1"))
    assert offered_to(c.tick(), "f1") == recovered


def test_no_offer_when_only_stripped_resources_are_left():
    """OversubscribedNotAllocated: a framework without REVOCABLE_RESOURCES gets no offer
    (not even an empty one) when only revocable resources are available, nor one that
    falls below the minimum once they are stripped."""
    c = Cluster()
    c.framework("f1", "role1")
    regular = res("cpus:100;mem:100;disk:100")
    c.agent("s1", regular)
    c.allocate()
    c.alloc.update_agent("s1", total=regular + revocable("cpus:10"))
    assert c.allocate() == []

    c2 = Cluster()
    c2.framework("f1", "role1")
    c2.agent("s1", res("mem:16;disk:10") + revocable("cpus:10"))
    assert c2.allocate() == []


def test_refined_reservations_need_reservation_refinement():
    c = Cluster()
    c.framework("old", "a/b")
    c.framework("new", "a/b", caps=(Capability.RESERVATION_REFINEMENT,))
    fine = refined("cpus(a):2;mem(a):512", "a/b")
    c.agent("s1", res("cpus:1;mem:512") + fine)
    offers = by_framework(c.allocate())
    # "new" sorts first by name and takes everything.
    assert offers == {"new": {"s1": c.alloc.total("s1")}}

    c2 = Cluster()
    c2.framework("old", "a/b")
    c2.agent("s1", res("cpus:1;mem:512") + fine)
    assert by_framework(c2.allocate()) == {"old": {"s1": res("cpus:1;mem:512")}}
    assert c2.alloc.available("s1") == fine


def test_shared_volumes_need_shared_resources_and_are_offered_once_per_cycle():
    shared = volume("disk(role1):5", "v1", shared=True)
    total = res("cpus:2;mem:1024;disk(role1):10") + shared

    c = Cluster()
    c.framework("plain", "role1")
    c.agent("s1", total)
    assert offered_to(c.allocate(), "plain") == res("cpus:2;mem:1024;disk(role1):10")
    assert c.alloc.available("s1") == shared  # a shared volume is never used up

    c2 = Cluster(min_allocatable=())  # a volume alone is below the default minimum
    c2.framework("s_a", "role1", caps=(Capability.SHARED_RESOURCES,))
    c2.framework("s_b", "role1", caps=(Capability.SHARED_RESOURCES,))
    c2.agent("s1", total)
    decisions = c2.allocate()
    assert offered_to(decisions, "s_a") == total
    assert offered_to(decisions, "s_b") == EMPTY  # only the volume is left: once a cycle
    # Next cycle the volume is offered again (to the other framework, lower share).
    assert offered_to(c2.tick(), "s_b") == shared


def test_remote_region_agents_only_go_to_region_aware_frameworks():
    c = Cluster(master_region="eu")
    c.framework("local", "r")
    c.agent("far", "cpus:1;mem:512", region="us")
    c.agent("near", "cpus:1;mem:512", region="eu")
    c.agent("unknown", "cpus:1;mem:512")
    assert agents_of(c.allocate(), "local") == {"near", "unknown"}
    c.framework("aware", "r", caps=(Capability.REGION_AWARE,))
    assert agents_of(c.allocate(), "aware") == {"far"}


# ============================================================ constraints


def test_offer_constraints_exclude_agents_per_role():
    rack1 = RoleConstraints(((Constraint(Predicate.TEXT_EQUALS, attribute="rack", value="r1"),),))
    c = Cluster()
    c.framework("picky", "a", "b", caps=MULTI, constraints={"a": rack1})
    c.agent("s1", "cpus:1;mem:512", attributes={"rack": "r1"})
    c.agent("s2", "cpus:1;mem:512", attributes={"rack": "r2"})
    c.agent("s3", "cpus:1;mem:512")
    got = {(d.role, d.agent_id) for d in c.allocate()}
    # Role a may only use s1; role b (unconstrained) takes the rest.
    assert ("a", "s2") not in got
    assert ("a", "s3") not in got
    assert {agent for _, agent in got} == {"s1", "s2", "s3"}

    only_a = Cluster()
    only_a.framework("picky", "a", constraints={"a": rack1})
    only_a.agent("s2", "cpus:1;mem:512", attributes={"rack": "r2"})
    assert only_a.allocate() == []
    only_a.framework("other", "a")
    assert agents_of(only_a.allocate(), "other") == {"s2"}


def test_offer_constraint_groups_are_ored_and_pseudo_attributes_work():
    group_host = (Constraint(Predicate.TEXT_MATCHES, pseudo=Pseudo.HOSTNAME, value="web-.*"),)
    group_ssd = (
        Constraint(Predicate.EXISTS, attribute="ssd"),
        Constraint(Predicate.TEXT_NOT_EQUALS, attribute="rack", value="bad"),
    )
    c = Cluster()
    c.framework("f", "r", constraints={"r": RoleConstraints((group_host, group_ssd))})
    c.agent("web-1", "cpus:1;mem:512")
    c.agent("db-1", "cpus:1;mem:512", attributes={"ssd": "yes"})
    c.agent("db-2", "cpus:1;mem:512", attributes={"ssd": "yes", "rack": "bad"})
    c.agent("db-3", "cpus:1;mem:512")
    assert agents_of(c.allocate(), "f") == {"web-1", "db-1"}


# =================================================== suppress and revive


def test_suppress_stops_offers_for_one_role_only():
    c = Cluster()
    c.framework("f", "a", "b", caps=MULTI)
    c.alloc.suppress("f", ["a"])
    c.agent("s1", "cpus:1;mem:512")
    c.agent("s2", "cpus:1;mem:512")
    assert {d.role for d in c.allocate()} == {"b"}
    assert c.alloc.framework("f").profile.suppressed_roles == frozenset({"a"})


def test_suppress_all_then_revive_one_role():
    c = Cluster()
    c.framework("f", "a", "b", caps=MULTI)
    c.agent("s1", "cpus:1;mem:512")
    c.alloc.suppress("f")
    assert c.allocate() == []
    assert c.tick() == []
    c.alloc.revive("f", ["b"])
    assert c.alloc.pending()
    assert [d.role for d in c.allocate()] == ["b"]


def test_suppressed_framework_leaves_resources_to_others():
    c = Cluster()
    c.framework("f1", "r")
    c.framework("f2", "r")
    c.alloc.suppress("f1")
    c.agent("s1", "cpus:1;mem:512")
    assert agents_of(c.allocate(), "f2") == {"s1"}


def test_suppressed_roles_at_subscription():
    c = Cluster()
    c.framework("f", "a", "b", caps=MULTI, suppressed=("a",))
    c.agent("s1", "cpus:1;mem:512")
    c.agent("s2", "cpus:1;mem:512")
    assert {d.role for d in c.allocate()} == {"b"}


def test_suppress_does_not_change_a_profile_the_caller_still_holds():
    shared = profile("r")
    c = Cluster()
    c.alloc.add_framework("f1", shared)
    c.alloc.add_framework("f2", shared)
    c.alloc.suppress("f1")
    assert shared.suppressed_roles == frozenset()
    c.alloc.deactivate_framework("f2")
    c.alloc.activate_framework("f2")
    c.agent("s1", "cpus:1;mem:512")
    assert agents_of(c.allocate(), "f2") == {"s1"}


def test_revive_offers_clears_filters():
    """ReviveOffers: a long decline filter is dropped by revive, which also asks for
    an allocation."""
    c = Cluster()
    c.agent("s1", "cpus:2;mem:1024")
    c.framework("f1", "role1")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=1000)
    assert c.tick() == []
    c.alloc.revive("f1")
    [d] = c.allocate()
    assert d.resources.unallocate() == res("cpus:2;mem:1024")


# ============================================== activation, lifecycle


def test_deactivate_and_reactivate_framework():
    """DeactivateAndReactivateFramework: no offers while disconnected; offers again
    after reactivation. Suppression (unlike filters) survives the reconnection and
    needs a revive."""
    c = Cluster()
    c.agent("s1", "cpus:2;mem:1024")
    c.framework("f1", "role1")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=1000)
    c.alloc.deactivate_framework("f1")
    assert c.alloc.filter_count() == 0  # deactivation drops the filters
    assert c.tick() == []
    c.alloc.activate_framework("f1")
    assert c.alloc.pending()
    [d] = c.allocate()
    assert d.framework_id == "f1"

    c.decline(d)
    c.alloc.suppress("f1")
    c.alloc.deactivate_framework("f1")
    c.alloc.activate_framework("f1")
    assert c.allocate() == []
    c.alloc.revive("f1")
    assert agents_of(c.allocate(), "f1") == {"s1"}


def test_inactive_framework_is_not_offered_anything():
    c = Cluster()
    c.framework("f1", "r", active=False)
    c.agent("s1", "cpus:1;mem:512")
    assert c.allocate() == []
    assert c.tick() == []
    c.alloc.activate_framework("f1")
    assert agents_of(c.allocate(), "f1") == {"s1"}


def test_update_framework_changes_roles():
    c = Cluster()
    c.framework("f", "a", caps=MULTI)
    c.agent("s1", "cpus:1;mem:512")
    [d] = c.allocate()
    assert d.role == "a"

    c.alloc.update_framework("f", profile("b", caps=MULTI))
    assert c.alloc.pending()
    # Still holds resources under `a`: tracked there until they come back.
    assert c.alloc.role_share("a") == pytest.approx(1.0)
    c.agent("s2", "cpus:1;mem:512")
    [d2] = c.allocate()
    assert d2.role == "b"

    c.decline(d)
    assert c.alloc.role_share("a") == 0.0
    node = c.alloc.roles().get("a")
    assert node is None or not node.frameworks
    assert {x.role for x in c.tick()} == {"b"}


def test_update_framework_can_suppress_and_unsuppress():
    c = Cluster()
    c.framework("f", "a")
    c.alloc.update_framework("f", profile("a", suppressed=("a",)))
    c.agent("s1", "cpus:1;mem:512")
    assert c.allocate() == []
    c.alloc.update_framework("f", profile("a"))
    assert c.alloc.pending()
    assert agents_of(c.allocate(), "f") == {"s1"}


def test_allocation_is_event_triggered_for_candidate_agents_only():
    """Adding an agent asks for an allocation of that agent only; recovered resources
    wait for the next full (periodic) pass; adding a framework asks for a full pass."""
    c = Cluster()
    c.framework("f1", "r")
    c.agent("s1", "cpus:1;mem:512")
    runs = c.alloc.allocation_runs
    [d] = c.allocate()
    assert c.alloc.allocation_runs == runs + 1
    assert not c.alloc.pending()

    c.decline(d)  # recovering resources does not trigger an allocation
    assert not c.alloc.pending()
    c.agent("s2", "cpus:1;mem:512")
    assert c.alloc.pending()
    assert agents_of(c.allocate(), "f1") == {"s2"}  # s1's resources are not considered
    assert c.allocate() == []
    assert agents_of(c.allocate(full=True), "f1") == {"s1"}

    # A new framework asks for a full pass: every agent is considered.
    c.decline_all(c.alloc.allocate(c.now, full=True))
    for agent_id in ("s1", "s2"):
        for fw, held in c.alloc.holdings(agent_id).items():
            c.alloc.recover_resources(fw, agent_id, held)
    c.framework("f2", "r")
    assert len(c.allocate()) == 2

    # A pending full pass absorbs agent-triggered requests.
    c.alloc.request_full_pass()
    c.agent("s3", "cpus:1;mem:512")
    assert c.alloc.pending()


def test_deactivated_agents_are_not_offered():
    c = Cluster()
    c.framework("f1", "r")
    c.agent("s1", "cpus:1;mem:512")
    c.alloc.deactivate_agent("s1")
    assert c.allocate() == []
    assert c.tick() == []
    c.alloc.activate_agent("s1")
    assert agents_of(c.allocate(), "f1") == {"s1"}


def test_agent_used_resources_are_held_and_count_for_drf():
    """SmallOfferFilterTimeout setup: an agent re-added with resources in use."""
    c = Cluster()
    c.framework("f1", "role")
    c.framework("f2", "role")
    c.agent("s1", "cpus:1;mem:512", used={"f1": res("cpus:1;mem:512").allocate("role")})
    assert c.allocate() == []
    assert c.alloc.holdings("s1") == {"f1": res("cpus:1;mem:512").allocate("role")}
    c.agent("s2", "cpus:1;mem:512")
    assert agents_of(c.allocate(), "f2") == {"s2"}  # f2's share (0) is lower


def test_framework_used_resources_on_known_agents():
    c = Cluster()
    c.agent("s1", "cpus:2;mem:1024")
    c.alloc.add_framework(
        "f1",
        profile("r"),
        used={"s1": res("cpus:1;mem:512").allocate("r"), "gone": res("cpus:1").allocate("r")},
    )
    assert c.alloc.available("s1") == res("cpus:1;mem:512")
    check_invariants(c.alloc)


def test_framework_is_tracked_under_a_role_it_holds_but_left():
    """An agent reports resources a framework uses under a role it is no longer
    subscribed to: the framework is tracked (inactive) under that role until they
    come back, and gets offers under its current role only."""
    c = Cluster()
    c.framework("f1", "b", caps=MULTI)
    used = res("cpus:1;mem:512").allocate("a")
    c.agent("s1", "cpus:2;mem:1024", used={"f1": used})
    assert c.alloc.role_share("a") == pytest.approx(0.5)
    assert c.alloc.framework_share("f1", "a") == pytest.approx(0.5)
    assert {d.role for d in c.allocate()} == {"b"}

    c.alloc.recover_resources("f1", "s1", used, refuse_seconds=100)
    assert c.alloc.role_share("a") == 0.0
    node = c.alloc.roles().get("a")
    assert node is None or "f1" not in node.frameworks
    assert c.alloc.filter_count() == 0  # no filter for a role it does not want


# ================================================ updates of resources


def test_update_allocation_with_reserve_conversion():
    """A framework reserves part of its offer: the allocator holds the converted
    resources, the agent's total changes, and after the framework gives them back the
    reservation is offered only to its role."""
    c = Cluster()
    c.framework("f1", "role1")
    c.framework("f2", "role2")
    c.agent("s1", "cpus:4;mem:2048")
    [d] = c.allocate()
    assert d.framework_id == "f1"

    reserved = res("cpus:2;mem:1024").push_reservation(dynamic("role1", "p"))
    conv = conversion(Reserve(reserved.allocate("role1")))
    c.alloc.update_allocation("f1", "s1", [conv])
    check_invariants(c.alloc)
    assert c.alloc.available("s1") == EMPTY
    held = c.alloc.holdings("s1")["f1"]
    assert held == (res("cpus:2;mem:1024") + reserved).allocate("role1")
    assert c.alloc.total("s1") == res("cpus:2;mem:1024") + reserved
    assert c.alloc.roles().consumed("role1") == qty("cpus:4;mem:2048")

    c.alloc.recover_resources("f1", "s1", held)
    # Unallocated, the reservation still counts as role1's consumption.
    assert c.alloc.roles().consumed("role1") == qty("cpus:2;mem:1024")
    decisions = c.tick()
    # Both roles are at share 0; role2 has the lower count and goes first, but it can
    # only take the unreserved part: the reservation goes to role1.
    assert by_framework(decisions) == {
        "f2": {"s1": res("cpus:2;mem:1024")},
        "f1": {"s1": reserved},
    }


def test_update_allocation_with_create_volume():
    """UpdateAllocation: a CREATE on held resources shows in the next offer after the
    resources come back."""
    c = Cluster()
    c.agent("s1", "cpus:100;mem:100;disk(role1):100")
    c.framework("f1", "role1")
    [d] = c.allocate()
    vol = volume("disk(role1):5", "ID")
    conv = conversion(Create(vol.allocate("role1")))
    c.alloc.update_allocation("f1", "s1", [conv])
    check_invariants(c.alloc)
    updated = c.alloc.holdings("s1")["f1"]
    assert updated.unallocate() == res("cpus:100;mem:100;disk(role1):95") + vol

    c.alloc.recover_resources("f1", "s1", updated)
    [d] = c.tick()
    assert d.resources.unallocate() == res("cpus:100;mem:100;disk(role1):95") + vol
    assert d.resources.unallocate() != res("cpus:100;mem:100;disk(role1):100")


def test_update_allocation_rejects_what_is_not_held():
    c = Cluster()
    c.framework("f1", "r")
    c.agent("s1", "cpus:4;mem:1024")
    c.agent("s2", "cpus:4;mem:1024")
    c.alloc.deactivate_agent("s2")
    c.allocate()
    too_much = res("cpus:8").push_reservation(dynamic("r", "p"))
    with pytest.raises(AllocatorError):
        c.alloc.update_allocation("f1", "s1", [conversion(Reserve(too_much.allocate("r")))])
    fine = res("cpus:1").push_reservation(dynamic("r", "p"))
    with pytest.raises(AllocatorError):
        c.alloc.update_allocation("f1", "s2", [conversion(Reserve(fine.allocate("r")))])
    check_invariants(c.alloc)


def test_update_agent_resources_success():
    """UpdateAvailableSuccess: an operator reservation on unallocated resources."""
    c = Cluster()
    c.agent("s1", "cpus:100;mem:100;disk:100")
    reserved = res("cpus:25;mem:50").push_reservation(dynamic("role1", "ops"))
    c.alloc.update_agent_resources("s1", [conversion(Reserve(reserved))])
    check_invariants(c.alloc)
    c.framework("f1", "role1")
    [d] = c.allocate()
    assert d.resources.unallocate() == res("cpus:75;mem:50;disk:100") + reserved
    assert c.alloc.roles().consumed("role1") == qty("cpus:100;mem:100;disk:100")

    c.framework("f2", "role2")
    c.decline(d)
    decisions = c.tick()
    assert not offered_to(decisions, "f2").reserved()


def test_update_agent_resources_fails_when_offered():
    """UpdateAvailableFail: everything is offered, nothing to reserve."""
    c = Cluster()
    c.agent("s1", "cpus:100;mem:100;disk:100")
    c.framework("f1", "role1")
    c.allocate()
    reserved = res("cpus:25;mem:50").push_reservation(dynamic("role1", "ops"))
    with pytest.raises(AllocatorError):
        c.alloc.update_agent_resources("s1", [conversion(Reserve(reserved))])
    assert c.alloc.total("s1") == res("cpus:100;mem:100;disk:100")
    check_invariants(c.alloc)


def test_update_agent_total_offers_only_the_difference():
    c = Cluster()
    c.framework("f1", "r")
    c.agent("s1", "cpus:2;mem:1024")
    c.allocate()
    c.alloc.update_agent("s1", total=res("cpus:4;mem:1024"))
    assert offered_to(c.allocate(), "f1") == res("cpus:2")
    assert c.alloc.cluster_total() == qty("cpus:4;mem:1024")


def test_update_agent_with_gpus_is_then_filtered():
    c = Cluster()
    c.framework("f1", "r")
    c.agent("s1", "cpus:2;mem:1024")
    [d] = c.allocate()
    c.decline(d)
    c.alloc.update_agent("s1", total=res("cpus:2;mem:1024;gpus:1"))
    assert c.allocate() == []


def test_remove_framework_returns_its_resources():
    c = Cluster()
    c.framework("f1", "r1")
    c.agent("s1", "cpus:2;mem:1024")
    c.allocate()
    c.framework("f2", "r2")
    assert c.allocate() == []
    c.alloc.remove_framework("f1")
    assert not c.alloc.has_framework("f1")
    assert c.alloc.available("s1") == res("cpus:2;mem:1024")
    assert c.alloc.role_share("r1") == 0.0
    assert agents_of(c.tick(), "f2") == {"s1"}
    c.alloc.remove_framework("f1")  # twice: ignored


def test_remove_agent_drops_its_total_and_holdings():
    c = Cluster()
    c.framework("f1", "r1")
    c.framework("f2", "r2")
    c.agent("s1", "cpus:2;mem:1024")
    c.allocate()
    c.agent("s2", "cpus:2;mem:1024")
    c.allocate()
    assert c.alloc.role_share("r1") == pytest.approx(0.5)
    c.alloc.remove_agent("s1")
    assert not c.alloc.has_agent("s1")
    assert c.alloc.cluster_total() == qty("cpus:2;mem:1024")
    assert c.alloc.agent_ids() == ["s2"]
    shares = {c.alloc.role_share("r1"), c.alloc.role_share("r2")}
    assert shares == {0.0, 1.0}
    c.alloc.remove_agent("s1")  # twice: ignored
    # Recovering resources of a removed agent is ignored.
    c.alloc.recover_resources("f1", "s1", res("cpus:2;mem:1024").allocate("r1"))


def test_recover_of_unknown_agent_or_framework_is_ignored():
    c = Cluster()
    c.framework("f1", "r")
    c.agent("s1", "cpus:2;mem:1024")
    [d] = c.allocate()
    c.alloc.recover_resources("nobody", "s1", d.resources, refuse_seconds=10)
    c.alloc.recover_resources("f1", "nowhere", d.resources, refuse_seconds=10)
    c.alloc.recover_resources("f1", "s1", EMPTY, refuse_seconds=10)
    assert c.alloc.holdings("s1") == {"f1": d.resources}
    assert c.alloc.filter_count() == 0


def test_partial_recover_keeps_the_rest_held():
    """RecoverResources: reserved and unreserved parts come back separately."""
    c = Cluster()
    c.agent("s1", "cpus(role1):1;mem(role1):200;cpus:1;mem:200;disk:0")
    c.framework("f1", "role1")
    [d] = c.allocate()
    assert d.resources.unallocate() == c.alloc.total("s1")
    reserved = res("cpus(role1):1;mem(role1):200")
    c.alloc.recover_resources("f1", "s1", reserved.allocate("role1"))
    assert offered_to(c.tick(), "f1") == reserved
    unreserved = res("cpus:1;mem:200")
    c.alloc.recover_resources("f1", "s1", unreserved.allocate("role1"))
    assert offered_to(c.tick(), "f1") == unreserved


# ================================================================= errors


def test_inconsistent_calls_raise_allocator_error():
    c = Cluster()
    c.framework("f1", "r")
    c.agent("s1", "cpus:2;mem:1024")
    with pytest.raises(AllocatorError):
        c.framework("f1", "r")
    with pytest.raises(AllocatorError):
        c.agent("s1", "cpus:1")
    with pytest.raises(AllocatorError):
        c.agent("tagged", res("cpus:1").allocate("r"))
    with pytest.raises(AllocatorError):
        c.agent("s2", "cpus:1", used={"ghost": res("cpus:1").allocate("r")})
    with pytest.raises(AllocatorError):
        c.agent("s3", "cpus:1", used={"f1": res("cpus:2").allocate("r")})
    with pytest.raises(AllocatorError):
        c.agent("s4", "cpus:1", used={"f1": res("cpus:1")})  # no allocation role
    # A refused add leaves nothing behind.
    assert c.alloc.agent_ids() == ["s1"]
    assert c.alloc.cluster_total() == qty("cpus:2;mem:1024")
    with pytest.raises(AllocatorError):
        c.alloc.add_framework("f9", profile("r9"), used={"s1": res("cpus:5").allocate("r9")})
    assert not c.alloc.has_framework("f9")
    assert c.alloc.role_share("r9") == 0.0
    [d] = c.allocate()
    with pytest.raises(AllocatorError):
        c.alloc.recover_resources("f1", "s1", res("cpus:3").allocate("r"))
    with pytest.raises(AllocatorError):
        c.alloc.recover_resources("f1", "s1", d.resources.unallocate())
    with pytest.raises(AllocatorError):
        c.alloc.update_allocation("f1", "nowhere", [])
    c.framework("f2", "r")
    c.alloc.update_allocation("f2", "s1", [])  # nothing to convert: nothing to do
    held_by_nobody = res("cpus:1").allocate("r")
    with pytest.raises(AllocatorError):
        c.alloc.update_allocation("f2", "s1", [Conversion(held_by_nobody, held_by_nobody)])
    calls: list[Callable[[], object]] = [
        lambda: c.alloc.activate_framework("ghost"),
        lambda: c.alloc.deactivate_framework("ghost"),
        lambda: c.alloc.update_framework("ghost", profile("r")),
        lambda: c.alloc.suppress("ghost"),
        lambda: c.alloc.revive("ghost"),
        lambda: c.alloc.update_agent("ghost", AgentProfile("ghost")),
        lambda: c.alloc.activate_agent("ghost"),
        lambda: c.alloc.deactivate_agent("ghost"),
        lambda: c.alloc.update_agent_resources("ghost", []),
    ]
    for call in calls:
        with pytest.raises(AllocatorError):
            call()
    check_invariants(c.alloc)


def test_allocator_error_is_a_value_error():
    assert issubclass(AllocatorError, ValueError)


def test_no_frameworks_or_no_agents_means_no_offers():
    c = Cluster()
    c.agent("s1", "cpus:1;mem:512")
    assert c.allocate() == []
    c2 = Cluster()
    c2.framework("f1", "r")
    assert c2.allocate() == []
    assert c2.alloc.allocate(0.0, full=True) == []


def test_options_are_injectable():
    opts = AllocatorOptions(allocation_interval_s=2.0)
    c = Cluster(options=opts)
    assert c.alloc.options.allocation_interval_s == 2.0
