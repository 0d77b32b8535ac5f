"""The Mesos text form: `cpus:4;mem:1024;ports:[31000-32000];disk(role1):100`."""

from __future__ import annotations

import pytest

from agora.core.errors import InvalidResource
from agora.core.resource_meta import (
    DiskInfo,
    DiskSource,
    DiskSourceType,
    Resource,
    ResourceMeta,
    VolumeMode,
    dynamic,
    static,
)
from agora.core.resource_text import format_entry, format_resources, parse_entry, parse_resources
from agora.core.resources import EMPTY, Resources
from agora.core.values import Kind
from tests.unit.resource_strategies import items, ranges, scalar, volume, volume_disk

# ------------------------------------------------------------------------------ parsing


def test_parse_simple_agent_resources():
    r = parse_resources("cpus:4;mem:1024;ports:[31000-32000];disk(role1):100")
    assert r == (
        scalar("cpus", 4)
        + scalar("mem", 1024)
        + ranges("ports", [(31000, 32000)])
        + scalar("disk", 100, reservations=[static("role1")])
    )
    assert r.scalar("cpus") == 4000
    assert r.ranges("ports") == ((31000, 32000),)
    assert r.reserved("role1") == parse_resources("disk(role1):100")


def test_exact_decimal_arithmetic():
    assert parse_resources("cpus:0.1") + parse_resources("cpus:0.2") == parse_resources("cpus:0.3")
    assert parse_resources("cpus:0.3") - parse_resources("cpus:0.1") == parse_resources("cpus:0.2")
    assert str(parse_resources("cpus:0.1") + parse_resources("cpus:0.2")) == "cpus:0.3"


def test_parse_sets_whitespace_and_empty_tokens():
    r = parse_resources("  cpus : 2 ; ; zones:{ b , a };ports:[1-2, 5-6] ;")
    assert r == scalar("cpus", 2) + items("zones", ["a", "b"]) + ranges("ports", [(1, 2), (5, 6)])
    assert parse_resources("") == EMPTY
    assert parse_resources(" ; ") == EMPTY


def test_repeated_names_merge():
    assert parse_resources("cpus:1;cpus:2.5") == parse_resources("cpus:3.5")
    assert parse_resources("ports:[1-5];ports:[6-9]") == parse_resources("ports:[1-9]")
    assert parse_resources("zones:{a};zones:{b}") == parse_resources("zones:{a,b}")


def test_zero_and_empty_values_are_dropped():
    assert parse_resources("cpus:0;ports:[];zones:{}") == EMPTY


def test_default_role_and_star():
    assert parse_resources("cpus:1", default_role="eng") == parse_resources("cpus(eng):1")
    assert parse_resources("cpus(*):1;mem:2", default_role="eng") == parse_resources(
        "cpus:1;mem(eng):2"
    )
    entry = parse_entry("cpus(eng/web):2")
    assert entry == Resource(ResourceMeta("cpus", Kind.SCALAR, (static("eng/web"),)), 2000)


def test_custom_resource_names():
    r = parse_resources("foo:3;gpu_ids:{g0,g1}")
    assert r.scalar("foo") == 3000
    assert r.set_items("gpu_ids") == frozenset({"g0", "g1"})


