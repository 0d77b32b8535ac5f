"""Decline filters: durations (options.refuse_duration_s), their effect on allocation
(Mesos OfferFilter, SmallOfferFilterTimeout, ReviveOffers...) and RoleFilters itself."""

from __future__ import annotations

import math

import pytest

from agora.core.allocator import refuse_duration_s
from agora.core.allocator.filters import RoleFilters
from agora.core.allocator.options import DEFAULT_REFUSE_S, MAX_REFUSE_S
from agora.core.allocator.state import AgentProfile
from tests.unit.allocator_kit import MULTI, Cluster, agents_of, offered_to, profile, res

DAY = 24 * 3600.0

# ============================================================ durations


@pytest.mark.parametrize(
    ("refuse_seconds", "expected"),
    [
        (0, None),  # no filter
        (0.0, None),
        (10, 10.0),
        (2.5, 2.5),
        (None, DEFAULT_REFUSE_S),  # missing
        (-1, DEFAULT_REFUSE_S),  # negative
        (float("nan"), DEFAULT_REFUSE_S),
        ("10", DEFAULT_REFUSE_S),  # not a number
        (True, DEFAULT_REFUSE_S),
        (400 * DAY, MAX_REFUSE_S),  # capped at 365 days
        (float("inf"), MAX_REFUSE_S),
        (2**31 - 1, MAX_REFUSE_S),
        (0.1, 1.0),  # raised to the allocation interval
        (1, 1.0),
    ],
)
def test_refuse_duration_rules(refuse_seconds, expected):
    assert refuse_duration_s(refuse_seconds, 1.0) == expected


def test_refuse_duration_is_at_least_the_allocation_interval():
    assert refuse_duration_s(1, 60.0) == 60.0
    assert refuse_duration_s(-5, 60.0) == 60.0  # default 5 s, then raised
    assert refuse_duration_s(120, 60.0) == 120.0
    assert MAX_REFUSE_S == 365 * DAY


# ============================================================ in the allocator


def test_offer_filter_blocks_until_it_expires():
    """OfferFilter: a filter of twice the allocation interval skips one batch
    allocation and expires before the next."""
    c = Cluster()
    c.framework("f", "role")
    c.agent("a1", "cpus:1;mem:512;disk:0")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=2 * c.alloc.options.allocation_interval_s)
    assert c.alloc.filter_count("role") == 1
    assert c.tick() == []  # t = 1
    [d] = c.tick()  # t = 2: expired
    assert d.resources.unallocate() == res("cpus:1;mem:512")
    assert c.alloc.filter_count("role") == 0


def test_small_filter_outlives_the_allocation_interval():
    """SmallOfferFilterTimeout: a 1 s filter with a 60 s allocation interval lasts
    60 s, so the next batch allocation still applies it and the resources go to the
    framework with the larger share."""
    c = Cluster(allocation_interval_s=60.0)
    c.framework("f1", "role")
    c.framework("f2", "role")
    c.agent("a1", "cpus:1;mem:512;disk:0", used={"f1": res("cpus:1;mem:512").allocate("role")})
    assert c.allocate() == []
    c.agent("a2", "cpus:1;mem:512;disk:0")
    [d] = c.allocate()
    assert d.framework_id == "f2"
    c.decline(d, refuse_seconds=1)
    c.now += 1.0
    assert c.allocate(full=True)[0].framework_id == "f1"  # filter still there at t = 1
    c.alloc.recover_resources("f1", "a2", res("cpus:1;mem:512").allocate("role"))
    c.now = 59.0
    assert c.allocate(full=True)[0].framework_id == "f1"
    c.alloc.recover_resources("f1", "a2", res("cpus:1;mem:512").allocate("role"))
    c.now = 60.0  # the filter (raised to 60 s) has expired: f2's share is lower
    assert c.allocate(full=True)[0].framework_id == "f2"


def test_zero_refuse_seconds_installs_no_filter():
    """QuotaAgainstStarvation's 0 s declines: the same framework gets them back."""
    c = Cluster()
    c.framework("f", "r")
    c.agent("a1", "cpus:1;mem:512")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=0)
    assert c.alloc.filter_count() == 0
    assert agents_of(c.tick(), "f") == {"a1"}


