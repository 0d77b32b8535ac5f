"""Quota: guarantees (stage 1 and headroom), limits, consumption and the RoleTree.

Mesos's quota tests predate 1.9: their `createQuota` set a guarantee, which 1.9+
reads as guarantee == limit. `legacy()` builds that; `guarantee()` a guarantee alone.
"""

from __future__ import annotations

import pytest

from agora.core.allocator import Quota, Stage
from agora.core.allocator.quota import InvalidQuota, RoleTree, validate_quota
from agora.core.allocator.state import Capability
from agora.core.errors import InvalidRole
from agora.core.quantities import Limits
from agora.core.resources import EMPTY
from tests.unit.allocator_kit import (
    Cluster,
    agents_of,
    by_framework,
    offered_to,
    qty,
    res,
    revocable,
)

QR = "quota-role"
NQR = "no-quota-role"


def guarantee(text: str) -> Quota:
    return Quota(guarantees=qty(text))


def limit(text: str) -> Quota:
    return Quota(limits=Limits(qty(text).as_dict()))


def legacy(text: str) -> Quota:
    q = qty(text)
    return Quota(guarantees=q, limits=Limits(q.as_dict()))


# ============================================================ guarantees


@pytest.mark.parametrize("make", [guarantee, legacy])
def test_quota_provides_guarantee(make):
    """QuotaProvidesGuarantee: a role below its guarantee gets new agents first, and
    what its framework declines is held back for it rather than given to others."""
    c = Cluster()
    c.framework("f1", QR)
    c.alloc.update_quota(QR, make("cpus:2;mem:1024"))
    assert c.allocate() == []
    c.framework("f2", NQR)
    assert c.allocate() == []

    c.agent("agent1", "cpus:1;mem:512;disk:0")
    [d] = c.allocate()
    assert (d.framework_id, d.agent_id, d.stage) == ("f1", "agent1", Stage.QUOTA_GUARANTEE)
    assert "below its quota guarantee" in d.why()

    c.agent("agent2", "cpus:1;mem:512;disk:0")
    [d] = c.allocate()
    assert (d.framework_id, d.agent_id) == ("f1", "agent2")

    c.decline(d, refuse_seconds=2)
    assert c.tick() == []  # f2 must not eat the guarantee
    assert c.alloc.available("agent2") == res("cpus:1;mem:512")
    [d] = c.tick()
    assert (d.framework_id, d.agent_id) == ("f1", "agent2")


def test_remove_quota_restores_fair_sharing():
    """RemoveQuota."""
    c = Cluster()
    c.alloc.update_quota(QR, legacy("cpus:2;mem:1024"))
    c.framework("f1", QR)
    c.framework("f2", NQR)
    for name in ("agent1", "agent2"):
        c.agent(name, "cpus:1;mem:512;disk:0", used={"f1": res("cpus:1;mem:512").allocate(QR)})
    assert c.allocate() == []
    c.alloc.update_quota(QR, Quota())
    assert c.alloc.roles().quota_roles() == []
    c.alloc.recover_resources("f1", "agent1", res("cpus:1;mem:512").allocate(QR))
    assert by_framework(c.tick()) == {"f2": {"agent1": res("cpus:1;mem:512")}}


def test_multiple_frameworks_in_a_role_with_quota():
    """MultipleFrameworksInRoleWithQuota: inside a quota role frameworks share by DRF,
    and one framework's decline goes to the other."""
    c = Cluster()
    c.framework("f1a", QR)
    c.alloc.update_quota(QR, legacy("cpus:4;mem:2048"))
    c.framework("f2", NQR)
    c.agent("agent1", "cpus:1;mem:512;disk:0")
    assert agents_of(c.allocate(), "f1a") == {"agent1"}

    c.framework("f1b", QR)
    c.agent("agent2", "cpus:2;mem:1024;disk:0")
    assert by_framework(c.allocate()) == {"f1b": {"agent2": res("cpus:2;mem:1024")}}

    c.agent("agent3", "cpus:1;mem:512;disk:0")
    [d] = c.allocate()
    assert (d.framework_id, d.agent_id) == ("f1a", "agent3")

    c.decline(d, refuse_seconds=5)
    assert by_framework(c.tick()) == {"f1b": {"agent3": res("cpus:1;mem:512")}}