def test_json_array_is_accepted_too():
    text = '[{"name":"cpus","type":"SCALAR","scalar":{"value":2}}]'
    assert parse_resources(text) == parse_resources("cpus:2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # malformed tokens
        ("cpus", "cannot parse resource 'cpus': expected name\\(role\\):value"),
        ("cpus:", "cannot parse resource 'cpus:'"),
        (":4", "cannot parse resource ':4'"),
        ("cpus(eng:4", "cannot parse resource 'cpus\\(eng:4'"),
        ("cpus(a)(b):4", "cannot parse resource"),
        ("cp us:4", "cannot parse resource"),
        # bad names
        ("cp]us:4", "resource name 'cp]us' has a forbidden character"),
        # bad scalars
        ("cpus:abc", "resource 'cpus': expected a number, got 'abc'"),
        ("cpus:-1", "resource 'cpus': value must not be negative"),
        ("cpus:nan", "resource 'cpus': value must be finite"),
        ("cpus:inf", "resource 'cpus': value must be finite"),
        ("mem:1e999", "resource 'mem': value must be finite"),
        ("mem:1e306", "resource 'mem': value is too large"),
        # bad ranges
        ("ports:[1-5", "resource 'ports': ranges '\\[1-5' must end with '\\]'"),
        ("ports:[a-b]", "resource 'ports': cannot parse range 'a-b'"),
        ("ports:[5]", "resource 'ports': cannot parse range '5'"),
        ("ports:[-1-5]", "resource 'ports': cannot parse range"),
        ("ports:[5-1]", "resource 'ports': range \\[5-1\\] is reversed"),
        ("ports:[1-5,3-7]", "resource 'ports': ranges \\[1-5\\] and \\[3-7\\] overlap"),
        # bad sets
        ("zones:{a,b", "resource 'zones': set '\\{a,b' must end with '\\}'"),
        ("zones:{a,a}", "resource 'zones': duplicate set item 'a'"),
        # bad roles
        ("cpus():1", "resource 'cpus': role must not be empty"),
        ("cpus(-eng):1", "resource 'cpus': role '-eng'"),
        ("cpus(my role):1", "resource 'cpus': role 'my role' must not contain whitespace"),
        ("cpus(eng/*):1", "resource 'cpus': role 'eng/\\*'"),
        ("cpus(..):1", "resource 'cpus': role '..'"),
        # overlapping across tokens is bad input too, not an arithmetic error
        ("ports:[1-5];ports:[3-7]", "ranges overlap at \\[3-5\\]"),
        ("zones:{a};zones:{a,b}", "\\['a'\\] would be counted twice"),
        # malformed JSON given as text
        ("[{", "resources JSON is malformed"),
    ],
)
def test_parse_refuses_bad_input(text, message):
    with pytest.raises(InvalidResource, match=message):
        parse_resources(text)


def test_parse_refuses_bad_default_role():
    with pytest.raises(InvalidResource, match="resource 'cpus': role '-x'"):
        parse_resources("cpus:1", default_role="-x")


# ------------------------------------------------------------------------------ printing


def test_format_simple_is_stable_and_ordered():
    r = parse_resources(
        "zones:{b,a};mem:1024;foo:2;ports:[31000-32000,1-5];disk(role1):100;gpus:1;cpus(eng):0.5;"
        "cpus:4"
    )
    # cpus, gpus, mem, disk, ports, then others by name; unreserved before reserved.
    expected = (
        "cpus:4;cpus(eng):0.5;gpus:1;mem:1024;disk(role1):100;ports:[1-5, 31000-32000];"
        "foo:2;zones:{a, b}"
    )
    assert format_resources(r) == expected
    assert str(r) == expected
    assert repr(r) == f"Resources({expected!r})"
    assert parse_resources(expected) == r
    assert format_resources(EMPTY) == ""


@pytest.mark.parametrize(
    ("amount", "text"), [(0.001, "0.001"), (1.5, "1.5"), (2.25, "2.25"), (1024, "1024")]
)
def test_format_scalars_shortest(amount, text):
    assert format_resources(scalar("cpus", amount)) == f"cpus:{text}"