@pytest.mark.parametrize("bad", [None, -3, float("nan"), "soon"])
def test_missing_or_invalid_refuse_seconds_means_five_seconds(bad):
    c = Cluster()
    c.framework("f", "r")
    c.agent("a1", "cpus:1;mem:512")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=bad)
    assert c.alloc.filter_count() == 1
    for _ in range(4):
        assert c.tick() == []  # t = 1..4
    c.now += 0.9
    assert c.allocate(full=True) == []  # t = 4.9
    assert agents_of(c.tick(0.1), "f") == {"a1"}  # t = 5


def test_refuse_seconds_above_a_year_are_capped():
    c = Cluster()
    c.framework("f", "r")
    c.agent("a1", "cpus:1;mem:512")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=10 * 365 * DAY)
    c.now = 365 * DAY - 1
    assert c.allocate(full=True) == []
    c.now = 365 * DAY
    assert agents_of(c.allocate(full=True), "f") == {"a1"}


def test_filter_blocks_smaller_offers_but_not_larger_ones():
    """A filter applies iff the refused resources contain the new offer: once the
    agent has more than was refused, the framework is offered again."""
    c = Cluster()
    c.framework("f", "r")
    c.agent("a1", "cpus:2;mem:1024")
    [d] = c.allocate()
    assert d.resources == res("cpus:2;mem:1024").allocate("r")
    half = res("cpus:1;mem:512").allocate("r")
    # The framework uses half and declines the other half for a long time.
    c.alloc.recover_resources("f", "a1", half, refuse_seconds=1000, now=c.now)
    assert c.tick() == []  # offer would be exactly what was refused

    # Its task ends: the agent now has more than was refused.
    c.alloc.recover_resources("f", "a1", half)
    assert offered_to(c.tick(), "f") == res("cpus:2;mem:1024")


def test_filter_applies_to_a_subset_of_the_refused_resources():
    c = Cluster()
    c.framework("f", "r")
    c.framework("g", "r")
    c.alloc.suppress("g")
    c.agent("a1", "cpus:2;mem:1024")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=100)
    # g takes part of the agent; what is left is a subset of what f refused.
    c.alloc.revive("g")
    [dg] = c.allocate()
    c.alloc.recover_resources("g", "a1", res("cpus:1;mem:512").allocate("r"))
    c.alloc.suppress("g")
    assert c.tick() == []
    assert dg.framework_id == "g"


def test_filter_grows_with_agent_total():
    """An agent whose total grows is offered again despite the filter."""
    c = Cluster()
    c.framework("f", "r")
    c.agent("a1", "cpus:2;mem:1024")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=1000)
    assert c.tick() == []
    c.alloc.update_agent("a1", total=res("cpus:3;mem:1024"))
    assert offered_to(c.allocate(), "f") == res("cpus:3;mem:1024")


def test_filter_is_per_framework():
    """MultipleFrameworksInRoleWithQuota's tail: what one framework declines goes to
    another framework of the same role."""
    c = Cluster()
    c.framework("f1", "r")
    c.framework("f2", "r")
    c.agent("a1", "cpus:1;mem:512")
    [d] = c.allocate()
    assert d.framework_id == "f1"
    c.decline(d, refuse_seconds=5)
    assert agents_of(c.tick(), "f2") == {"a1"}


def test_filter_is_per_role():
    c = Cluster()
    c.framework("f", "a", "b", caps=MULTI)
    c.agent("a1", "cpus:1;mem:512")
    [d] = c.allocate()
    assert d.role == "a"
    c.decline(d, refuse_seconds=100)
    [d] = c.tick()
    assert d.role == "b"  # declined under a, still offered under b
    c.decline(d, refuse_seconds=100)
    assert c.tick() == []
    assert c.alloc.filter_count("a") == 1
    assert c.alloc.filter_count("b") == 1
    assert c.alloc.framework("f").filter_count == {"a": 1, "b": 1}


def test_filter_is_per_agent():
    c = Cluster()
    c.framework("f", "r")
    c.agent("a1", "cpus:1;mem:512")
    c.agent("a2", "cpus:1;mem:512")
    decisions = c.allocate()
    for d in decisions:
        c.decline(d, refuse_seconds=100 if d.agent_id == "a1" else 0)
    assert agents_of(c.tick(), "f") == {"a2"}


