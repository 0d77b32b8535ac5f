"""Metadata-free amounts: Quantities (absent = 0) and Limits (absent = unlimited)."""

from __future__ import annotations

import pytest

from agora.core.errors import InvalidResource
from agora.core.quantities import EMPTY_QUANTITIES, NO_LIMITS, Limits, Quantities
from agora.core.resource_text import parse_resources


def test_absent_means_zero_and_zero_is_dropped():
    q = Quantities({"cpus": 2000, "mem": 0})
    assert q["cpus"] == 2000
    assert q["gpus"] == 0
    assert "mem" not in q
    assert "gpus" not in q
    assert len(q) == 1
    assert list(q) == ["cpus"]
    assert q == Quantities([("cpus", 2000)])
    assert hash(q) == hash(Quantities({"cpus": 2000}))
    assert Quantities() == EMPTY_QUANTITIES


def test_negative_quantity_is_refused():
    with pytest.raises(InvalidResource, match="quantity of 'cpus' must not be negative"):
        Quantities({"cpus": -1})


def test_arithmetic():
    a = Quantities({"cpus": 2000, "mem": 512_000})
    b = Quantities({"cpus": 500, "gpus": 1000})
    assert a + b == Quantities({"cpus": 2500, "mem": 512_000, "gpus": 1000})
    assert a - b == Quantities({"cpus": 1500, "mem": 512_000})  # saturating, gpus absent
    assert b - a == Quantities({"gpus": 1000})
    assert a - a == EMPTY_QUANTITIES
    assert a.covers(Quantities({"cpus": 2000}))
    assert not a.covers(b)
    assert a.covers(EMPTY_QUANTITIES)
    assert a.minimum(b) == Quantities({"cpus": 500})
    assert a.as_dict() == {"cpus": 2000, "mem": 512_000}


def test_parse_and_repr():
    q = Quantities.parse("cpus:1; mem:512.5;;")
    assert q == Quantities({"cpus": 1000, "mem": 512_500})
    assert repr(q) == "Quantities(cpus:1;mem:512.5)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cpus", "must look like 'name:value'"),
        (":1", "must look like 'name:value'"),
        ("cpus:1;cpus:2", "quantity 'cpus' is given twice"),
        ("cpus:-1", "quantity 'cpus'.*must not be negative"),
        ("cpus:x", "quantity 'cpus'.*expected a number"),
    ],
)
def test_parse_refuses(text, message):
    with pytest.raises(InvalidResource, match=message):
        Quantities.parse(text)


def test_resources_quantities_count_items():
    r = parse_resources("cpus:1.5;cpus(eng):0.5;ports:[1-10,20-24];zones:{a,b,c}")
    assert r.quantities() == Quantities({"cpus": 2000, "ports": 15_000, "zones": 3000})
    assert r.scalar_quantities() == Quantities({"cpus": 2000})
    assert r.scalar_quantities(unreserved_only=True) == Quantities({"cpus": 1500})


def test_limits_absent_means_unlimited():
    limits = Limits({"cpus": 4000, "mem": 0})
    assert "mem" in limits
    assert "gpus" not in limits
    assert limits.allows({"cpus": 4000, "gpus": 10**9})
    assert not limits.allows({"cpus": 4001})
    assert not limits.allows({"mem": 1})
    assert NO_LIMITS.allows({"cpus": 10**12})
    assert limits.headroom({"cpus": 1500, "mem": 10}) == Limits({"cpus": 2500, "mem": 0})
    assert limits.headroom({"cpus": 9000}) == Limits({"cpus": 0, "mem": 0})
    assert limits == Limits([("cpus", 4000), ("mem", 0)])
    assert hash(limits) == hash(Limits({"mem": 0, "cpus": 4000}))
    assert repr(Limits({"cpus": 1500})) == "Limits(cpus:1.5)"
    with pytest.raises(InvalidResource, match="limit of 'cpus' must not be negative"):
        Limits({"cpus": -1})
