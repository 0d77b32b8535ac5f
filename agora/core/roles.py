"""Role names and the role hierarchy (`eng`, `eng/web`, `eng/web/db`).

Rules follow Mesos (roles.md): a role is non-empty, each `/`-separated component is
non-empty, not `.` or `..`, does not start with `-`, and holds no whitespace or
backspace; `*` is the default role and may not be nested.
"""

from __future__ import annotations

from functools import lru_cache

from agora.core.errors import InvalidRole

DEFAULT_ROLE = "*"

_FORBIDDEN_CHARS = frozenset(" \t\n\r\x0b\x0c\x08")


@lru_cache(maxsize=65536)
def validate_role(role: str) -> str:
    """Return `role` unchanged, or raise InvalidRole naming the broken rule."""
    if not isinstance(role, str):
        raise InvalidRole(f"role must be a string, got {type(role).__name__}")
    if role == DEFAULT_ROLE:
        return role
    if not role:
        raise InvalidRole("role must not be empty")
    if role.startswith("/") or role.endswith("/"):
        raise InvalidRole(f"role {role!r} must not start or end with '/'")
    for component in role.split("/"):
        if not component:
            raise InvalidRole(f"role {role!r} must not contain '//'")
        if component in (".", ".."):
            raise InvalidRole(f"role {role!r} must not have a component '{component}'")
        if component == DEFAULT_ROLE:
            raise InvalidRole(f"role {role!r}: '*' cannot be part of a hierarchical role")
        if component.startswith("-"):
            raise InvalidRole(f"role {role!r}: a component must not start with '-'")
        if _FORBIDDEN_CHARS.intersection(component):
            raise InvalidRole(f"role {role!r} must not contain whitespace or backspace")
    return role


@lru_cache(maxsize=65536)
def ancestors(role: str) -> tuple[str, ...]:
    """Strict ancestors of `role`, nearest first: `a/b/c` -> (`a/b`, `a`)."""
    parts = role.split("/")
    return tuple("/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1))


def is_strict_descendant(role: str, ancestor: str) -> bool:
    """True when `role` lies strictly below `ancestor` in the hierarchy."""
    return role.startswith(ancestor + "/") and ancestor != DEFAULT_ROLE


def is_self_or_descendant(role: str, ancestor: str) -> bool:
    return role == ancestor or is_strict_descendant(role, ancestor)


def top_level(role: str) -> str:
    return role.split("/", 1)[0]


def parent(role: str) -> str | None:
    head, sep, _ = role.rpartition("/")
    return head if sep else None
