"""Master failover: N simulated agents, each with 10 running tasks across 5 frameworks,
re-register with a newly elected master.

    python bench/failover.py                          # 1k and 10k (a socket per agent),
                                                      # 10k and 40k (multiplexed)
    python bench/failover.py --agents 10000 --mode socket --repeat 5 --json
    python bench/failover.py --agents 40000 --mode mux --agents-per-socket 1000
    python bench/failover.py --zk --masters 3 --agents 10000 --zk-session-timeout-s 4

Workload: Mesos's failover benchmark (performance working group, Dec 2017): agents of
`cpus:20;mem:10240`, each reporting 10 running tasks of `cpus:0.1;mem:5` with 10 small
labels across 5 frameworks, no executors (agora/testing/swarm/workload.py). The agents
are agora.testing.swarm processes (thousands of agents per process on one event loop,
speaking the real agent channel to the real master over loopback), run on this host
beside the master, so the agents' CPU competes with the master's.

Each size: start `agora master --work-dir D` (SQLite registry); the agents register
(REGISTER; admitted to the registry). Then, --repeat times: encode each agent's
re-registration in advance (a swarm agent's report does not change, and preparing it
while timed would measure the swarm); SIGKILL the master; start a new master process
on the same work dir and port, which recovers the registry (every agent "recovered");
once it serves, tell every swarm that a new leader is known (as ZooKeeper tells real
agents) and time until the last agent has its REREGISTERED.

Figures (medians over the repeats):
  leader_failover_s  SIGKILL of the leader -> the new leader serving (/metrics/snapshot
                     says master/elected: the registry loaded and the master leading).
                     Single master (default): a new process on the same work dir, so this
                     is process start, imports and the SQLite registry's load. With --zk
                     (HA): --masters masters elect a leader through a local ZooKeeper, the
                     registry in ZooKeeper; a standby leads once the dead leader's session
                     expires (--zk-session-timeout-s, 10 s as in Mesos) and it has loaded
                     the registry. `masters()` picks one or the other.
  reregister_s       the leader known -> the last agent re-registered, with phases:
    connect_s          -> every socket open and every hello sent
    first_ack_s        -> the first REREGISTERED
    p50_ack_s          -> half of the agents re-registered
  master_cpu_s, swarm_cpu_s: CPU seconds of the new master and of the swarm processes
  during the re-registration (master_start_cpu_s: the master's own start-up), and the
  master's resident memory once every agent is back (master_rss_mb).

Socket per agent vs multiplexed: this host allows 20,000 open files per process (soft
= hard, and the hard limit cannot be raised), so 40,000 agents cannot each hold a
socket into one master. --mode socket gives every simulated agent its own WebSocket,
exactly the real agent's protocol; --mode mux carries --agents-per-socket agents per
WebSocket over the multiplexed agent channel (`Agora-Agent-Mux: 1`, each agent its own
connection to the master core; agora/wire/agent_mux.py). The default run does 10,000
both ways to compare them. With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import psutil  # type: ignore[import-untyped]

from agora.testing.zookeeper import ZooKeeperEnsemble

DEFAULT_RUNS = [(1_000, "socket"), (10_000, "socket"), (10_000, "mux"), (40_000, "mux")]
TARGET_S = {10_000: 3.0, 40_000: 15.0}  # the targets on this machine
MESOS_1_5_S = {1_000: 1.0, 10_000: 4.5, 40_000: 19.0}  # 2015 laptop (perf WG chart)
CONNECTIONS_PER_SOURCE_IP = 20_000  # of the 28k ephemeral ports, TIME_WAIT included
SOCKETS_PER_SWARM = 15_000  # below the 20k open-file limit of a swarm process


def cpu_s(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def rss_mb(pid: int) -> float:
    try:
        return float(psutil.Process(pid).memory_info().rss) / (1 << 20)
    except psutil.NoSuchProcess:
        return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def elected(address: str) -> bool:
    """The master at `address` answers and leads (every master answers the metrics;
    only the leader, its registry loaded, says `master/elected` 1)."""
    try:
        return bool(get_json(address, "/metrics/snapshot", 2.0).get("master/elected") == 1.0)
    except (OSError, ValueError):
        return False


def get_json(address: str, path: str, timeout_s: float = 120.0) -> Any:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


# -------------------------------------------------------------------------- masters


class MasterSet(Protocol):
    """The masters of a run, and what the benchmark does to them."""

    address: str

    def start(self) -> None: ...

    def fail_over(self) -> float:
        """Kill the leader; return once a new leader serves at `address`: the seconds
        from the kill to serving (leader_failover_s)."""
        ...

    def leader_pid(self) -> int: ...

    def stop(self) -> None: ...


class MasterProcess:
    """One `agora master` on its own port and work dir, which can be killed and started
    again there."""

    def __init__(self, work_dir: Path, args: Sequence[str], python: str = sys.executable) -> None:
        self.work_dir = work_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.args = list(args)
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None
        work_dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        command = [self.python, "-m", "agora", "master", "--port", str(self.port)]
        command += ["--work-dir", str(self.work_dir), "--log-level", "warning", *self.args]
        with open(self.work_dir / "master.log", "ab") as log:
            # Run from the work dir: `-m agora` is then the interpreter's own install,
            # not whatever checkout the bench was started in.
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self.work_dir
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if not self.exited():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_leader(masters: Sequence[MasterProcess], timeout_s: float) -> MasterProcess:
    """The first of `masters` to say it is elected (and so has its registry loaded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for master in masters:
            if not master.exited() and elected(master.address):
                return master
        if all(master.exited() for master in masters):
            logs = ", ".join(str(m.work_dir / "master.log") for m in masters)
            raise RuntimeError(f"every master exited; see {logs}")
        if time.monotonic() > deadline:
            raise TimeoutError("no master was elected")
        time.sleep(0.005)


class SingleMaster:
    """One `agora master` on a fixed port and work dir. Failing over is SIGKILL and a
    new process on the same work dir and port: it recovers the SQLite registry, so every
    agent is "recovered" and expected to re-register, as with a newly elected master."""

    def __init__(
        self, work_dir: Path, args: Sequence[str] = (), python: str = sys.executable
    ) -> None:
        self.master = MasterProcess(work_dir / "master", args, python)
        self.address = self.master.address

    def start(self) -> None:
        self.master.start()
        wait_leader([self.master], 120.0)

    def fail_over(self) -> float:
        killed = time.monotonic()
        self.master.kill()
        self.start()
        return time.monotonic() - killed

    def leader_pid(self) -> int:
        return self.master.pid

    def stop(self) -> None:
        self.master.stop()


class ZooKeeperMasters:
    """HA: a standalone ZooKeeper (agora.testing.zookeeper, Debian's package) and
    `count` masters with `--zk`, the registry in ZooKeeper. Failing over SIGKILLs the
    leader and waits until a standby leads and serves: the dead leader's ZooKeeper
    session must expire first (`--zk-session-timeout-s`, 10 s as Mesos's default), then
    the standby is elected and loads the registry. The killed master then starts again,
    as a standby (not timed)."""

    def __init__(
        self,
        work_dir: Path,
        count: int,
        session_timeout_s: float,
        args: Sequence[str],
        python: str = sys.executable,
    ) -> None:
        # Ticks of 0.5 s: ZooKeeper grants session timeouts from 2 ticks up.
        self.zookeeper = ZooKeeperEnsemble(size=1, work_dir=work_dir / "zk", tick_time_ms=500)
        self.count = count
        self.session_timeout_s = session_timeout_s
        self.args = list(args)
        self.python = python
        self.masters: list[MasterProcess] = []
        self.leader: MasterProcess | None = None
        self.work_dir = work_dir
        self.address = ""

    def start(self) -> None:
        self.zookeeper.start()
        flags = ["--zk", self.zookeeper.url("/agora")]
        flags += ["--zk-session-timeout-s", str(self.session_timeout_s), *self.args]
        self.masters = [
            MasterProcess(self.work_dir / f"master-{i}", flags, self.python)
            for i in range(self.count)
        ]
        for master in self.masters:
            master.start()
        self._lead(wait_leader(self.masters, 120.0))

    def _lead(self, master: MasterProcess) -> None:
        self.leader = master
        self.address = master.address

    def fail_over(self) -> float:
        assert self.leader is not None
        dead = self.leader
        killed = time.monotonic()
        dead.kill()
        standbys = [m for m in self.masters if m is not dead]
        self._lead(wait_leader(standbys, self.session_timeout_s + 120.0))
        elapsed = time.monotonic() - killed
        dead.start()
        return elapsed

    def leader_pid(self) -> int:
        assert self.leader is not None
        return self.leader.pid

    def stop(self) -> None:
        for master in self.masters:
            master.stop()
        self.zookeeper.stop()


def masters(args: argparse.Namespace, work_dir: Path) -> MasterSet:
    """The masters to fail over: one restarted on its registry, or with `--zk` several
    electing a leader through ZooKeeper. Whichever, `failover_round` tells the swarms
    the new leader's address (`Swarms.connect`), as the ZooKeeper detector tells real
    agents."""
    python = args.master_python
    if args.zk:
        timeout_s = args.zk_session_timeout_s
        return ZooKeeperMasters(work_dir, args.masters, timeout_s, args.master_arg, python)
    return SingleMaster(work_dir, args.master_arg, python)


# --------------------------------------------------------------------------- swarms


class SwarmProcess:
    """`python -m agora.testing.swarm`, spoken to over its stdin and stdout."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = open(log, "ab")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put(json.loads(line))
        self.events.put({"event": "exited"})

    def send(self, op: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        self.process.stdin.flush()

    def expect(self, event: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                got = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"swarm: no {event!r} within {timeout_s:g} s") from None
            if got["event"] == event:
                return got
            if got["event"] in ("error", "exited"):
                raise RuntimeError(f"swarm: {got}")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("exit")
                self.process.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.log.close()


class Swarms:
    """The swarm processes of a run, the agents split evenly between them."""

    def __init__(
        self, args: argparse.Namespace, agents: int, mode: str, address: str, work_dir: Path
    ) -> None:
        muxed = mode == "mux"
        clients = args.clients or (1 if muxed else math.ceil(agents / SOCKETS_PER_SWARM))
        sockets_each = math.ceil(agents / clients)
        if not muxed:
            sockets_each *= args.repeat + 1  # every repeat reconnects; TIME_WAIT lingers
        ips = max(1, math.ceil(sockets_each / CONNECTIONS_PER_SOURCE_IP))
        self.processes = []
        first = 0
        for index in range(clients):
            count = agents // clients + (index < agents % clients)
            command = [sys.executable, "-m", "agora.testing.swarm", "--master", address]
            command += ["--agents", str(count), "--first-index", str(first)]
            if muxed:
                command += ["--agents-per-socket", str(args.agents_per_socket)]
            elif ips > 1:
                for ip in range(ips):
                    command += ["--source-ip", f"127.0.0.{2 + (index * ips + ip) % 250}"]
            log = work_dir / f"swarm-{index}.log"
            self.processes.append(SwarmProcess(command, log))
            first += count
        for process in self.processes:
            process.expect("ready", 60.0)

    def each(self, op: str, event: str, timeout_s: float, **fields: Any) -> list[dict[str, Any]]:
        for process in self.processes:
            process.send(op, **fields)
        return [process.expect(event, timeout_s) for process in self.processes]

    def connect(self, master: str, timeout_s: float) -> list[dict[str, Any]]:
        """Tell every swarm where the leader is (as ZooKeeper tells agents); the agents
        (re)register; the swarms' timings once all have."""
        return self.each("connect", "registered", timeout_s, master=master)

    def pids(self) -> list[int]:
        return [p.process.pid for p in self.processes]

    def close(self) -> None:
        for process in self.processes:
            process.close()


# -------------------------------------------------------------------------- a run


@dataclass
class Round:
    leader_failover_s: float
    reregister_s: float
    connect_s: float
    first_ack_s: float
    p50_ack_s: float
    latency_s_p99: float
    master_cpu_s: float
    master_start_cpu_s: float
    swarm_cpu_s: float
    master_rss_mb: float


def failover_round(master_set: MasterSet, swarms: Swarms, timeout_s: float) -> Round:
    swarms.each("prepare", "prepared", timeout_s)
    leader_failover_s = master_set.fail_over()
    for process in swarms.processes:  # every agent noticed the old leader is gone
        process.expect("disconnected", timeout_s)
    master_pid = master_set.leader_pid()
    master_before = cpu_s(master_pid)
    swarm_before = sum(cpu_s(pid) for pid in swarms.pids())
    go = time.monotonic()
    done = swarms.connect(master_set.address, timeout_s)
    master_after = cpu_s(master_pid)
    swarm_after = sum(cpu_s(pid) for pid in swarms.pids())
    return Round(
        leader_failover_s=leader_failover_s,
        reregister_s=max(d["last_acked"] for d in done) - go,
        connect_s=max(d["last_sent"] for d in done) - go,
        first_ack_s=min(d["first_acked"] for d in done) - go,
        p50_ack_s=statistics.median(d["median_acked"] for d in done) - go,
        latency_s_p99=max(d["latency_s_p99"] for d in done),
        master_cpu_s=master_after - master_before,
        master_start_cpu_s=master_before,
        swarm_cpu_s=swarm_after - swarm_before,
        master_rss_mb=rss_mb(master_pid),
    )


def check_master(address: str, agents: int, tasks: int) -> dict[str, float]:
    """What the new master knows once every agent has its answer."""
    metrics = get_json(address, "/metrics/snapshot")
    seen = {
        "agents_active": metrics.get("master/slaves_active", 0.0),
        "tasks_running": metrics.get("master/task_running", 0.0),
        "frameworks": metrics.get("master/frameworks_active", 0.0),
    }
    if seen["agents_active"] != agents or seen["tasks_running"] != tasks:
        raise RuntimeError(f"the master knows {seen}, expected {agents} agents, {tasks} tasks")
    return seen


def run_size(args: argparse.Namespace, agents: int, mode: str) -> dict[str, Any]:
    work_dir = Path(tempfile.mkdtemp(prefix=f"failover-{agents}-{mode}-", dir=args.work_dir))
    master_set = masters(args, work_dir)
    master_set.start()
    swarms: Swarms | None = None
    try:
        swarms = Swarms(args, agents, mode, master_set.address, work_dir)
        started = time.monotonic()
        swarms.connect(master_set.address, args.timeout_s)
        register_s = time.monotonic() - started
        rounds = []
        for index in range(args.repeat):
            result = failover_round(master_set, swarms, args.timeout_s)
            rounds.append(result)
            if not args.json:
                print_round(agents, mode, index, result)
        check_master(master_set.address, agents, agents * args.tasks_per_agent)
    finally:
        if swarms is not None:
            swarms.close()
        master_set.stop()
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    out: dict[str, Any] = {
        "agents": agents,
        "tasks": agents * args.tasks_per_agent,
        "mode": mode,
        "sockets": agents if mode == "socket" else math.ceil(agents / args.agents_per_socket),
        "swarm_processes": len(swarms.processes),
        "register_s": register_s,
        "repeat": args.repeat,
    }
    for name in Round.__dataclass_fields__:
        out[name] = statistics.median(getattr(r, name) for r in rounds)
    out["reregister_s_all"] = [r.reregister_s for r in rounds]
    if agents in TARGET_S:
        out["target_s"] = TARGET_S[agents]
    if agents in MESOS_1_5_S:
        out["mesos_1_5_s"] = MESOS_1_5_S[agents]
    return out


def print_round(agents: int, mode: str, index: int, r: Round) -> None:
    print(
        f"{agents:>6} agents {mode:<6} run {index + 1}: re-registered in {r.reregister_s:.2f} s "
        f"(sockets open + hellos sent {r.connect_s:.2f} s, first ack {r.first_ack_s:.2f} s, "
        f"half {r.p50_ack_s:.2f} s); leader failover {r.leader_failover_s:.2f} s; "
        f"CPU: master {r.master_cpu_s:.2f} s (+{r.master_start_cpu_s:.2f} s start), "
        f"swarm {r.swarm_cpu_s:.2f} s; master RSS {r.master_rss_mb:.0f} MB",
        flush=True,
    )


def print_summary(results: list[dict[str, Any]], repeat: int) -> None:
    print(f"\nmedians of {repeat} failovers (load average {os.getloadavg()[0]:.2f}):")
    print(
        f"{'agents':>7} {'tasks':>8} {'mode':<6} {'sockets':>7} {'reregister':>10} "
        f"{'target':>6} {'mesos1.5':>8} {'failover':>8} {'master cpu':>10} {'swarm cpu':>9}"
    )
    for r in results:
        target = f"{r['target_s']:.1f}" if "target_s" in r else "-"
        mesos = f"{r['mesos_1_5_s']:.1f}" if "mesos_1_5_s" in r else "-"
        print(
            f"{r['agents']:>7} {r['tasks']:>8} {r['mode']:<6} {r['sockets']:>7} "
            f"{r['reregister_s']:>9.2f}s {target:>6} {mesos:>8} "
            f"{r['leader_failover_s']:>7.2f}s {r['master_cpu_s']:>9.2f}s "
            f"{r['swarm_cpu_s']:>8.2f}s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, action="append", help="repeatable")
    parser.add_argument(
        "--mode",
        choices=["socket", "mux"],
        default=None,
        help="a socket per agent or multiplexed (default: socket up to 10,000, mux above)",
    )
    parser.add_argument("--agents-per-socket", type=int, default=1000, help="with --mode mux")
    parser.add_argument("--clients", type=int, default=None, help="swarm processes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks-per-agent", type=int, default=10)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--master-arg", action="append", default=[], help="extra master flag")
    parser.add_argument(
        "--master-python",
        default=sys.executable,
        help="the interpreter that runs the masters (another checkout's .venv/bin/python "
        "compares its master with this one under the same swarms)",
    )
    parser.add_argument(
        "--zk", action="store_true", help="HA: masters elected through a local ZooKeeper"
    )
    parser.add_argument("--masters", type=int, default=3, help="with --zk")
    parser.add_argument("--zk-session-timeout-s", type=float, default=10.0, help="with --zk")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work dirs (logs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.tasks_per_agent != 10:
        parser.error("the swarm's workload has 10 tasks per agent")
    if args.agents:
        runs = [(n, args.mode or ("socket" if n <= 10_000 else "mux")) for n in args.agents]
    else:
        runs = DEFAULT_RUNS if args.mode is None else [(n, args.mode) for n, _ in DEFAULT_RUNS]
    results = [run_size(args, agents, mode) for agents, mode in runs]
    summary: dict[str, Any] = {"runs": results, "load_average": os.getloadavg()[0]}
    headline = next((r for r in results if r["agents"] == 10_000), results[-1])
    summary["reregister_s"] = headline["reregister_s"]
    summary["leader_failover_s"] = headline["leader_failover_s"]
    summary["headline"] = f"{headline['agents']} agents, {headline['mode']}"
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(results, args.repeat)


if __name__ == "__main__":
    main()
