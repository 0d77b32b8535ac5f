"""Process limits a server that holds many connections must set for itself.

A master holds a socket per agent (and per framework stream): the usual soft limit of
1,024 open files would refuse agents long before the machine is busy, and the kernel's
default listen backlog that asyncio passes (100) drops connection attempts when a
whole cluster reconnects at once after a failover; a dropped SYN is retried only after
a second or more, which turns a herd of reconnects into seconds of waiting.
"""

from __future__ import annotations

import resource
import socket
from pathlib import Path

SOMAXCONN_PATH = Path("/proc/sys/net/core/somaxconn")


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit (which only a
    privileged process may raise, and some hosts forbid even that); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def listen_backlog() -> int:
    """The largest accept backlog the kernel grants (net.core.somaxconn): the queue of
    connections that have arrived but that the server has not accepted yet."""
    try:
        return max(socket.SOMAXCONN, int(SOMAXCONN_PATH.read_text().strip()))
    except (OSError, ValueError):
        return socket.SOMAXCONN
