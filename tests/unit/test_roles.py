"""Role names and the role hierarchy (agora.core.roles)."""

from __future__ import annotations

import pytest

from agora.core.errors import InvalidRole
from agora.core.roles import (
    DEFAULT_ROLE,
    ancestors,
    is_self_or_descendant,
    is_strict_descendant,
    parent,
    top_level,
    validate_role,
)


@pytest.mark.parametrize(
    "role", ["*", "eng", "eng/web", "eng/web/db", "a.b", "x-y", "a_b", "r1", "eng/.hidden", "a-"]
)
def test_valid_roles(role):
    assert validate_role(role) == role


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("", "must not be empty"),
        (".", "must not have a component '.'"),
        ("..", "must not have a component '..'"),
        ("eng/..", "must not have a component '..'"),
        ("eng/./web", "must not have a component '.'"),
        ("-eng", "must not start with '-'"),
        ("eng/-web", "must not start with '-'"),
        ("my role", "whitespace"),
        ("eng\tweb", "whitespace"),
        ("eng\nweb", "whitespace"),
        ("eng\x08", "backspace"),
        ("/eng", "must not start or end with '/'"),
        ("eng/", "must not start or end with '/'"),
        ("eng//web", "must not contain '//'"),
        ("eng/*", "'\\*' cannot be part of a hierarchical role"),
        ("*/eng", "'\\*' cannot be part of a hierarchical role"),
    ],
)
def test_invalid_roles(role, message):
    with pytest.raises(InvalidRole, match=message):
        validate_role(role)


def test_invalid_role_message_names_the_role():
    with pytest.raises(InvalidRole, match="'-bad'"):
        validate_role("-bad")


def test_non_string_role():
    with pytest.raises(InvalidRole, match="must be a string"):
        validate_role(5)


def test_ancestors_nearest_first():
    assert ancestors("a/b/c") == ("a/b", "a")
    assert ancestors("a") == ()
    assert ancestors(DEFAULT_ROLE) == ()


@pytest.mark.parametrize(
    ("role", "ancestor", "strict"),
    [
        ("eng/web", "eng", True),
        ("eng/web/db", "eng", True),
        ("eng/web/db", "eng/web", True),
        ("eng", "eng", False),
        ("eng", "eng/web", False),
        ("engineering", "eng", False),
        ("ops/web", "eng", False),
        ("eng", "*", False),
        ("eng/web", "*", False),
    ],
)
def test_descendants(role, ancestor, strict):
    assert is_strict_descendant(role, ancestor) is strict
    assert is_self_or_descendant(role, ancestor) is (strict or role == ancestor)


def test_top_level_and_parent():
    assert top_level("eng/web/db") == "eng"
    assert top_level("eng") == "eng"
    assert parent("eng/web/db") == "eng/web"
    assert parent("eng") is None