@pytest.mark.parametrize(
    ("resources", "text"),
    [
        (
            scalar("cpus", 2, reservations=[dynamic("eng", "alice")], alloc="eng/web"),
            "cpus(allocated: eng/web)(reservations: [(DYNAMIC,eng,alice)]):2",
        ),
        (
            scalar("cpus", 2, reservations=[dynamic("eng")]),
            "cpus(reservations: [(DYNAMIC,eng)]):2",
        ),
        (
            scalar("cpus", 2, reservations=[dynamic("eng", "alice", (("b", "2"), ("a", None)))]),
            "cpus(reservations: [(DYNAMIC,eng,alice,{a, b: 2})]):2",
        ),
        (
            scalar(
                "cpus",
                2,
                reservations=[static("eng"), dynamic("eng/web"), dynamic("eng/web/db", "bob")],
            ),
            "cpus(reservations: [(STATIC,eng),(DYNAMIC,eng/web),(DYNAMIC,eng/web/db,bob)]):2",
        ),
        (scalar("cpus", 1, alloc="eng"), "cpus(allocated: eng):1"),
        (scalar("cpus", 1, revocable=True), "cpus{REV}:1"),
        (scalar("gpus", 1, provider="rp1"), "gpus@rp1:1"),
        (
            volume(64, "v1", [dynamic("r", "p")]),
            "disk(reservations: [(DYNAMIC,r,p)])[v1:data:RW]:64",
        ),
        (
            volume(64, "v1", [dynamic("r", "p")], shared=True),
            "disk(reservations: [(DYNAMIC,r,p)])[v1:data:RW]<SHARED>:64",
        ),
        (
            volume(64, "v1", [dynamic("r", "p")], shared=True, copies=3),
            "disk(reservations: [(DYNAMIC,r,p)])[v1:data:RW]<SHARED x3>:64",
        ),
        (
            scalar(
                "disk",
                10,
                reservations=[static("r")],
                disk=volume_disk(
                    "v2",
                    container_path="logs",
                    mode=VolumeMode.RO,
                    source=DiskSource(DiskSourceType.PATH, "/p1"),
                ),
            ),
            "disk(reservations: [(STATIC,r)])[PATH(/p1):v2:logs:RO]:10",
        ),
        (
            scalar(
                "disk",
                100,
                disk=DiskInfo(source=DiskSource(DiskSourceType.MOUNT, "/mnt/a")),
                provider="rp1",
            ),
            "disk[MOUNT(/mnt/a)]@rp1:100",
        ),
        (
            scalar("disk", 5, disk=DiskInfo(source=DiskSource(DiskSourceType.RAW, id="d1"))),
            "disk[RAW(d1)]:5",
        ),
        (
            scalar("disk", 5, disk=DiskInfo(source=DiskSource(DiskSourceType.BLOCK))),
            "disk[BLOCK]:5",
        ),
    ],
)
def test_format_complex_entries_is_readable(resources, text):
    assert format_resources(resources) == text
    (entry,) = resources
    assert format_entry(entry) == text


def test_format_mixed_collection_is_deterministic():
    r = (
        parse_resources("cpus:1;mem:64")
        + scalar("cpus", 2, reservations=[dynamic("eng", "alice")])
        + scalar("cpus", 1, revocable=True)
        + volume(64, "v1", [static("eng")])
        + ranges("ports", [(1000, 1001)], alloc="eng")
    )
    expected = (
        "cpus:1;cpus{REV}:1;cpus(reservations: [(DYNAMIC,eng,alice)]):2;mem:64;"
        "disk(reservations: [(STATIC,eng)])[v1:data:RW]:64;"
        "ports(allocated: eng):[1000-1001]"
    )
    assert format_resources(r) == expected
    # Entries that differ only in labels with and without a value sort without error.
    labelled = scalar("cpus", 1, reservations=[dynamic("r", None, (("k", None),))]) + scalar(
        "cpus", 1, reservations=[dynamic("r", None, (("k", "v"),))]
    )
    assert format_resources(labelled) == (
        "cpus(reservations: [(DYNAMIC,r,{k})]):1;cpus(reservations: [(DYNAMIC,r,{k: v})]):1"
    )


def test_complex_forms_are_not_parsed_back():
    text = format_resources(scalar("cpus", 2, reservations=[dynamic("eng", "alice")]))
    with pytest.raises(InvalidResource):
        parse_resources(text)


def test_resources_built_twice_print_alike():
    a = Resources(list(parse_resources("cpus:1;mem:2;ports:[1-3];zones:{x,y}")))
    b = Resources(reversed(list(a)))
    assert format_resources(a) == format_resources(b)
