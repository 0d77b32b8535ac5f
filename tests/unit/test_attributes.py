"""Agent attributes: the `--attributes` text form, text rendering and Mesos JSON."""

from __future__ import annotations

import pytest

from agora.core.attributes import (
    Attributes,
    InvalidAttribute,
    attributes_to_json,
    format_attributes,
    parse_attributes,
)


def test_parse_every_kind() -> None:
    attrs = parse_attributes("rack:r1;level:3.5;ports:[1-5,7-9];zones:{a,b}")
    assert attrs["rack"] == "r1"
    assert attrs["level"] == 3500
    assert attrs["ports"] == ((1, 5), (7, 9))
    assert attrs["zones"] == frozenset({"a", "b"})
    assert format_attributes(attrs) == "rack:r1;level:3.5;ports:[1-5, 7-9];zones:{a, b}"
    assert parse_attributes(format_attributes(attrs)) == attrs


def test_texts_are_what_constraints_compare() -> None:
    assert parse_attributes("rack:r1;level:3").texts() == {"rack": "r1", "level": "3"}


def test_json_shapes() -> None:
    assert attributes_to_json(parse_attributes("rack:r1;level:2;p:[1-2];s:{x}")) == [
        {"name": "rack", "type": "TEXT", "text": {"value": "r1"}},
        {"name": "level", "type": "SCALAR", "scalar": {"value": 2.0}},
        {"name": "p", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 2}]}},
        {"name": "s", "type": "SET", "set": {"item": ["x"]}},
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rack", "must look like name:value"),
        ("rack:r1;rack:r2", "given twice"),
        ("rack:", "empty value"),
        ("p:[5-1]", "reversed"),
        ("p:[1-x]", "cannot parse range"),
        ("s:{a,a}", "duplicate set item"),
    ],
)
def test_bad_attributes_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidAttribute, match=problem):
        parse_attributes(text)


def test_equality_and_hash() -> None:
    assert Attributes({"a": "x"}) == parse_attributes("a:x") != Attributes({"a": "y"})
    assert parse_attributes("a:1") == Attributes({"a": 1000})  # numbers are scalars
    assert hash(parse_attributes("a:x")) == hash(Attributes({"a": "x"}))
    assert parse_attributes("") == Attributes()