def test_guarantee_alone_gives_the_whole_agent():
    """QuotaAllocationGranularity: without limits a role under its guarantee takes the
    whole agent (coarse-grained), bursting above the guarantee."""
    c = Cluster()
    c.framework("f1", QR)
    c.alloc.update_quota(QR, guarantee("cpus:0.5;mem:200"))
    c.framework("f2", NQR)
    c.agent("agent", "cpus:1;mem:512;disk:0")
    assert by_framework(c.allocate()) == {"f1": {"agent": res("cpus:1;mem:512")}}


def test_guarantee_with_equal_limit_is_chopped_to_the_quota():
    c = Cluster()
    c.framework("f1", QR)
    c.alloc.update_quota(QR, legacy("cpus:0.5;mem:200"))
    c.framework("f2", NQR)
    c.agent("agent", "cpus:1;mem:512;disk:0")
    decisions = c.allocate()
    assert by_framework(decisions) == {
        "f1": {"agent": res("cpus:0.5;mem:200")},
        "f2": {"agent": res("cpus:0.5;mem:312")},
    }
    assert [d.stage for d in decisions] == [Stage.QUOTA_GUARANTEE, Stage.FAIR_SHARE]


def test_drf_with_quota():
    """DRFWithQuota: once the quota is met, the free pool goes to the other roles by
    DRF, even though the quota role has the smaller share."""
    c = Cluster()
    c.alloc.update_quota(QR, legacy("cpus:0.25;mem:128"))
    c.framework("f1", QR)
    c.framework("f2", NQR)
    c.agent("agent1", "cpus:1;mem:512;disk:0", used={"f1": res("cpus:0.25;mem:128").allocate(QR)})
    assert by_framework(c.allocate()) == {"f2": {"agent1": res("cpus:0.75;mem:384")}}
    assert c.alloc.roles().consumed(QR) == qty("cpus:0.25;mem:128")

    c.agent("agent2", "cpus:1;mem:512;disk:0")
    assert by_framework(c.allocate()) == {"f2": {"agent2": res("cpus:1;mem:512")}}


def test_quota_against_starvation():
    """QuotaAgainstStarvation: a framework declining with 0 s keeps getting the agent
    back, until quota for the starving role puts that role first."""
    c = Cluster()
    c.framework("f1", QR)
    c.framework("f2", NQR)
    c.agent("agent1", "cpus:1;mem:512;disk:0", used={"f1": res("cpus:1;mem:512").allocate(QR)})
    c.agent("agent2", "cpus:1;mem:512;disk:0")
    [d] = c.allocate()
    assert d.framework_id == "f2"
    c.decline(d, refuse_seconds=0)
    [d] = c.tick()
    assert d.framework_id == "f2"
    c.decline(d, refuse_seconds=0)

    c.alloc.update_quota(QR, legacy("cpus:2;mem:1024"))
    assert not c.alloc.pending()  # a quota change does not trigger an allocation
    assert by_framework(c.tick()) == {"f1": {"agent2": res("cpus:1;mem:512")}}


def test_quota_is_held_back_for_a_role_without_frameworks():
    """QuotaAbsentFramework: headroom is kept for a quota role that has no framework;
    an agent whose offer would eat into it is not offered, a second agent is."""
    c = Cluster()
    c.alloc.update_quota(QR, legacy("cpus:2;mem:1024"))
    c.framework("f", NQR)
    c.agent("agent1", "cpus:2;mem:1024;disk:0")
    assert c.allocate() == []
    c.agent("agent2", "cpus:1;mem:512;disk:0")
    assert by_framework(c.allocate()) == {"f": {"agent2": res("cpus:1;mem:512")}}
    assert c.tick() == []


