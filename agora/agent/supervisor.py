"""The per-agent process supervisor: starts task and executor processes, reaps them and
records how they ended, and keeps doing so when the agent itself dies.

One supervisor runs per agent work dir, started detached (its own session) by the first
agent that finds none listening, and reused by every later agent on that work dir. It is
the parent of every container process, so it alone can reap them; an agent that is
SIGKILLed leaves it and its processes running, and the next agent reconnects and asks
for the list. A clean agent stop (`--cleanup-on-exit`) sends `shutdown`, which kills
every process group and ends the supervisor.

A plain process costs one `posix_spawn` (vfork + exec), in a new session (so the
process group is the container: signals go to the whole group), with stdin /dev/null,
stdout and stderr appended to `stdout` / `stderr` in the sandbox, cwd = the sandbox, the
signal dispositions a task must not inherit reset and an empty signal mask. A launch
with a `container` (a LaunchInfo: cgroups, namespaces, rootfs, mounts, user) goes
through the launcher (agora/agent/launcher.py): the supervisor forks itself, the child
applies the LaunchInfo (it is in its cgroups and namespaces before it execs) and execs
the command with the same process setup. Either way the supervisor is the parent.
No thread and no Python process per task: one asyncio loop, SIGCHLD wakes a reaper.
When a group leader exits, the rest of its group is SIGKILLed (the container is gone;
with a pid namespace the kernel kills the rest of the namespace too).

Protocol: newline-delimited JSON objects over a unix stream socket, batched both ways
(a read may carry many requests; replies and exit reports go out in one write).

    agent -> supervisor
      {"op": "launch", "id": P, "argv": [...], "env": {...}, "cwd": DIR, "exe": PATH?,
       "container": LAUNCH_INFO?}                    LaunchInfo.to_json(), without env
      {"op": "signal", "id": P, "signal": N}          process group of P, if still running
      {"op": "forget", "id": P}                       its exit was handled
      {"op": "list"}                                  -> {"op": "procs", "procs": [...]}
      {"op": "shutdown", "kill": true}                kill every group, then exit
    supervisor -> agent
      {"op": "launched", "id": P, "pid": N}
      {"op": "failed", "id": P, "error": TEXT}        the exec (or the container's
                                                      setup before it) failed
      {"op": "exited", "id": P, "pid": N, "status": WAIT_STATUS}

On-disk layout under the agent's work dir. Agent recovery (agora/core/agent/recovery.py)
asks a restarted agent's supervisor for `list`: the processes it still runs, and those
that ended while no agent was connected, with their wait statuses.

    <work_dir>/supervisor.sock            the socket (an abstract socket named
                                          `agora-supervisor-<sha1 of work dir>` when the
                                          path is too long for AF_UNIX)
    <work_dir>/supervisor.pid             the supervisor's pid
    <work_dir>/supervisor.log             its stdout/stderr
    <work_dir>/meta/supervisor/journal    one JSON line per event, append-only:
        {"event": "launched", "id": P, "pid": N, "cwd": DIR, "time": T}
        {"event": "exited", "id": P, "pid": N, "status": WAIT_STATUS, "time": T}
        {"event": "forgotten", "id": P}
    <work_dir>/slaves/<agent>/frameworks/<fw>/executors/<ex>/runs/<container>/
        stdout, stderr                    the sandbox (default-executor tasks: in
                                          tasks/<task id>/ below it)

Durability choice: exits are group-committed. All exits reaped in one SIGCHLD wake-up
are appended to the journal and made durable with ONE fdatasync before any of them is
reported to the agent, so an exit the agent has heard of survives a machine crash,
without an fsync per task. Launch records are appended without a sync (if the machine
crashes the processes are gone anyway).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from agora.agent.containerizer.launch_info import LaunchInfo
from agora.agent.launcher import DEFAULT_SIGNALS, OUT_FLAGS, Launcher, LaunchError
from agora.runtime.gc_tuning import tune_for_service


def socket_address(work_dir: str) -> str:
    """The supervisor's socket address for a work dir (file path, or abstract name)."""
    path = os.path.join(os.path.abspath(work_dir), "supervisor.sock")
    if len(path.encode()) <= 100:
        return path
    digest = hashlib.sha1(os.path.abspath(work_dir).encode()).hexdigest()[:20]
    return f"\0agora-supervisor-{digest}"


