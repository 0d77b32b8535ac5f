"""Typed errors raised by the pure core.

Every error names what is wrong so that the shells can turn it into an HTTP 400
or a task state with a message without guessing.
"""

from __future__ import annotations


class AgoraError(Exception):
    """Base class of every error the core raises on purpose."""


class InvalidResource(AgoraError, ValueError):  # noqa: N818 - reads as a sentence
    """A resource description is malformed (bad value, bad reservation, bad disk...)."""


class InvalidRole(AgoraError, ValueError):  # noqa: N818
    """A role name breaks Mesos's role naming rules."""


class ResourceArithmeticError(AgoraError, ValueError):
    """`a - b` where `a` does not contain `b`, or `a + b` that would count a port twice."""


class OperationError(AgoraError, ValueError):
    """An offer operation (RESERVE, UNRESERVE, CREATE, DESTROY) cannot be applied."""


class InsufficientResources(OperationError):  # noqa: N818
    """The resources an operation consumes are not all present."""


class IllegalTransition(AgoraError, RuntimeError):  # noqa: N818
    """A state machine was asked to move along an edge its table does not have."""