def test_a_quota_role_without_frameworks_does_not_block_another():
    """MultiQuotaAbsentFrameworks."""
    c = Cluster()
    c.agent("agent", "cpus:2;mem:2048;disk:0")
    c.alloc.update_quota("quota-role-1", legacy("cpus:1;mem:1024"))
    c.alloc.update_quota("quota-role-2", legacy("cpus:2;mem:2048"))
    c.framework("f", "quota-role-2")
    assert by_framework(c.allocate()) == {"f": {"agent": res("cpus:2;mem:2048")}}


def test_a_satisfied_quota_role_does_not_starve_an_unsatisfied_one():
    """MultiQuotaWithFrameworks: role 1 sorts first (smaller share) but is satisfied;
    role 2 is below its guarantee and gets the new agent."""
    c = Cluster()
    c.alloc.update_quota("quota-role-1", guarantee("cpus:1;mem:200"))
    c.alloc.update_quota("quota-role-2", guarantee("cpus:2;mem:2000"))
    c.framework("f1", "quota-role-1")
    c.framework("f2", "quota-role-2")
    c.agent(
        "agent1",
        "cpus:1;mem:1024;disk:0",
        used={"f1": res("cpus:1;mem:1024").allocate("quota-role-1")},
    )
    c.agent(
        "agent2",
        "cpus:1;mem:1024;disk:0",
        used={"f2": res("cpus:1;mem:1024").allocate("quota-role-2")},
    )
    assert c.allocate() == []
    c.agent("agent3", "cpus:2;mem:2048")
    [d] = c.allocate()
    assert (d.framework_id, d.stage) == ("f2", Stage.QUOTA_GUARANTEE)
    assert d.resources.unallocate() == res("cpus:2;mem:2048")


def test_limits_stop_a_role_at_its_quota():
    c = Cluster()
    c.alloc.update_quota("quota-role-1", legacy("cpus:1;mem:200"))
    c.alloc.update_quota("quota-role-2", legacy("cpus:2;mem:2000"))
    c.framework("f1", "quota-role-1")
    c.framework("f2", "quota-role-2")
    c.agent(
        "agent1", "cpus:1;mem:1024", used={"f1": res("cpus:1;mem:1024").allocate("quota-role-1")}
    )
    c.agent(
        "agent2", "cpus:1;mem:1024", used={"f2": res("cpus:1;mem:1024").allocate("quota-role-2")}
    )
    c.agent("agent3", "cpus:2;mem:2048")
    assert by_framework(c.allocate()) == {"f2": {"agent3": res("cpus:1;mem:976")}}
    assert c.alloc.roles().consumed("quota-role-2") == qty("cpus:2;mem:2000")
    assert c.tick() == []  # both roles are at their limits
    assert c.alloc.available("agent3") == res("cpus:1;mem:1072")


def test_reservations_count_towards_quota():
    """ReservationWithinQuota: the role's reservation is part of its consumption, so
    with its quota met the unreserved resources go to the other role."""
    c = Cluster()
    c.alloc.update_quota(QR, legacy("cpus:2;mem:256"))
    c.framework("f1", QR)
    c.framework("f2", NQR)
    used = res(f"cpus:2;mem({QR}):256").allocate(QR)
    c.agent("agent1", f"cpus:8;mem({QR}):256", used={"f1": used})
    assert by_framework(c.allocate()) == {"f2": {"agent1": res("cpus:6")}}
    assert c.alloc.roles().consumed(QR) == qty("cpus:2;mem:256")
    c.agent("agent2", "cpus:4")
    assert by_framework(c.allocate()) == {"f2": {"agent2": res("cpus:4")}}


def test_headroom_is_not_eaten_by_a_bursting_quota_role():
    """Role A (guarantee 2 cpus) may burst above its guarantee on an agent, but only
    into the surplus above what role B's guarantee (10 cpus) still needs."""
    c = Cluster()
    c.alloc.update_quota("A", guarantee("cpus:2"))
    c.alloc.update_quota("B", guarantee("cpus:10"))
    c.framework("fa", "A")
    c.framework("fc", "C")
    c.agent("s1", "cpus:10;mem:100")
    c.agent("s2", "cpus:10;mem:100")
    decisions = c.allocate()
    offered_cpus = sum(d.resources.scalar("cpus") for d in decisions)
    assert offered_cpus == 10_000  # 20 cpus - B's 10
    unallocated = sum(c.alloc.available(s).scalar("cpus") for s in ("s1", "s2"))
    assert unallocated == 10_000
    # A bursts into the whole surplus (Mesos: surplus = available - required).
    assert offered_to(decisions, "fa").scalar("cpus") == 10_000
    assert offered_to(decisions, "fc").scalar("cpus") == 0


