"""Resources to and from the Mesos JSON shapes, in all three reservation formats."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from agora.core.errors import InvalidResource
from agora.core.resource_json import (
    ResourceFormat,
    resource_from_json,
    resource_to_json,
    resources_from_json,
    resources_to_json,
)
from agora.core.resource_meta import (
    DiskInfo,
    DiskSource,
    DiskSourceType,
    ReservationType,
    Volume,
    VolumeMode,
    dynamic,
    static,
)
from agora.core.resource_text import parse_resources
from agora.core.resources import EMPTY
from tests.unit.resource_strategies import items, ranges, scalar, volume

POST = ResourceFormat.POST_REFINEMENT
PRE = ResourceFormat.PRE_REFINEMENT
ENDPOINT = ResourceFormat.ENDPOINT


def cpus_json(**extra: Any) -> dict[str, Any]:
    return {"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}, **extra}


# ------------------------------------------------------------------------------- output


def test_value_shapes():
    r = parse_resources("cpus:1.5;ports:[31000-32000,1-2];zones:{b,a}")
    assert resources_to_json(r) == [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.5}},
        {
            "name": "ports",
            "type": "RANGES",
            "ranges": {"range": [{"begin": 1, "end": 2}, {"begin": 31000, "end": 32000}]},
        },
        {"name": "zones", "type": "SET", "set": {"item": ["a", "b"]}},
    ]


@pytest.mark.parametrize(
    ("resources", "post", "pre"),
    [
        (parse_resources("cpus:2"), {}, {"role": "*"}),
        (
            parse_resources("cpus(eng):2"),
            {"reservations": [{"type": "STATIC", "role": "eng"}]},
            {"role": "eng"},
        ),
        (
            scalar("cpus", 2, reservations=[dynamic("eng", "p")]),
            {"reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "p"}]},
            {"role": "eng", "reservation": {"principal": "p"}},
        ),
        (
            scalar("cpus", 2, reservations=[dynamic("eng")]),
            {"reservations": [{"type": "DYNAMIC", "role": "eng"}]},
            {"role": "eng", "reservation": {}},
        ),
        (
            scalar("cpus", 2, reservations=[dynamic("eng", None, (("k", "v"), ("x", None)))]),
            {
                "reservations": [
                    {
                        "type": "DYNAMIC",
                        "role": "eng",
                        "labels": {"labels": [{"key": "k", "value": "v"}, {"key": "x"}]},
                    }
                ]
            },
            {
                "role": "eng",
                "reservation": {"labels": {"labels": [{"key": "k", "value": "v"}, {"key": "x"}]}},
            },
        ),
    ],
)
def test_reservation_formats(resources, post, pre):
    """The table of §4.2: pre-refinement, post-refinement and the endpoint mix."""
    assert resources_to_json(resources, POST) == [cpus_json(**post)]
    assert resources_to_json(resources, PRE) == [cpus_json(**pre)]
    assert resources_to_json(resources, ENDPOINT) == [cpus_json(**post, **pre)]
    for shape in (post, pre, {**post, **pre}):
        assert resources_from_json([cpus_json(**shape)]) == resources


def test_refined_reservations():
    r = scalar("cpus", 2, reservations=[dynamic("eng", "p"), dynamic("eng/web", "q")])
    stack = [
        {"type": "DYNAMIC", "role": "eng", "principal": "p"},
        {"type": "DYNAMIC", "role": "eng/web", "principal": "q"},
    ]
    assert resources_to_json(r, POST) == [cpus_json(reservations=stack)]
    # The endpoint format has no legacy fields for a refined reservation.
    assert resources_to_json(r, ENDPOINT) == [cpus_json(reservations=stack)]
    with pytest.raises(
        InvalidResource, match="'cpus' has a refined reservation, which the pre-refinement"
    ):
        resources_to_json(r, PRE)
    assert resources_from_json([cpus_json(reservations=stack)]) == r


def test_persistent_volume_example_from_the_reference():
    data = {
        "name": "disk",
        "type": "SCALAR",
        "scalar": {"value": 64},
        "reservations": [{"type": "DYNAMIC", "role": "r"}],
        "disk": {
            "persistence": {"id": "v1", "principal": "p"},
            "volume": {"container_path": "data", "mode": "RW"},
        },
    }
    r = resources_from_json([data])
    assert r == volume(64, "v1", [dynamic("r")], principal="p")
    assert resources_to_json(r) == [{**data, "scalar": {"value": 64.0}}]


def test_every_optional_field_round_trips():
    disk = DiskInfo(
        "v1",
        "p",
        Volume("data", VolumeMode.RO, "/host/data"),
        DiskSource(DiskSourceType.PATH, "/p", "id1", "fast", "acme", (("a", "1"),)),
    )
    r = scalar(
        "disk", 64, reservations=[static("r")], disk=disk, shared=True, alloc="r", provider="rp1"
    )
    (out,) = resources_to_json(r, ENDPOINT)
    assert out["disk"] == {
        "persistence": {"id": "v1", "principal": "p"},
        "volume": {"container_path": "data", "mode": "RO", "host_path": "/host/data"},
        "source": {
            "type": "PATH",
            "path": {"root": "/p"},
            "id": "id1",
            "profile": "fast",
            "vendor": "acme",
            "metadata": {"labels": [{"key": "a", "value": "1"}]},
        },
    }
    assert out["shared"] == {}
    assert out["allocation_info"] == {"role": "r"}
    assert out["provider_id"] == {"value": "rp1"}
    assert resources_from_json([out]) == r
    mount = scalar("disk", 5, disk=DiskInfo(source=DiskSource(DiskSourceType.MOUNT, "/m")))
    (out,) = resources_to_json(mount)
    assert out["disk"] == {"source": {"type": "MOUNT", "mount": {"root": "/m"}}}
    assert resources_from_json([out]) == mount


def test_revocable_and_shared_copies():
    rev = scalar("cpus", 1, revocable=True)
    assert resources_to_json(rev) == [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}, "revocable": {}}
    ]
    shared = volume(10, "s", [static("r")], shared=True, copies=3)
    out = resources_to_json(shared)
    assert len(out) == 3  # one JSON entry per copy, as Mesos lists them
    assert all(o["shared"] == {} for o in out)
    assert resources_from_json(out) == shared


def test_single_entry_helpers():
    (entry,) = parse_resources("cpus(eng):0.5")
    data = resource_to_json(entry, ENDPOINT)
    assert data == cpus_json(
        scalar={"value": 0.5}, reservations=[{"type": "STATIC", "role": "eng"}], role="eng"
    )
    assert resource_from_json(data) == entry


# -------------------------------------------------------------------------------- input


def test_lenient_input_forms():
    # Missing reservation type: inferred (principal or labels -> DYNAMIC).
    (e,) = resources_from_json([cpus_json(reservations=[{"role": "eng"}])])
    assert e.meta.reservations[0].type is ReservationType.STATIC
    (e,) = resources_from_json([cpus_json(reservations=[{"role": "eng", "principal": "p"}])])
    assert e.meta.reservations[0].type is ReservationType.DYNAMIC
    # Integers given as strings or integral floats; values as strings.
    r = resources_from_json(
        [
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": "1", "end": 5.0}]}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": "512"}},
        ]
    )
    assert r == parse_resources("ports:[1-5];mem:512")
    # Empty values and empty lists.
    assert resources_from_json([]) == EMPTY
    assert resources_from_json([{"name": "zones", "type": "SET", "set": {}}]) == EMPTY
    assert resources_from_json([cpus_json(reservations=[])]) == parse_resources("cpus:2")
    # Legacy role '*' means unreserved.
    assert resources_from_json([cpus_json(role="*")]) == parse_resources("cpus:2")
    # Labels given in any order compare equal.
    labels_a = {"labels": [{"key": "b", "value": "2"}, {"key": "a", "value": "1"}]}
    labels_b = {"labels": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]}
    assert resources_from_json(
        [cpus_json(reservations=[{"type": "DYNAMIC", "role": "r", "labels": labels_a}])]
    ) == resources_from_json(
        [cpus_json(reservations=[{"type": "DYNAMIC", "role": "r", "labels": labels_b}])]
    )


def test_entries_merge_on_input():
    data = [cpus_json(), cpus_json(), {"name": "zones", "type": "SET", "set": {"item": ["a"]}}]
    assert resources_from_json(data) == scalar("cpus", 4) + items("zones", ["a"])
    data = [
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 2}]}},
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 3, "end": 4}]}},
    ]
    assert resources_from_json(data) == ranges("ports", [(1, 4)])


def _endpoint_volume() -> dict[str, Any]:
    return resources_to_json(volume(64, "v1", [dynamic("r", "p")]), ENDPOINT)[0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # the envelope
        ({"name": "cpus"}, "resources must be a JSON list"),
        ("cpus:1", "resources must be a JSON list"),
        ([3], "resources\\[0\\] must be a JSON object, got int"),
        # name and type
        ([{"type": "SCALAR", "scalar": {"value": 1}}], "resources\\[0\\].name must be a string"),
        (
            [{"name": "cpus", "scalar": {"value": 1}}],
            "resources\\[0\\] 'cpus': type must be SCALAR, RANGES or SET, got None",
        ),
        (
            [{"name": "cpus", "type": "TEXT", "text": {"value": "x"}}],
            "type must be SCALAR, RANGES or SET, got 'TEXT'",
        ),
        ([{"name": "c us", "type": "SCALAR", "scalar": {"value": 1}}], "forbidden character"),
        # value of the wrong kind, or missing
        (
            [{"name": "cpus", "type": "SCALAR", "ranges": {"range": []}}],
            "resources\\[0\\] 'cpus'.scalar must be a JSON object, got NoneType",
        ),
        (
            [{"name": "ports", "type": "RANGES", "scalar": {"value": 1}}],
            "resources\\[0\\] 'ports'.ranges must be a JSON object",
        ),
        (
            [{"name": "zones", "type": "SET", "scalar": {"value": 1}}],
            "resources\\[0\\] 'zones'.set must be a JSON object",
        ),
        (
            [{"name": "cpus", "type": "SCALAR", "scalar": {}}],
            "resources\\[0\\] 'cpus': expected a number, got None",
        ),
        (
            [{"name": "cpus", "type": "SCALAR", "scalar": {"value": "two"}}],
            "'cpus': expected a number, got 'two'",
        ),
        (
            [{"name": "cpus", "type": "SCALAR", "scalar": {"value": True}}],
            "'cpus': expected a number, got True",
        ),
        (
            [{"name": "ports", "type": "RANGES", "ranges": {"range": {"begin": 1}}}],
            "'ports'.ranges.range must be a list",
        ),
        (
            [{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": "x", "end": 2}]}}],
            "'ports' range begin must be an integer, got 'x'",
        ),
        (
            [{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1}]}}],
            "'ports' range end must be an integer, got None",
        ),
        (
            [{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1.5, "end": 2}]}}],
            "range begin must be an integer, got 1.5",
        ),
        (
            [{"name": "zones", "type": "SET", "set": {"item": "ab"}}],
            "'zones'.set.item must be a list",
        ),
        # bad values
        ([cpus_json(scalar={"value": -1})], "'cpus': value must not be negative"),
        ([cpus_json(scalar={"value": math.nan})], "'cpus': value must be finite"),
        ([cpus_json(scalar={"value": math.inf})], "'cpus': value must be finite"),
        (
            [{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 5, "end": 1}]}}],
            "'ports': range \\[5-1\\] is reversed",
        ),
        (
            [
                {
                    "name": "ports",
                    "type": "RANGES",
                    "ranges": {"range": [{"begin": 1, "end": 5}, {"begin": 4, "end": 8}]},
                }
            ],
            "'ports': ranges \\[1-5\\] and \\[4-8\\] overlap",
        ),
        (
            [{"name": "zones", "type": "SET", "set": {"item": ["a", "a"]}}],
            "'zones': duplicate set item 'a'",
        ),
        # overlap across entries is bad input, reported as such
        (
            [
                {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 5}]}},
                {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 5, "end": 6}]}},
            ],
            "ranges overlap at \\[5-5\\]",
        ),
        ([_endpoint_volume(), _endpoint_volume()], "v1:data:RW.*given twice"),
        # reservations
        ([cpus_json(reservations={"role": "eng"})], "'cpus'.reservations must be a list"),
        (
            [cpus_json(reservations=[{"type": "STATIC", "role": "*"}])],
            "resource 'cpus': cannot reserve to the '\\*' role",
        ),
        (
            [cpus_json(reservations=[{"type": "SOMETIMES", "role": "eng"}])],
            "reservations\\[0\\].type must be STATIC or DYNAMIC, got 'SOMETIMES'",
        ),
        ([cpus_json(reservations=[{"type": "STATIC"}])], "reservations\\[0\\].role must be"),
        (
            [cpus_json(reservations=[{"type": "DYNAMIC", "role": "eng", "principal": 5}])],
            "reservations\\[0\\].principal must be a string, got 5",
        ),
        (
            [cpus_json(reservations=[{"role": "eng", "labels": {"labels": [{"value": "v"}]}}])],
            "labels\\[0\\].key must be a string",
        ),
        (
            [cpus_json(reservations=[{"role": "eng", "labels": {"labels": {}}}])],
            "labels must be a list",
        ),
        ([cpus_json(reservations=[{"type": "STATIC", "role": "-x"}])], "role '-x'"),
        (
            [
                cpus_json(
                    reservations=[
                        {"type": "DYNAMIC", "role": "eng"},
                        {"type": "DYNAMIC", "role": "ops"},
                    ]
                )
            ],
            "reservation to 'ops' does not refine the previous reservation to 'eng'",
        ),
        # legacy format
        (
            [cpus_json(role="*", reservation={"principal": "p"})],
            "'cpus': a reservation needs a role other than '\\*'",
        ),
        ([cpus_json(reservation={"principal": "p"})], "a reservation needs a role other than"),
        ([cpus_json(role=5)], "'cpus'.role must be a string, got 5"),
        ([cpus_json(role="eng", reservation=[])], "'cpus'.reservation must be a JSON object"),
        # endpoint format that contradicts itself
        (
            [cpus_json(role="ops", reservations=[{"type": "STATIC", "role": "eng"}])],
            "'cpus': role 'ops' contradicts the reservation to 'eng'",
        ),
        (
            [cpus_json(role="*", reservations=[{"type": "STATIC", "role": "eng"}])],
            "'cpus': role '\\*' contradicts reservations",
        ),
        # allocation info, provider, disk, revocable, shared
        ([cpus_json(allocation_info={"role": "a b"})], "'cpus': allocation role 'a b'"),
        ([cpus_json(allocation_info="eng")], "allocation_info must be a JSON object"),
        ([cpus_json(provider_id={"id": "x"})], "provider_id.value must be a string"),
        (
            [cpus_json(reservations=[{"type": "STATIC", "role": "r"}], revocable={})],
            "'cpus': revocable resources cannot be reserved",
        ),
        ([cpus_json(shared={})], "'cpus': only persistent volumes can be shared"),
        (
            [
                cpus_json(
                    reservations=[{"type": "STATIC", "role": "r"}],
                    disk={"persistence": {"id": "v"}, "volume": {"container_path": "d"}},
                )
            ],
            "'cpus': disk info is only allowed on 'disk' scalars",
        ),
        (
            [
                {
                    "name": "disk",
                    "type": "SCALAR",
                    "scalar": {"value": 1},
                    "disk": {"persistence": {"id": "v"}, "volume": {"container_path": "d"}},
                }
            ],
            "persistent volume 'v': cannot be created from unreserved disk",
        ),
        (
            [
                {
                    "name": "disk",
                    "type": "SCALAR",
                    "scalar": {"value": 1},
                    "role": "r",
                    "disk": {"persistence": {"id": "v"}, "volume": {"container_path": "d"}},
                    "revocable": {},
                }
            ],
            "revocable resources cannot be reserved",
        ),
        (
            [
                {
                    "name": "disk",
                    "type": "SCALAR",
                    "scalar": {"value": 1},
                    "role": "r",
                    "disk": {"persistence": {}, "volume": {"container_path": "d"}},
                }
            ],
            "'disk'.disk.persistence.id must be a string",
        ),
        (
            [
                {
                    "name": "disk",
                    "type": "SCALAR",
                    "scalar": {"value": 1},
                    "role": "r",
                    "disk": {"persistence": {"id": "v"}, "volume": {"mode": "RW"}},
                }
            ],
            "'disk'.disk.volume.container_path must be a string",
        ),
        (
            [
                {
                    "name": "disk",
                    "type": "SCALAR",
                    "scalar": {"value": 1},
                    "role": "r",
                    "disk": {
                        "persistence": {"id": "v"},
                        "volume": {"container_path": "d", "mode": "RX"},
                    },
                }
            ],
            "'disk'.disk.volume.mode must be RW or RO, got 'RX'",
        ),
        (
            [
                {
                    "name": "disk",
                    "type": "SCALAR",
                    "scalar": {"value": 1},
                    "disk": {"source": {"type": "TAPE"}},
                }
            ],
            "'disk'.disk.source.type must be PATH, MOUNT, BLOCK or RAW",
        ),
        (
            [
                {
                    "name": "disk",
                    "type": "SCALAR",
                    "scalar": {"value": 1},
                    "disk": {"source": {"type": "MOUNT"}},
                }
            ],
            "disk source MOUNT needs a root path",
        ),
        (
            [{"name": "disk", "type": "SCALAR", "scalar": {"value": 1}, "disk": []}],
            "'disk'.disk must be a JSON object, got list",
        ),
    ],
)
def test_malformed_json_is_refused_naming_the_field(data, message):
    with pytest.raises(InvalidResource, match=message):
        resources_from_json(copy.deepcopy(data))


def test_error_path_names_the_entry():
    with pytest.raises(InvalidResource, match=r"offer.resources\[1\] 'mem'"):
        resources_from_json(
            [cpus_json(), {"name": "mem", "type": "SCALAR", "scalar": {"value": -1}}],
            what="offer.resources",
        )
