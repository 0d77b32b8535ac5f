"""Why a framework gets nothing from an agent: every verdict, and agreement with what
the allocator really does next."""

from __future__ import annotations

from agora.core.allocator.explain import Verdict
from agora.core.allocator.quota import Quota
from agora.core.allocator.state import Capability
from agora.core.quantities import Limits, Quantities
from tests.unit.allocator_kit import MULTI, Cluster, qty, res, revocable


def verdicts(cluster: Cluster, framework_id: str, agent_id: str) -> dict[str | None, Verdict]:
    return {w.role: w.verdict for w in cluster.alloc.explain(framework_id, agent_id, cluster.now)}


def test_eligible_framework_is_then_offered() -> None:
    c = Cluster()
    c.framework("f1", "r1", caps=MULTI)
    c.agent("a1", "cpus:2;mem:1024")
    [why] = c.alloc.explain("f1", "a1", c.now)
    assert why.verdict is Verdict.ELIGIBLE
    assert "framework 1 of 1" in why.message
    assert [d.framework_id for d in c.allocate()] == ["f1"]


def test_unknown_framework_and_agent() -> None:
    c = Cluster()
    c.framework("f1", "r1", caps=MULTI)
    c.agent("a1", "cpus:1;mem:64")
    assert verdicts(c, "nope", "a1") == {None: Verdict.FRAMEWORK_UNKNOWN}
    assert verdicts(c, "f1", "nope") == {None: Verdict.AGENT_UNKNOWN}


def test_nothing_free_names_who_holds_it() -> None:
    c = Cluster()
    c.framework("f1", "r1", caps=MULTI)
    c.framework("f2", "r1", caps=MULTI)
    c.agent("a1", "cpus:2;mem:1024")
    [offer] = c.allocate()
    loser = "f2" if offer.framework_id == "f1" else "f1"
    [why] = c.alloc.explain(loser, "a1", c.now)
    assert why.verdict is Verdict.NOTHING_FREE
    assert f"{offer.framework_id} holds cpus:2;mem:1024" in why.message


def test_filtered_until_expiry_then_eligible() -> None:
    c = Cluster()
    c.framework("f1", "r1", caps=MULTI)
    c.agent("a1", "cpus:2;mem:1024")
    c.decline_all(c.allocate(), refuse_seconds=30)
    [why] = c.alloc.explain("f1", "a1", c.now)
    assert why.verdict is Verdict.FILTERED
    assert why.until == 30.0
    assert c.tick(10) == []
    c.now = 31.0
    assert verdicts(c, "f1", "a1") == {"r1": Verdict.ELIGIBLE}
    assert len(c.allocate(full=True)) == 1


def test_suppressed_inactive_and_deactivated_agent() -> None:
    c = Cluster()
    c.framework("f1", "r1", "r2", caps=MULTI)
    c.agent("a1", "cpus:2;mem:1024")
    c.alloc.suppress("f1", ["r1"])
    assert verdicts(c, "f1", "a1") == {"r1": Verdict.SUPPRESSED, "r2": Verdict.ELIGIBLE}
    c.alloc.deactivate_agent("a1")
    assert verdicts(c, "f1", "a1")["r2"] is Verdict.AGENT_DEACTIVATED
    c.alloc.deactivate_framework("f1")
    assert set(verdicts(c, "f1", "a1").values()) == {Verdict.FRAMEWORK_INACTIVE}


def test_reserved_for_another_role() -> None:
    c = Cluster()
    c.framework("f1", "web", caps=MULTI)
    c.agent("a1", "cpus(db):4;mem(db):1024")
    [why] = c.alloc.explain("f1", "a1", c.now)
    assert why.verdict is Verdict.RESERVED_FOR_OTHER_ROLES
    assert "['db']" in why.message
    assert c.allocate() == []


def test_gpu_agent_without_capability() -> None:
    c = Cluster()
    c.framework("f1", "r1", caps=MULTI)
    c.agent("a1", "cpus:2;mem:1024;gpus:1")
    [why] = c.alloc.explain("f1", "a1", c.now)
    assert why.verdict is Verdict.INCAPABLE and "GPU_RESOURCES" in why.message
    assert c.allocate() == []


