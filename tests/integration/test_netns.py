"""The network lab the chaos tests partition agents with: hosts reach the bridge
address, a cut link stalls traffic (no reset), healing restores it, and nothing is
left behind."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from agora.testing.netns import NetworkLab, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

CONNECT = (
    "import socket, sys; "
    "socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3])).close()"
)


def connect_from(lab: NetworkLab, host: int, address: tuple[str, int], timeout_s: float) -> int:
    argv = lab.wrap(
        host, [sys.executable, "-c", CONNECT, address[0], str(address[1]), str(timeout_s)]
    )
    return subprocess.run(argv, capture_output=True, timeout=timeout_s + 10, check=False).returncode


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def test_hosts_reach_the_bridge_until_cut_and_again_when_healed() -> None:
    with NetworkLab(hosts=2) as lab, socket.socket() as server:
        server.bind((lab.bridge_ip, 0))
        server.listen(8)
        address = server.getsockname()
        assert connect_from(lab, 0, address, 3.0) == 0
        assert connect_from(lab, 1, address, 3.0) == 0
        lab.cut(0)
        assert connect_from(lab, 0, address, 1.0) != 0  # times out: packets vanish
        assert connect_from(lab, 1, address, 3.0) == 0  # the other host is unaffected
        lab.heal(0)
        assert connect_from(lab, 0, address, 5.0) == 0
        tag = lab.tag
    assert tag not in links()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert tag not in namespaces.stdout


def test_a_namespace_cannot_reach_the_host_loopback() -> None:
    with NetworkLab(hosts=1) as lab, socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert connect_from(lab, 0, server.getsockname(), 1.0) != 0