@dataclass
class Proc:
    id: str
    pid: int
    cwd: str
    status: int | None = None


class Supervisor:
    def __init__(self, work_dir: str) -> None:
        self.work_dir = os.path.abspath(work_dir)
        self.procs: dict[str, Proc] = {}
        self.by_pid: dict[int, Proc] = {}
        self.clients: set[asyncio.StreamWriter] = set()
        meta = os.path.join(self.work_dir, "meta", "supervisor")
        os.makedirs(meta, exist_ok=True)
        self.journal = open(os.path.join(meta, "journal"), "ab")  # noqa: SIM115
        self.stopping = asyncio.Event()
        self.known_dirs: set[str] = set()
        self.launcher = Launcher()

    # ------------------------------------------------------------------ spawning

    def launch(self, request: dict[str, Any]) -> dict[str, Any]:
        proc_id = str(request["id"])
        cwd = str(request["cwd"])
        argv = [str(a) for a in request["argv"]]
        env = {str(k): str(v) for k, v in request.get("env", {}).items()}
        exe = str(request.get("exe") or argv[0])
        container = request.get("container")
        try:
            self.make_dirs(cwd)
            if container:
                pid = self.launcher.spawn(exe, argv, env, cwd, LaunchInfo.from_json(container))
            else:
                pid = self._posix_spawn(exe, argv, env, cwd)
        except LaunchError as error:
            return {"op": "failed", "id": proc_id, "error": str(error)}
        except (OSError, TypeError, ValueError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            return {"op": "failed", "id": proc_id, "error": f"{exe}: {reason}"}
        proc = Proc(proc_id, pid, cwd)
        self.procs[proc_id] = proc
        self.by_pid[pid] = proc
        # Flushed with the rest of this batch of requests (one write for all of them).
        self._journal({"event": "launched", "id": proc_id, "pid": pid, "cwd": cwd}, flush=False)
        return {"op": "launched", "id": proc_id, "pid": pid}

    def _posix_spawn(self, exe: str, argv: list[str], env: dict[str, str], cwd: str) -> int:
        """The fast path for a process without a container: vfork + exec."""
        if "/" not in exe:
            found = shutil.which(exe, path=env.get("PATH", os.defpath))
            if found is None:
                raise FileNotFoundError("not found on PATH")
            exe = found
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.path.join(cwd, "stdout"), OUT_FLAGS, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, os.path.join(cwd, "stderr"), OUT_FLAGS, 0o644),
        ]
        # posix_spawn has no chdir action: the child inherits this single-threaded
        # loop's cwd, which is left there (everything here uses absolute paths).
        os.chdir(cwd)
        try:
            return os.posix_spawn(
                exe,
                argv,
                env,
                file_actions=actions,
                setsid=True,
                setsigmask=(),
                setsigdef=DEFAULT_SIGNALS,
            )
        except OSError as error:
            raise OSError(error.errno, error.strerror) from None

    def make_dirs(self, path: str) -> None:
        """`os.makedirs(path, exist_ok=True)` minus the stat calls: sandboxes share their
        upper levels, so known directories are remembered (bounded)."""
        missing = []
        head = path
        while head not in self.known_dirs and head != "/":
            missing.append(head)
            head = os.path.dirname(head)
        try:
            for directory in reversed(missing):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(directory)
        except FileNotFoundError:  # a remembered directory was removed meanwhile
            self.known_dirs.clear()
            os.makedirs(path, exist_ok=True)
            return
        if len(self.known_dirs) > 10_000:
            self.known_dirs.clear()
        for directory in missing[1:]:  # not the sandbox itself: its parent may be removed
            self.known_dirs.add(directory)

    def signal(self, proc_id: str, number: int) -> None:
        proc = self.procs.get(proc_id)
        if proc is None or proc.status is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, number)

    def reap(self) -> None:
        exits: list[dict[str, Any]] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            proc = self.by_pid.pop(pid, None)
            # The leader is gone: so is the container. Kill what is left of its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if proc is None:
                continue
            proc.status = status
            exits.append({"op": "exited", "id": proc.id, "pid": pid, "status": status})
        if not exits:
            return
        now = time.time()
        for item in exits:
            self._journal({**item, "event": "exited", "op": None, "time": now}, flush=False)
        self.journal.flush()
        os.fdatasync(self.journal.fileno())
        self.broadcast(exits)

    def _journal(self, record: dict[str, Any], flush: bool = True) -> None:
        record.pop("op", None)
        record.setdefault("time", time.time())
        self.journal.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        if flush:
            self.journal.flush()

    # ------------------------------------------------------------------ clients

    def broadcast(self, messages: list[dict[str, Any]]) -> None:
        data = b"".join(json.dumps(m, separators=(",", ":")).encode() + b"\n" for m in messages)
        for writer in list(self.clients):
            if writer.is_closing():
                self.clients.discard(writer)
            else:
                writer.write(data)

    def handle_request(self, request: dict[str, Any], replies: list[dict[str, Any]]) -> None:
        op = request.get("op")
        if op == "launch":
            replies.append(self.launch(request))
        elif op == "signal":
            self.signal(str(request.get("id")), int(request.get("signal", signal.SIGTERM)))
        elif op == "forget":
            proc = self.procs.get(str(request.get("id")))
            if proc is not None and proc.status is not None:
                del self.procs[proc.id]
                self._journal({"event": "forgotten", "id": proc.id}, flush=False)
        elif op == "list":
            procs = [
                {"id": p.id, "pid": p.pid, "cwd": p.cwd, "status": p.status}
                for p in self.procs.values()
            ]
            replies.append({"op": "procs", "procs": procs})
        elif op == "shutdown":
            if request.get("kill", True):
                for proc in self.procs.values():
                    if proc.status is None:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(proc.pid, signal.SIGKILL)
            self.stopping.set()

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.clients.add(writer)
        buffer = b""
        try:
            while True:
                chunk = await reader.read(1 << 20)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                replies: list[dict[str, Any]] = []
                for line in lines:
                    if line.strip():
                        try:
                            request = json.loads(line)
                        except ValueError:
                            continue
                        self.handle_request(request, replies)
                self.journal.flush()
                if replies:
                    writer.write(
                        b"".join(
                            json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in replies
                        )
                    )
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.clients.discard(writer)
            writer.close()