def test_guaranteed_stage_needs_progress_on_the_guarantee():
    """A quota role is served in stage 1 only when the agent has unreserved resources
    towards its guarantee; its reservations alone wait for stage 2."""
    c = Cluster()
    c.alloc.update_quota(QR, guarantee("cpus:4"))
    c.framework("f1", QR)
    c.agent("s1", f"mem:512;cpus({QR}):1")
    [d] = c.allocate()
    assert d.stage is Stage.FAIR_SHARE
    assert d.resources.unallocate() == res(f"mem:512;cpus({QR}):1")


def test_quota_on_the_default_role():
    c = Cluster()
    c.alloc.update_quota("*", legacy("cpus:1"))
    c.framework("f", "*")
    c.agent("s1", "cpus:4;mem:1024")
    assert by_framework(c.allocate()) == {"f": {"s1": res("cpus:1;mem:1024")}}


# ================================================================= limits


def test_limit_caps_unreserved_scalars_only_for_named_resources():
    c = Cluster()
    c.alloc.update_quota("capped", limit("cpus:2"))
    c.framework("f", "capped")
    c.framework("g", "other")
    c.agent("s1", "cpus:8;mem:1024;ports:[31000-31010]")
    offers = by_framework(c.allocate())
    # Names without a limit (mem) and non-scalars (ports) are not capped.
    assert offers["f"] == {"s1": res("cpus:2;mem:1024;ports:[31000-31010]")}
    assert offers["g"] == {"s1": res("cpus:6")}


def test_limit_counts_reservations_even_unallocated():
    c = Cluster()
    c.alloc.update_quota("r", limit("cpus:3"))
    c.framework("f", "r")
    c.agent("reserved", "cpus(r):2;mem(r):128")
    c.alloc.deactivate_agent("reserved")  # its reservation stays unallocated
    c.agent("big", "cpus:4;mem:1024")
    assert by_framework(c.allocate()) == {"f": {"big": res("cpus:1;mem:1024")}}
    assert c.alloc.roles().consumed("r") == qty("cpus:3;mem:1152")

    # Reservations themselves are never cut by the limit.
    c.alloc.activate_agent("reserved")
    assert by_framework(c.allocate()) == {"f": {"reserved": res("cpus(r):2;mem(r):128")}}


def test_limit_of_a_parent_role_caps_its_children():
    c = Cluster()
    c.alloc.update_quota("eng", limit("cpus:2"))
    c.framework("web", "eng/web")
    c.framework("db", "eng/db")
    c.agent("s1", "cpus:8;mem:1024")
    c.agent("s2", "cpus:8;mem:1024")
    decisions = c.allocate()
    assert sum(d.resources.scalar("cpus") for d in decisions) == 2000
    assert c.alloc.roles().consumed("eng")["cpus"] == 2000
    assert c.alloc.roles().limit_headroom("eng/web") == {"cpus": 0}


def test_revocable_resources_are_not_limited_by_quota():
    c = Cluster()
    c.alloc.update_quota("r", limit("cpus:1"))
    c.framework("f", "r", caps=(Capability.REVOCABLE_RESOURCES,))
    c.agent("s1", res("cpus:4;mem:1024") + revocable("cpus:4"))
    assert offered_to(c.allocate(), "f") == res("cpus:1;mem:1024") + revocable("cpus:4")


def test_zero_limit_offers_nothing_unreserved():
    c = Cluster()
    c.alloc.update_quota("r", Quota(limits=Limits({"cpus": 0, "mem": 0})))
    c.framework("f", "r")
    c.agent("s1", "cpus:4;mem:1024;cpus(r):1;mem(r):64")
    assert offered_to(c.allocate(), "f") == res("cpus(r):1;mem(r):64")


