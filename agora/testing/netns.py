"""A small network of test hosts on one machine: a Linux bridge in the root network
namespace and one network namespace per "host", each joined to the bridge by a veth
pair. Processes started in a host's namespace reach the bridge address (where masters
and ZooKeeper listen) and each other, and nothing else; `cut(host)` takes the host's
link down (a network partition: packets vanish, connections stall, nothing is reset)
and `heal(host)` brings it back.

Needs root and iproute2 (`ip`). Names carry a short random tag so that parallel test
runs never collide, and `close()` removes every namespace, link and the bridge.

    with NetworkLab(hosts=3) as lab:
        lab.bridge_ip                      # 10.x.y.1, bind servers here
        lab.host_ip(0)                     # 10.x.y.10
        lab.wrap(0, ["agora", "agent"])    # argv that runs inside host 0's namespace
        lab.cut(0); lab.heal(0)
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass


class NetworkLabError(RuntimeError):
    pass


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2's `ip` (Debian package iproute2)"
    return None


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetworkLabError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    namespace: str
    outer_link: str  # the veth end on the bridge (root namespace): cut here
    ip: str


class NetworkLab:
    def __init__(self, hosts: int) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise NetworkLabError(reason)
        if not 0 < hosts <= 200:
            raise ValueError("a lab has 1 to 200 hosts")
        self.tag = secrets.token_hex(3)
        # A random /24 in 10.200-249.x: parallel labs practically never share one.
        self.prefix = f"10.{200 + int(self.tag[:2], 16) % 50}.{int(self.tag[2:4], 16)}"
        self.bridge = f"agbr{self.tag}"
        self.bridge_ip = f"{self.prefix}.1"
        self.hosts: list[Host] = []
        self._closed = False
        try:
            self._build(hosts)
        except BaseException:
            self.close()
            raise

    def _build(self, count: int) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for index in range(count):
            namespace = f"agns{self.tag}-{index}"
            outer, inner = f"agv{self.tag}o{index}", f"agv{self.tag}i{index}"
            host = Host(namespace, outer, f"{self.prefix}.{10 + index}")
            _ip("netns", "add", namespace)
            self.hosts.append(host)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", namespace)
            _ip("link", "set", outer, "master", self.bridge)
            _ip("link", "set", outer, "up")
            inside = ("netns", "exec", namespace, "ip")
            _ip(*inside, "addr", "add", f"{host.ip}/24", "dev", inner)
            _ip(*inside, "link", "set", inner, "up")
            _ip(*inside, "link", "set", "lo", "up")

    def host_ip(self, index: int) -> str:
        return self.hosts[index].ip

    def wrap(self, index: int, argv: Sequence[str]) -> list[str]:
        """`argv` run inside host `index`'s namespace."""
        return ["ip", "netns", "exec", self.hosts[index].namespace, *argv]

    def cut(self, index: int) -> None:
        _ip("link", "set", self.hosts[index].outer_link, "down")

    def heal(self, index: int) -> None:
        _ip("link", "set", self.hosts[index].outer_link, "up")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for host in self.hosts:
            # Deleting one end of a veth pair deletes both at once; a deleted namespace
            # would take its end along only when the kernel gets round to it.
            subprocess.run(["ip", "link", "del", host.outer_link], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)

    def __enter__(self) -> NetworkLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