def _already_running(address: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(address)
        return True
    except OSError:
        return False
    finally:
        probe.close()


async def run(work_dir: str) -> int:
    tune_for_service()
    os.makedirs(work_dir, exist_ok=True)
    address = socket_address(work_dir)
    if _already_running(address):
        return 0
    if not address.startswith("\0"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)
    supervisor = Supervisor(work_dir)
    os.chdir(supervisor.work_dir)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGCHLD, supervisor.reap)
    # SIGTERM: like a `shutdown` request, every process group is killed first.
    loop.add_signal_handler(
        signal.SIGTERM, supervisor.handle_request, {"op": "shutdown", "kill": True}, []
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    server = await asyncio.start_unix_server(supervisor.serve_client, path=address)
    pid_path = os.path.join(supervisor.work_dir, "supervisor.pid")
    with open(pid_path + ".tmp", "w") as out:
        out.write(str(os.getpid()))
    os.replace(pid_path + ".tmp", pid_path)
    supervisor.reap()  # anything that exited before the handler was installed
    await supervisor.stopping.wait()
    server.close()
    for writer in list(supervisor.clients):
        writer.close()
    deadline = time.monotonic() + 5.0
    while any(p.status is None for p in supervisor.procs.values()) and time.monotonic() < deadline:
        supervisor.reap()
        await asyncio.sleep(0.02)
    if not address.startswith("\0"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pid_path)
    supervisor.journal.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agora-supervisor")
    parser.add_argument("--work-dir", required=True)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.work_dir))


if __name__ == "__main__":
    sys.exit(main())