# ============================================================ validation


def test_validate_quota_rules():
    validate_quota("eng", legacy("cpus:1"))
    validate_quota("*", guarantee("cpus:1"))
    with pytest.raises(InvalidQuota, match="nested"):
        validate_quota("eng/web", limit("cpus:1"))
    with pytest.raises(InvalidQuota, match="exceeds its limit"):
        validate_quota("eng", Quota(guarantees=qty("cpus:2"), limits=Limits({"cpus": 1000})))
    with pytest.raises(InvalidRole):
        validate_quota("", limit("cpus:1"))
    c = Cluster()
    with pytest.raises(InvalidQuota):
        c.alloc.update_quota("a/b", guarantee("cpus:1"))
    assert not c.alloc.roles().has_quota()


def test_quota_defaults():
    assert Quota().is_default()
    assert not guarantee("cpus:1").is_default()
    assert not limit("cpus:1").is_default()


# ================================================================ RoleTree


def test_role_tree_consumption_aggregates_up_the_hierarchy():
    tree = RoleTree()
    tree.add_reservations(res("cpus(eng/web):2;mem(eng):100;cpus:50"), +1)
    tree.add_held("eng/db", res("cpus:1;mem:10"), +1)
    tree.add_held("eng/db", res("cpus(eng):1") + revocable("cpus:5"), +1)  # not counted
    assert tree.consumed("eng/web") == qty("cpus:2")
    assert tree.consumed("eng/db") == qty("cpus:1;mem:10")
    assert tree.consumed("eng") == qty("cpus:3;mem:110")
    assert tree.consumed("sales") == qty("")
    tree.add_held("eng/db", res("cpus:1;mem:10"), -1)
    tree.add_reservations(res("cpus(eng/web):2"), -1)
    assert tree.consumed("eng") == qty("mem:100")


def test_role_tree_headroom_and_guarantees():
    tree = RoleTree()
    tree.set_quota("a", guarantee("cpus:4;mem:100"))
    tree.set_quota("b", legacy("cpus:1"))
    tree.set_quota("c", limit("cpus:10"))
    assert tree.quota_roles() == ["a", "b", "c"]
    assert tree.has_quota() and tree.has_guarantees()
    tree.add_held("a", res("cpus:1;mem:200"), +1)
    assert tree.unsatisfied_guarantee("a") == qty("cpus:3")
    assert tree.unsatisfied_guarantee("c") == qty("")
    assert tree.unsatisfied_guarantee("nobody") == qty("")
    assert tree.required_headroom() == qty("cpus:4")  # a: 3, b: 1
    assert tree.limit_headroom("a") is None
    assert tree.limit_headroom("c/x") == {"cpus": 10_000}
    tree.add_held("c/x", res("cpus:12"), +1)
    assert tree.limit_headroom("c/x") == {"cpus": 0}

    tree.set_quota("b", Quota())
    tree.set_quota("c", Quota())
    assert tree.quota_roles() == ["a"]
    tree.set_quota("a", limit("cpus:1"))
    assert not tree.has_guarantees()


def test_role_tree_weights():
    tree = RoleTree()
    assert tree.weight("x") == 1.0
    tree.set_weight("x", 2.5)
    assert tree.weight("x") == 2.5
    assert tree.get("y") is None


def test_allocator_consumption_tracks_offers_and_recovery():
    c = Cluster()
    c.alloc.update_quota("r", limit("cpus:100"))
    c.framework("f", "r")
    c.agent("s1", "cpus:4;mem:1024;disk(r):10")
    [d] = c.allocate()
    assert c.alloc.roles().consumed("r") == qty("cpus:4;mem:1024;disk:10")
    c.decline(d)
    assert c.alloc.roles().consumed("r") == qty("disk:10")  # reservations always count
    c.alloc.remove_agent("s1")
    assert c.alloc.roles().consumed("r") == qty("")
    assert offered_to(c.tick(), "f") == EMPTY
