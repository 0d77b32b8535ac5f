"""UpdateQuota and UpdateWeights on the master core."""

from __future__ import annotations

import pytest

from agora.core.allocator.quota import Quota
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master import registry as reg
from agora.core.quantities import Limits, Quantities
from tests.unit.master_kit import Driver, res


def _quota(guarantees: str = "", limits: str = "") -> Quota:
    return Quota(Quantities.parse(guarantees), Limits(Quantities.parse(limits)))


def test_valid_quota_is_200_and_recorded():
    d = Driver()
    quota = _quota("cpus:1", "cpus:2")
    out = d.do(ev.UpdateQuota(request_id="q", configs=(("eng", quota),)))
    assert list(out) == [cmd.Persist(reg.SetQuotas({"eng": quota})), cmd.Respond("q", 200)]
    assert d.core.allocator.roles().quota("eng") == _quota("cpus:1", "cpus:2")


@pytest.mark.parametrize(
    ("role", "quota", "words"),
    [
        ("eng/web", _quota("cpus:1"), ["'eng/web'", "nested"]),
        ("eng", _quota("cpus:4", "cpus:2"), ["'eng'", "'cpus'", "exceeds its limit"]),
        ("bad role", _quota("cpus:1"), ["'bad role'"]),
        ("", _quota("cpus:1"), ["empty"]),
    ],
)
def test_invalid_quota_is_400_naming_it(role, quota, words):
    d = Driver()
    out = d.do(ev.UpdateQuota(request_id="q", configs=((role, quota),)))
    (answer,) = out
    assert isinstance(answer, cmd.Respond) and answer.status == 400
    for word in words:
        assert word in answer.message, answer.message
    assert d.core.allocator.roles().quota("eng") == Quota()


def test_quota_limit_caps_offers():
    d = Driver()
    d.register_agent("h1", "cpus:4;mem:4096")
    d.do(ev.UpdateQuota(request_id="q", configs=(("eng", _quota(limits="cpus:2")),)))
    fw = d.subscribe(role="eng")
    offers = d.advance(3).offers(fw.id)
    # The offer is cut down to the limit's headroom; what has no limit comes whole.
    assert [o.resources for o in offers] == [res("cpus:2;mem:4096").allocate("eng")]


def test_lowering_a_limit_rescinds_outstanding_offers():
    d = Driver()
    d.register_agent("h1", "cpus:4;mem:4096")
    fw = d.subscribe(role="eng")
    offer = d.offer(fw)
    assert offer.resources.scalar("cpus") == 4000
    out = d.do(
        ev.UpdateQuota(request_id="q", configs=(("eng", _quota(limits="cpus:2")),), force=True)
    )
    assert out.response("q").status == 200
    assert out.rescinds(fw.id) == [offer.id]
    again = d.advance(3).offers(fw.id)
    assert [o.resources for o in again] == [res("cpus:2;mem:4096").allocate("eng")]


def test_limit_below_consumption_needs_force():
    d = Driver()
    _agent_id, _ = d.register_agent("h1", "cpus:4;mem:4096")
    fw = d.subscribe(role="eng")
    d.launch_one(fw, "t1", cpus=3, mem=128)
    out = d.do(ev.UpdateQuota(request_id="q", configs=(("eng", _quota(limits="cpus:2")),)))
    (answer,) = out
    assert isinstance(answer, cmd.Respond) and answer.status == 400
    assert "'eng'" in answer.message and "'cpus'" in answer.message and "force" in answer.message
    out = d.do(
        ev.UpdateQuota(request_id="q2", configs=(("eng", _quota(limits="cpus:2")),), force=True)
    )
    assert out.response("q2").status == 200


def test_valid_weights_are_200():
    d = Driver()
    out = d.do(ev.UpdateWeights(request_id="w", weights={"eng": 2.5, "ops": 1}))
    assert list(out) == [
        cmd.Persist(reg.SetWeights({"eng": 2.5, "ops": 1.0})),
        cmd.Respond("w", 200),
    ]
    assert d.core.allocator.roles().weight("eng") == 2.5
    assert d.core.allocator.roles().weight("ops") == 1.0


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        ({"eng": 0}, ["'eng'", "positive"]),
        ({"eng": -1.0}, ["'eng'", "positive"]),
        ({"eng": True}, ["'eng'", "positive"]),
        ({"eng": "2"}, ["'eng'", "positive"]),
        ({"ok": 2.0, "bad role": 1.0}, ["'bad role'"]),
    ],
)
def test_invalid_weights_are_400_naming_it_and_change_nothing(weights, words):
    d = Driver()
    out = d.do(ev.UpdateWeights(request_id="w", weights=weights))
    (answer,) = out
    assert isinstance(answer, cmd.Respond) and answer.status == 400
    for word in words:
        assert word in answer.message, answer.message
    assert d.core.allocator.roles().weight("ok") == 1.0
    assert d.core.allocator.roles().weight("eng") == 1.0
