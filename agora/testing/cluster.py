"""LocalCluster: a real `agora master` and N `agora agent` processes on 127.0.0.1.

    with LocalCluster(agents=2) as cluster:
        driver = SchedulerDriver(cluster.master_address, FrameworkInfo(name="t"))

Every process gets a dynamic port, its own work directory and a log file in the cluster's work
directory (`master.log`, `agent-0.log`, ...); `logs()` returns their tails, and a failed start
raises ClusterError with them. Start-up waits on conditions (ready files, process liveness,
agents registered in `/master/state`) with a timeout. `stop()` sends SIGTERM, waits, SIGKILLs
what is left, and finally kills any process that still carries this cluster's marker in its
environment (tasks of an agent that was SIGKILLed), so nothing outlives the cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil  # type: ignore[import-untyped]

MARKER_VARIABLE = "AGORA_LOCAL_CLUSTER"
T = TypeVar("T")


class ClusterError(RuntimeError):
    """The cluster did not come up (the message ends with the processes' log tails)."""


def wait_until(
    predicate: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = 0.05
) -> T:
    """Poll `predicate` until it returns something truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(poll_s)


def get_json(address: str, path: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout_s) as response:
        return json.loads(response.read())


@dataclass(slots=True)
class ManagedProcess:
    name: str
    args: list[str]
    work_dir: Path
    ready_file: Path
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    address: str | None = None
    port: int = 0
    history: list[int] = field(default_factory=list)  # pids of earlier incarnations
    prefix: list[str] = field(default_factory=list)  # e.g. `ip netns exec NS`

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class LocalCluster:
    def __init__(
        self,
        agents: int = 2,
        work_dir: Path | None = None,
        master_port: int = 0,
        agent_resources: str | Sequence[str] | None = None,
        agent_args: Sequence[str] = (),
        master_args: Sequence[str] = (),
        *,
        ip: str = "127.0.0.1",
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        python: str = sys.executable,
        keep_work_dir: bool | None = None,
        agent_ips: Sequence[str] | None = None,
        agent_prefix: Callable[[int], list[str]] | None = None,
        masters: int = 1,
        zk: str | None = None,
    ) -> None:
        """`agent_ips` and `agent_prefix` place agents elsewhere than beside the master:
        agent i listens on agent_ips[i] and runs under agent_prefix(i) (for example in
        a network namespace of agora.testing.netns, with the master on its bridge).

        With `zk` (a zk:// URL), `masters` masters elect a leader in ZooKeeper and the
        agents follow it; `master` and `master_address` are then the current leader's."""
        if masters < 1 or (masters > 1 and zk is None):
            raise ValueError("several masters need a ZooKeeper URL (zk=...)")
        if agents < 0:
            raise ValueError("agents must be >= 0")
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="agora-cluster-")).resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.keep_work_dir = not self._owns_work_dir if keep_work_dir is None else keep_work_dir
        self.ip = ip
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.marker = uuid.uuid4().hex
        self._python = python
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", MARKER_VARIABLE: self.marker}
        self.zk = zk
        ha_args = ["--zk", zk] if zk is not None else []
        self.masters = [
            self._process(
                "master" if masters == 1 else f"master-{index}",
                [
                    "master",
                    "--ip",
                    ip,
                    "--port",
                    str(master_port if index == 0 else 0),
                    *ha_args,
                    *master_args,
                ],
            )
            for index in range(masters)
        ]
        self._agent_count = agents
        if agent_resources is None or isinstance(agent_resources, str):
            per_agent: list[str | None] = [agent_resources] * agents
        else:
            per_agent = list(agent_resources)
            if len(per_agent) != agents:
                raise ValueError("agent_resources needs one entry per agent")
        self._agent_resources = per_agent
        self._agent_args = list(agent_args)
        self._agent_ips = list(agent_ips) if agent_ips is not None else [ip] * agents
        self._agent_prefix = agent_prefix
        self.agent_processes: list[ManagedProcess] = []
        self._started = False

    def _process(self, name: str, args: list[str]) -> ManagedProcess:
        return ManagedProcess(
            name=name,
            args=args,
            work_dir=self.work_dir / name,
            ready_file=self.work_dir / f"{name}.ready",
            log_path=self.work_dir / f"{name}.log",
        )

    # ------------------------------------------------------------------ addresses

    @property
    def master(self) -> ManagedProcess:
        """The leading master (the only one, without ZooKeeper; else the first one whose
        metrics say it is elected, falling back to the first running one)."""
        if len(self.masters) == 1:
            return self.masters[0]
        index = self.leader_index()
        if index is None:
            running = [m for m in self.masters if m.alive] or self.masters
            return running[0]
        return self.masters[index]

    def leader_index(self) -> int | None:
        """Which master leads now, by its own /metrics/snapshot (None: none does)."""
        for index, process in enumerate(self.masters):
            if not process.alive or process.address is None:
                continue
            try:
                metrics = get_json(process.address, "/metrics/snapshot", timeout_s=2.0)
            except (OSError, urllib.error.URLError, ValueError):
                continue
            if metrics.get("master/elected") == 1.0:
                return index
        return None

    def wait_for_leader(self, timeout_s: float | None = None) -> int:
        def elected() -> int | None:
            index = self.leader_index()
            return None if index is None else index + 1  # 0 is a leader too

        found = wait_until(elected, timeout_s or self.start_timeout_s, "a master to lead")
        return found - 1

    @property
    def master_address(self) -> str:
        if self.master.address is None:
            raise ClusterError("the master is not running")
        return self.master.address

    @property
    def agent_master(self) -> str:
        """What agents are given as --master: the ZooKeeper URL, or the master."""
        return self.zk if self.zk is not None else self.masters[0].address or ""

    @property
    def agents(self) -> list[str]:
        """Addresses (`ip:port`) of the agents, in start order."""
        return [p.address or "" for p in self.agent_processes]

    # ------------------------------------------------------------------ start

    def start(self) -> LocalCluster:
        if self._started:
            return self
        self._started = True
        try:
            for master in self.masters:
                self._launch(master)
            for master in self.masters:
                self._wait_ready(master)
            if self.zk is not None:
                self.wait_for_leader()
            for index, resources in enumerate(self._agent_resources):
                args = [
                    "agent",
                    "--master",
                    self.agent_master,
                    "--ip",
                    self._agent_ips[index],
                    "--port",
                    "0",
                ]
                if resources:
                    args += ["--resources", resources]
                process = self._process(f"agent-{index}", [*args, *self._agent_args])
                if self._agent_prefix is not None:
                    process.prefix = self._agent_prefix(index)
                self.agent_processes.append(process)
                self._launch(process)
            for process in self.agent_processes:
                self._wait_ready(process)
            self.wait_for_agents()
        except BaseException as error:
            logs = self.logs()
            self.stop()
            if isinstance(error, (TimeoutError, ClusterError, OSError)):
                raise ClusterError(f"the local cluster did not start: {error}\n{logs}") from None
            raise
        return self

    def _launch(self, process: ManagedProcess) -> None:
        process.work_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            process.ready_file.unlink()
        args = list(process.args)
        if process.port and "--port" in args:
            args[args.index("--port") + 1] = str(process.port)
        command = [
            *process.prefix,
            self._python,
            "-m",
            "agora",
            *args,
            "--work-dir",
            str(process.work_dir),
            "--ready-file",
            str(process.ready_file),
        ]
        with process.log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            process.popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not them
            )
        process.history.append(process.popen.pid)
        process.address = None

    def _wait_ready(self, process: ManagedProcess) -> str:
        def ready() -> str | None:
            if not process.alive:
                code = process.popen.returncode if process.popen else None
                raise ClusterError(f"{process.name} exited with status {code}")
            try:
                text = process.ready_file.read_text()
            except FileNotFoundError:
                return None
            try:
                return str(json.loads(text)["address"])
            except (ValueError, KeyError):
                return None

        address = wait_until(ready, self.start_timeout_s, f"{process.name} to serve")
        process.address = address
        process.port = int(address.rsplit(":", 1)[1])
        return address

    def master_state(self) -> dict[str, Any]:
        state = get_json(self.master_address, "/master/state")
        assert isinstance(state, dict)
        return state

    def registered_agents(self) -> dict[str, str]:
        """Active agents in the master's view: address -> agent id."""
        out: dict[str, str] = {}
        for agent in self.master_state().get("slaves", []):
            pid = str(agent.get("pid", ""))
            if agent.get("active", True) and "@" in pid:
                out[pid.split("@", 1)[1]] = str(agent.get("id", ""))
        return out

    def wait_for_agents(self, timeout_s: float | None = None) -> dict[str, str]:
        """Wait until every running agent is registered and active; address -> agent id."""

        def registered() -> dict[str, str] | None:
            if not self.master.alive:
                raise ClusterError("the master exited")
            try:
                seen = self.registered_agents()
            except (OSError, urllib.error.URLError, ValueError):
                return None
            wanted = [p.address for p in self.agent_processes if p.alive]
            return seen if all(a in seen for a in wanted) else None

        if not self.agent_processes:
            return {}
        return wait_until(registered, timeout_s or self.start_timeout_s, "the agents to register")

    # ------------------------------------------------------------------ faults

    def kill_agent(self, index: int) -> None:
        """SIGKILL agent `index` (its tasks may keep running, as after a crash)."""
        process = self.agent_processes[index]
        if process.popen is not None and process.alive:
            process.popen.kill()
            process.popen.wait()

    def stop_agent(self, index: int) -> None:
        """SIGTERM agent `index` and wait for it (it kills its tasks)."""
        self._terminate([self.agent_processes[index]])

    def restart_agent(self, index: int, *, wait: bool = True) -> str:
        """Start agent `index` again (same work dir and port); waits until it is registered."""
        process = self.agent_processes[index]
        if process.alive:
            self.kill_agent(index)
        self._launch(process)
        address = self._wait_ready(process)
        if wait:
            self.wait_for_agents()
        return address

    def kill_master(self, index: int | None = None) -> int:
        """SIGKILL a master (the leader unless `index` says), as after a crash; agents
        and tasks keep running. Returns the index of the master killed."""
        if index is None:
            index = self.masters.index(self.master)
        process = self.masters[index]
        if process.popen is not None and process.alive:
            process.popen.kill()
            process.popen.wait()
        return index

    def restart_master(self, *extra_args: str, index: int = 0, wait: bool = True) -> str:
        """Start master `index` again on the same port and work dir (so, without
        ZooKeeper, with the same registry); `extra_args` are added to its command line.
        Waits until every running agent has re-registered unless `wait` is False."""
        self.kill_master(index)
        process = self.masters[index]
        process.args = [*process.args, *extra_args]
        self._launch(process)
        address = self._wait_ready(process)
        if wait:
            self.wait_for_agents()
        return address

    # ------------------------------------------------------------------ stop

    def _terminate(self, processes: Sequence[ManagedProcess]) -> None:
        running = [p for p in processes if p.popen is not None and p.alive]
        for process in running:
            assert process.popen is not None
            with contextlib.suppress(ProcessLookupError):
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for process in running:
            assert process.popen is not None
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.kill()
                process.popen.wait()

    def stop(self) -> None:
        """Stop everything: agents, then the master; then any process left with our marker."""
        self._terminate(self.agent_processes)
        self._terminate(self.masters)
        self._sweep()
        if self._owns_work_dir and not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def leftover_processes(self) -> list[psutil.Process]:
        """Live processes started by this cluster (directly or not)."""
        found = []
        me = os.getpid()
        for proc in psutil.process_iter():
            if proc.pid == me:
                continue
            try:
                if proc.environ().get(MARKER_VARIABLE) == self.marker and proc.is_running():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        return found

    def _sweep(self) -> None:
        leftovers = self.leftover_processes()
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=5)

    def logs(self, lines: int = 40) -> str:
        parts = []
        for process in [*self.masters, *self.agent_processes]:
            parts.append(f"----- {process.name} ({process.log_path}) -----\n")
            parts.append(process.log_tail(lines) + "\n")
        return "".join(parts)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
