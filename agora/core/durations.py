"""Durations as Mesos writes them in flags and executor environments (stout `Duration`)."""

from __future__ import annotations


def stout_duration(seconds: float) -> str:
    """stout Duration text (`5secs`, `15mins`, `250ms`): the largest unit that holds it."""
    nanos = round(seconds * 1e9)
    units = (
        ("weeks", 7 * 86400 * 10**9),
        ("days", 86400 * 10**9),
        ("hrs", 3600 * 10**9),
        ("mins", 60 * 10**9),
        ("secs", 10**9),
        ("ms", 10**6),
        ("us", 10**3),
    )
    for name, size in units:
        if nanos >= size:
            value = nanos / size
            text = f"{value:.6g}" if value != int(value) else str(int(value))
            return f"{text}{name}"
    return f"{nanos}ns"