def test_only_revocable_free_for_a_framework_that_cannot_use_it() -> None:
    c = Cluster()
    c.framework("f1", "r1", caps=MULTI)
    c.agent("a1", revocable("cpus:4") + res("mem:16"))
    assert verdicts(c, "f1", "a1") == {"r1": Verdict.UNUSABLE_KINDS}
    c.framework("f2", "r1", caps=(*MULTI, Capability.REVOCABLE_RESOURCES))
    assert verdicts(c, "f2", "a1") == {"r1": Verdict.ELIGIBLE}


def test_below_the_minimum_offer_size() -> None:
    c = Cluster()
    c.framework("f1", "r1", caps=MULTI)
    c.agent("a1", "cpus:0.001;mem:16")
    [why] = c.alloc.explain("f1", "a1", c.now)
    assert why.verdict is Verdict.BELOW_MINIMUM
    assert "cpus:0.01 or mem:32" in why.message
    assert c.allocate() == []


def test_quota_limit_reached() -> None:
    c = Cluster()
    c.framework("f1", "r1", caps=MULTI)
    c.alloc.update_quota("r1", Quota(limits=Limits({"cpus": 2000, "mem": 1_024_000})))
    c.agent("a1", "cpus:2;mem:1024")
    c.agent("a2", "cpus:2;mem:1024")
    [offer] = c.allocate(full=True)
    other = "a2" if offer.agent_id == "a1" else "a1"
    [why] = c.alloc.explain("f1", other, c.now)
    assert why.verdict is Verdict.QUOTA_LIMIT
    assert "['cpus', 'mem']" in why.message
    assert c.allocate(full=True) == []


def test_held_back_for_another_roles_guarantee() -> None:
    def cluster(agent: str) -> Cluster:
        c = Cluster()
        c.framework("greedy", "other", caps=MULTI)
        c.alloc.update_quota("needy", Quota(guarantees=Quantities({"cpus": 4000})))
        c.agent("a1", agent)
        return c

    c = cluster("cpus:4;mem:16")
    [why] = c.alloc.explain("greedy", "a1", c.now)
    assert why.verdict is Verdict.HELD_FOR_GUARANTEES
    assert c.allocate() == []
    # With memory to spare, that part is offered and the explanation says what is held.
    c = cluster("cpus:4;mem:1024")
    [why] = c.alloc.explain("greedy", "a1", c.now)
    assert why.verdict is Verdict.ELIGIBLE and "cpus:4 is held back by quota" in why.message
    assert [str(d.resources.unallocate()) for d in c.allocate()] == ["mem:1024"]


def test_constraints_exclude_the_agent() -> None:
    from agora.core.allocator.constraints import Constraint, Predicate, Pseudo, RoleConstraints

    rule = RoleConstraints(
        ((Constraint(Predicate.TEXT_EQUALS, pseudo=Pseudo.HOSTNAME, value="a2"),),)
    )
    c = Cluster()
    c.framework("f1", "r1", caps=MULTI, constraints={"r1": rule})
    c.agent("a1", "cpus:2;mem:1024")
    c.agent("a2", "cpus:2;mem:1024")
    assert verdicts(c, "f1", "a1") == {"r1": Verdict.CONSTRAINTS}
    assert verdicts(c, "f1", "a2") == {"r1": Verdict.ELIGIBLE}
    assert {d.agent_id for d in c.allocate(full=True)} == {"a2"}


def test_decisions_say_why_they_were_made() -> None:
    c = Cluster()
    c.framework("f1", "r1", caps=MULTI)
    c.alloc.update_quota("r1", Quota(guarantees=qty("cpus:1")))
    c.agent("a1", "cpus:2;mem:1024")
    [decision] = c.allocate()
    assert "below its quota guarantee" in decision.why()
    c.decline(decision)
    c.framework("f2", "r2", caps=MULTI)
    c.alloc.update_quota("r1", Quota())
    fair = [d for d in c.allocate(full=True) if d.framework_id == "f2"]
    assert fair and "lowest weighted DRF share" in fair[0].why()