def test_filter_counts_follow_expiry_and_repeat_declines():
    """ActiveOfferFiltersMetrics: one live filter per (framework, role, agent, refused
    resources); declining the same thing again extends it."""
    c = Cluster()
    c.agent("a1", "cpus:2;mem:1024")
    c.framework("f1", "roleA")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=100)
    assert c.alloc.filter_count("roleA") == 1
    c.framework("f2", "roleB")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=100)
    c.framework("f3", "roleA")
    [d] = c.allocate()
    assert d.framework_id == "f3"
    c.decline(d, refuse_seconds=50)
    assert (c.alloc.filter_count("roleA"), c.alloc.filter_count("roleB")) == (2, 1)
    assert c.alloc.filter_count() == 3

    c.now = 60.0
    assert c.allocate(full=True)[0].framework_id == "f3"  # f3's filter expired
    assert c.alloc.filter_count("roleA") == 1
    assert c.alloc.framework("f3").filter_count.get("roleA", 0) == 0


def test_revive_clears_filters_of_the_revived_roles_only():
    c = Cluster()
    c.framework("f", "a", "b", caps=MULTI)
    c.agent("a1", "cpus:1;mem:512")
    c.agent("a2", "cpus:1;mem:512")
    c.decline_all(c.allocate(), refuse_seconds=1000)
    c.decline_all(c.tick(), refuse_seconds=1000)  # now filtered under both roles
    assert c.tick() == []
    assert c.alloc.filter_count() == 4
    c.alloc.revive("f", ["b"])
    assert c.alloc.filter_count("a") == 2
    assert c.alloc.filter_count("b") == 0
    assert {d.role for d in c.allocate()} == {"b"}


def test_suppress_drops_the_filters_of_suppressed_roles():
    c = Cluster()
    c.framework("f", "r")
    c.agent("a1", "cpus:1;mem:512")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=1000)
    c.alloc.suppress("f")
    assert c.alloc.filter_count() == 0
    c.alloc.revive("f")
    assert agents_of(c.allocate(), "f") == {"a1"}


def test_no_filter_for_a_role_the_framework_does_not_want_offers_for():
    c = Cluster()
    c.framework("f", "r")
    c.agent("a1", "cpus:1;mem:512")
    [d] = c.allocate()
    c.alloc.suppress("f")
    c.decline(d, refuse_seconds=1000)  # suppressed: no filter is kept
    assert c.alloc.filter_count() == 0
    c.alloc.deactivate_framework("f")
    c.alloc.activate_framework("f")
    assert c.allocate() == []  # still suppressed
    c.alloc.revive("f")
    assert agents_of(c.allocate(), "f") == {"a1"}


def test_deactivate_framework_drops_all_its_filters():
    c = Cluster()
    c.framework("f", "a", "b", caps=MULTI)
    c.framework("g", "a")
    c.agent("a1", "cpus:1;mem:512")
    c.agent("a2", "cpus:1;mem:512")
    c.agent("a3", "cpus:1;mem:512")
    c.decline_all(c.allocate(), refuse_seconds=1000)
    assert c.alloc.framework("f").filter_count
    before_g = sum(c.alloc.framework("g").filter_count.values())
    c.alloc.deactivate_framework("f")
    assert not c.alloc.framework("f").filter_count
    assert c.alloc.filter_count() == before_g
    c.alloc.activate_framework("f")
    assert agents_of(c.allocate(), "f")


def test_unsubscribing_from_a_role_drops_its_filters():
    c = Cluster()
    c.framework("f", "a", "b", caps=MULTI)
    c.agent("a1", "cpus:1;mem:512")
    [d] = c.allocate()
    c.decline(d, refuse_seconds=1000)
    assert c.alloc.filter_count("a") == 1
    c.alloc.update_framework("f", profile("b", caps=MULTI))
    assert c.alloc.filter_count("a") == 0
    c.alloc.update_framework("f", profile("a", "b", caps=MULTI))
    assert "a" in {d.role for d in c.allocate()} | {d.role for d in c.tick()}


def test_agent_attribute_change_drops_its_filters():
    c = Cluster()
    c.framework("f", "r")
    c.agent("a1", "cpus:1;mem:512", attributes={"rack": "r1"})
    [d] = c.allocate()
    c.decline(d, refuse_seconds=1000)
    # Same attributes (only capabilities change): the filter stays.
    c.alloc.update_agent("a1", AgentProfile("a1", {"rack": "r1"}, capabilities=frozenset()))
    assert c.allocate() == []
    assert c.alloc.filter_count() == 1
    c.alloc.update_agent("a1", AgentProfile("a1", {"rack": "r2"}))
    assert c.alloc.filter_count() == 0
    assert agents_of(c.allocate(), "f") == {"a1"}


