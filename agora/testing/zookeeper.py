"""Real ZooKeeper servers for tests and local HA clusters: a standalone server or an N-node
ensemble on 127.0.0.1, from Debian's `zookeeper` package (ZooKeeper 3.8, run with Java).

    with ZooKeeperEnsemble(size=3) as zk:
        url = zk.url("/mesos")               # zk://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/mesos
        zk.kill_node(zk.leader_index())      # kill -9 the ZooKeeper leader
        zk.restart_node(0)

Every node gets dynamic ports, a data directory, a log directory (`zookeeper.log` from log4j,
`zookeeper.out` for the JVM's own output) under the work directory, a small heap, and the
admin server off. `start()` waits until every node answers `srvr` with its mode (not `ruok`,
which answers before the server serves). `stop()` stops every node (SIGTERM, then SIGKILL) so
nothing outlives the ensemble. `missing_zookeeper()` says why servers cannot run here (the
Debian package or Java not installed), and ZooKeeperMissing is raised with that message.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agora.testing.cluster import wait_until

DEBIAN_PACKAGE = "zookeeper"
JARS = (
    Path("/usr/share/java/zookeeper.jar"),  # its manifest's Class-Path names its dependencies
    Path("/usr/share/java/slf4j-log4j12.jar"),  # without these two it logs nothing
    Path("/usr/share/java/log4j-1.2.jar"),
)
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
SERVING_MODES = ("standalone", "leader", "follower", "observer")
LOG4J = """\
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zookeeper.log.dir}/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] %m%n
"""


class ZooKeeperMissing(RuntimeError):  # noqa: N818 (reads as a sentence)
    """ZooKeeper cannot run on this machine; the message says what to install."""


class ZooKeeperStartError(RuntimeError):
    """A ZooKeeper node did not come up (the message ends with its log tail)."""


def missing_zookeeper(java: str = "java", jars: Sequence[Path] = JARS) -> str | None:
    """Why ZooKeeper servers cannot run here, or None when they can."""
    absent = [str(jar) for jar in jars if not jar.is_file()]
    if absent:
        return (
            f"ZooKeeper is not installed ({', '.join(absent)} missing): install Debian's "
            f"'{DEBIAN_PACKAGE}' package (apt-get install --no-install-recommends "
            f"{DEBIAN_PACKAGE}; bin/test installs it)"
        )
    if shutil.which(java) is None:
        return f"no '{java}' on PATH: ZooKeeper needs Java (Debian's default-jre-headless)"
    return None


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def four_letter_word(
    port: int, word: str = "srvr", timeout_s: float = 1.0, host: str = "127.0.0.1"
) -> str | None:
    """The server's answer to a four-letter command, or None if it does not answer."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode(errors="replace")


def _die_with_parent() -> list[str]:
    """A command prefix that makes the server die when we do (kill -9 of a test run must not
    leave Java processes behind): util-linux's setpriv sets the parent-death signal and
    execs. The signal follows the thread that spawned the child, so only the main thread's
    children get it; no Python runs between fork and exec (kazoo's threads make that unsafe)."""
    if shutil.which("setpriv") and threading.current_thread() is threading.main_thread():
        return ["setpriv", "--pdeathsig", "KILL", "--"]
    return []


@dataclass
class ZooKeeperNode:
    myid: int
    directory: Path
    host: str = "127.0.0.1"  # where clients connect
    client_port: int = 0
    quorum_port: int = 0
    election_port: int = 0
    popen: subprocess.Popen[bytes] | None = None
    wanted: bool = False  # started and not deliberately stopped or killed since
    history: list[int] = field(default_factory=list)  # pids of earlier incarnations

    @property
    def address(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def log_dir(self) -> Path:
        return self.directory / "log"

    def mode(self) -> str | None:
        """standalone / leader / follower / observer while serving, else None."""
        answer = four_letter_word(self.client_port, host=self.host) if self.alive else None
        for line in (answer or "").splitlines():
            if line.startswith("Mode: ") and line[6:].strip() in SERVING_MODES:
                return line[6:].strip()
        return None

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for name in ("zookeeper.out", "zookeeper.log"):
            try:
                text = (self.log_dir / name).read_text(errors="replace")
            except OSError:
                continue
            parts.append(f"--- zk{self.myid} {name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or f"--- zk{self.myid}: no log"

    def signal(self, signum: int, timeout_s: float) -> None:
        """Send `signum` and wait for the exit; SIGKILL if it has not exited by `timeout_s`."""
        self.wanted = False
        if self.popen is None or not self.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signum)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


class ZooKeeperEnsemble:
    """`size` ZooKeeper servers on 127.0.0.1 (size 1: standalone; 3: a quorum of three)."""

    def __init__(
        self,
        size: int = 1,
        work_dir: Path | None = None,
        *,
        tick_time_ms: int = 2000,
        heap_mb: int = 256,
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
        force_sync: bool = True,
        java: str = "java",
        host: str = "127.0.0.1",
    ) -> None:
        """`host`: the address clients connect to (a network lab's bridge, so that hosts
        in network namespaces reach it); the nodes talk to each other on 127.0.0.1."""
        if size < 1:
            raise ValueError("a ZooKeeper ensemble needs at least one node")
        self.size = size
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="agora-zookeeper-")).resolve()
        self.tick_time_ms = tick_time_ms
        self.heap_mb = heap_mb
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.force_sync = force_sync
        self.java = java
        self.nodes = [ZooKeeperNode(i + 1, self.work_dir / f"zk{i + 1}", host) for i in range(size)]

    # ----------------------------------------------------------------- addresses

    @property
    def connect_string(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def url(self, path: str = "/mesos", credentials: tuple[str, str] | None = None) -> str:
        """A zk:// URL for this ensemble (`credentials`: digest user and password)."""
        user = f"{credentials[0]}:{credentials[1]}@" if credentials else ""
        return f"zk://{user}{self.connect_string}{path}"

    @property
    def min_session_timeout_s(self) -> float:
        """ZooKeeper clamps session timeouts to [2, 20] ticks."""
        return 2 * self.tick_time_ms / 1000

    # --------------------------------------------------------------------- start

    def start(self) -> ZooKeeperEnsemble:
        reason = missing_zookeeper(self.java)
        if reason:
            raise ZooKeeperMissing(reason)
        for attempt in range(3):
            self._assign_ports()
            try:
                for node in self.nodes:
                    self._launch(node)
                self.wait_serving()
                return self
            except ZooKeeperStartError:
                exited = any(n.popen is not None and n.popen.poll() is not None for n in self.nodes)
                self.stop_nodes()
                if not exited or attempt == 2:
                    raise  # a port taken meanwhile makes a node exit: then try other ports
        raise AssertionError("unreachable")

    def _assign_ports(self) -> None:
        ports = free_ports(3 * self.size)
        for i, node in enumerate(self.nodes):
            node.client_port, node.quorum_port, node.election_port = ports[3 * i : 3 * i + 3]

    def _config(self, node: ZooKeeperNode) -> str:
        lines = [
            f"tickTime={self.tick_time_ms}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={node.directory / 'data'}",
            f"clientPort={node.client_port}",
            f"clientPortAddress={node.host}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,stat,mntr,conf,ruok",
            "maxClientCnxns=0",  # tests open many sessions from 127.0.0.1
            "preAllocSize=4096",  # KB; the default preallocates 64 MB per transaction log
            f"forceSync={'yes' if self.force_sync else 'no'}",
        ]
        if self.size > 1:
            lines += [
                f"server.{n.myid}=127.0.0.1:{n.quorum_port}:{n.election_port}" for n in self.nodes
            ]
        return "\n".join(lines) + "\n"

    def _command(self, node: ZooKeeperNode) -> list[str]:
        conf = node.directory / "conf"
        return [
            *_die_with_parent(),
            self.java,
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # C1 only: starts faster, enough for tests
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            f"-Dzookeeper.log.dir={node.log_dir}",
            "-cp",
            ":".join([str(conf), *map(str, JARS)]),
            MAIN_CLASS,
            str(conf / "zoo.cfg"),
        ]

    def _launch(self, node: ZooKeeperNode) -> None:
        conf = node.directory / "conf"
        for directory in (conf, node.directory / "data", node.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        (conf / "zoo.cfg").write_text(self._config(node))
        (conf / "log4j.properties").write_text(LOG4J)
        (node.directory / "data" / "myid").write_text(f"{node.myid}\n")
        with (node.log_dir / "zookeeper.out").open("ab") as out:
            node.popen = subprocess.Popen(
                self._command(node),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        node.history.append(node.popen.pid)
        node.wanted = True

    def wait_serving(self, timeout_s: float | None = None) -> None:
        """Wait until every node started (and not stopped since) serves, and (ensemble) one
        of them leads; ZooKeeperStartError if one of them exits meanwhile."""
        running = [node for node in self.nodes if node.wanted]

        def serving() -> bool:
            for node in running:
                if not node.alive:
                    raise ZooKeeperStartError(
                        f"ZooKeeper node {node.myid} exited with status {node.popen.returncode}"
                        if node.popen
                        else f"ZooKeeper node {node.myid} is not running"
                    )
            modes = [node.mode() for node in running]
            return all(modes) and (self.size == 1 or modes.count("leader") == 1)

        try:
            wait_until(serving, timeout_s or self.start_timeout_s, "ZooKeeper to serve", 0.05)
        except (TimeoutError, ZooKeeperStartError) as error:
            raise ZooKeeperStartError(f"{error}\n{self.logs()}") from None

    # -------------------------------------------------------------------- faults

    def leader_index(self) -> int:
        """Index in `nodes` of the node that leads the ensemble (or the standalone one)."""
        for index, node in enumerate(self.nodes):
            if node.mode() in ("leader", "standalone"):
                return index
        raise ZooKeeperStartError(f"no ZooKeeper node leads\n{self.logs()}")

    def kill_node(self, index: int) -> None:
        """kill -9 node `index` (its data stays: restart_node brings it back)."""
        self.nodes[index].signal(signal.SIGKILL, self.stop_timeout_s)

    def stop_node(self, index: int) -> None:
        """SIGTERM node `index` and wait for it."""
        self.nodes[index].signal(signal.SIGTERM, self.stop_timeout_s)

    def restart_node(self, index: int, *, wait: bool = True) -> None:
        """Start node `index` again with its ports and data; waits until it serves."""
        node = self.nodes[index]
        if node.alive:
            self.kill_node(index)
        self._launch(node)
        if wait:
            self.wait_serving()

    # ---------------------------------------------------------------------- stop

    def stop_nodes(self) -> None:
        for node in self.nodes:
            node.signal(signal.SIGTERM, self.stop_timeout_s)

    def stop(self) -> None:
        """Stop every node; remove the work directory if this ensemble made it."""
        self.stop_nodes()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def pids(self) -> list[int]:
        """Pids of the nodes running now."""
        return [node.popen.pid for node in self.nodes if node.popen is not None and node.alive]

    def logs(self, lines: int = 30) -> str:
        return "\n".join(node.log_tail(lines) for node in self.nodes)

    def __enter__(self) -> ZooKeeperEnsemble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