def test_remove_agent_and_framework_drop_filters():
    c = Cluster()
    c.framework("f", "r")
    c.framework("g", "r")
    c.agent("a1", "cpus:1;mem:512")
    c.agent("a2", "cpus:1;mem:512")
    c.decline_all(c.allocate(), refuse_seconds=1000)
    c.decline_all(c.tick(), refuse_seconds=1000)
    assert c.alloc.filter_count() == 4
    c.alloc.remove_agent("a1")
    assert c.alloc.filter_count() == 2
    assert c.alloc.framework("f").filter_count == {"r": 1}
    c.alloc.remove_framework("g")
    assert c.alloc.filter_count() == 1


def test_everyone_filtered_skips_the_agent_until_one_filter_expires():
    c = Cluster()
    for i in range(5):
        c.framework(f"f{i}", "r")
    c.agent("a1", "cpus:1;mem:512")
    for i in range(5):
        [d] = c.allocate() if i == 0 else c.tick(0.0)
        c.decline(d, refuse_seconds=10 + i)
    assert c.tick(0.0) == []
    assert c.alloc.filter_count() == 5
    c.now = 10.0
    [d] = c.allocate(full=True)
    assert d.framework_id == "f0"


# ============================================================ RoleFilters


def _r(text: str):
    return res(text)


def test_role_filters_group_by_refused_resources():
    rf = RoleFilters()
    refused = _r("cpus:2;mem:1024")
    rf.add("f1", refused, 10.0)
    rf.add("f2", _r("cpus:2;mem:1024"), 20.0)  # equal value: same group
    rf.add("f3", _r("cpus:1"), 5.0)
    assert len(rf.groups) == 2
    assert len(rf) == 3
    assert rf.min_expiry == 5.0

    # A later expiry extends, an earlier one does not shorten.
    rf.add("f1", refused, 15.0)
    rf.add("f1", refused, 12.0)
    assert rf.groups[refused]["f1"] == 15.0


def test_role_filters_blocking_and_covering():
    rf = RoleFilters()
    rf.add("f1", _r("cpus:2;mem:1024"), 10.0)
    assert rf.blocking("f1", _r("cpus:1;mem:512"), 0.0) == 10.0
    assert rf.blocking("f1", _r("cpus:2;mem:1024"), 9.9) == 10.0
    assert rf.blocking("f1", _r("cpus:3;mem:1024"), 0.0) is None  # more than refused
    assert rf.blocking("f1", _r("cpus:1;disk:1"), 0.0) is None  # something different
    assert rf.blocking("f1", _r("cpus:1"), 10.0) is None  # expired
    assert rf.blocking("f2", _r("cpus:1"), 0.0) is None

    assert rf.covering(_r("cpus:1")) == [{"f1": 10.0}]
    assert rf.covering(_r("cpus:4")) == []
    assert rf.of_framework("f1", 0.0) == [(_r("cpus:2;mem:1024"), 10.0)]
    assert rf.of_framework("f1", 10.0) == []


def test_role_filters_distinct_counts_frameworks_across_groups():
    rf = RoleFilters()
    rf.add("f1", _r("cpus:2"), 10.0)
    rf.add("f2", _r("cpus:2"), 10.0)
    rf.add("f1", _r("cpus:3"), 10.0)
    groups = rf.covering(_r("cpus:1"))
    assert len(groups) == 2
    assert RoleFilters.distinct(groups) == 2
    assert RoleFilters.distinct(groups[:1]) == len(groups[0])


def test_role_filters_prune_and_remove():
    rf = RoleFilters()
    rf.add("f1", _r("cpus:1"), 5.0)
    rf.add("f2", _r("cpus:1"), 8.0)
    rf.add("f1", _r("mem:1"), 9.0)
    assert rf.prune(4.0) == []  # nothing due yet
    assert rf.prune(5.0) == ["f1"]
    assert rf.min_expiry == 8.0
    assert sorted(rf.prune(8.5)) == ["f2"]
    assert list(rf.groups) == [_r("mem:1")]
    assert rf.remove_framework("f1") == 1
    assert rf.groups == {}
    assert rf.prune(100.0) == []
    assert rf.min_expiry == math.inf
