"""Swarms of simulated agents (agora.testing.swarm) against a real `agora master`
process: they register, answer pings, re-register with their tasks after the master
is killed and restarted on the same registry; over the multiplexed channel many agents
share one socket, are told apart, and all disconnect when it closes. Also the bench
that drives them, run small."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agora.testing.cluster import get_json
from agora.testing.swarm import Swarm, SwarmOptions, SwarmSpec
from agora.testing.zookeeper import missing_zookeeper
from agora.wire import agent_channel as channel
from tests.integration.master_process import request, wait_for

ROOT = Path(__file__).resolve().parents[2]
SPEC = SwarmSpec(tasks_per_agent=3, frameworks=2)
PING_ARGS = ["--agent-ping-timeout-s", "0.2", "--max-agent-ping-timeouts", "3"]


class Master:
    """`agora master` on one work dir, restartable on the same port."""

    def __init__(self, tmp: Path, args: list[str]) -> None:
        self.tmp = tmp
        self.args = args
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        ready = self.tmp / "master.ready"
        ready.unlink(missing_ok=True)
        log = (self.tmp / "master.log").open("ab")
        command = [sys.executable, "-m", "agora", "master", "--port", str(self.port)]
        command += ["--work-dir", str(self.tmp / "master"), "--ready-file", str(ready)]
        self.process = subprocess.Popen(
            [*command, *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        address = wait_for(
            lambda: ready.exists() and json.loads(ready.read_text())["address"],
            20.0,
            "the master to serve",
        )
        self.port = int(address.rsplit(":", 1)[1])
        self.address = str(address)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    running = Master(tmp_path, PING_ARGS)
    try:
        yield running
    finally:
        running.stop()


def metrics(master: Master) -> dict[str, float]:
    return dict(get_json(master.address, "/metrics/snapshot"))


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0):
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(0.05)


def metric_is(master: Master, name: str, value: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await asyncio.to_thread(metrics, master)).get(name) == value

    return check


def test_a_swarm_registers_answers_pings_and_reregisters_its_tasks_after_a_restart(
    master: Master,
) -> None:
    options = SwarmOptions(reconnect_backoff_s=(0.05, 0.2))

    async def main() -> None:
        swarm = Swarm.build(master.address, SPEC, 12, options=options)
        await swarm.connect()
        await swarm.wait_registered(20.0)
        state = await asyncio.to_thread(get_json, master.address, "/master/state")
        assert sorted(a["hostname"] for a in state["slaves"]) == sorted(
            f"swarm-{i}" for i in range(12)
        )
        first_ids = {a.index: a.agent_id for a in swarm.agents}
        # Pings every 0.2 s; three unanswered and an agent would be unreachable.
        await swarm.wait_for(lambda: min(a.pings for a in swarm.agents) >= 5, 20.0, "pings")
        assert (await asyncio.to_thread(metrics, master))["master/slaves_active"] == 12

        await asyncio.to_thread(master.kill)
        await swarm.wait_disconnected(20.0)
        await asyncio.to_thread(master.start)  # same port, same registry
        await swarm.wait_registered(30.0)  # reconnected on their own
        assert {a.index: a.agent_id for a in swarm.agents} == first_ids
        assert all(a.registrations == 2 for a in swarm.agents)
        await until(metric_is(master, "master/task_running", 12 * 3), "tasks adopted")
        state = await asyncio.to_thread(get_json, master.address, "/master/state")
        names = {f["name"] for f in state["frameworks"]}
        assert names == {f"swarm-framework-{i}" for i in range(2)}
        await swarm.close()

    asyncio.run(main())


def test_the_master_raised_its_open_file_limit(master: Master) -> None:
    assert master.process is not None
    limits = Path(f"/proc/{master.process.pid}/limits").read_text()
    (line,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
    soft, hard = line.split()[3:5]
    assert soft == hard


def test_agents_over_one_multiplexed_socket_are_told_apart_and_leave_together(
    master: Master,
) -> None:
    options = SwarmOptions(agents_per_socket=30, reconnect_backoff_s=None)

    async def main() -> None:
        swarm = Swarm.build(master.address, SPEC, 30, options=options)
        await swarm.connect()
        await swarm.wait_registered(20.0)
        assert len(swarm.channels) == 1
        assert len({a.agent_id for a in swarm.agents}) == 30
        state = await asyncio.to_thread(get_json, master.address, "/master/state")
        assert len(state["slaves"]) == 30
        # One agent detaching leaves the others connected.
        swarm.disconnect([swarm.agents[0]])
        await until(metric_is(master, "master/slaves_disconnected", 1.0), "one detached")
        assert (await asyncio.to_thread(metrics, master))["master/slaves_connected"] == 29
        await swarm.connect()  # it attaches again under its key
        await swarm.wait_registered(20.0)
        await until(metric_is(master, "master/slaves_connected", 30.0), "it is back")
        await swarm.close()
        await until(metric_is(master, "master/slaves_disconnected", 30.0), "all gone")

    asyncio.run(main())


def test_an_agent_channel_upgrade_must_be_a_connections_first_request(master: Master) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", master.port, timeout=10)
    connection.request("GET", "/health")
    assert connection.getresponse().read() == b""
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        channel.PROTOCOL_HEADER: channel.PROTOCOL_VERSION,
    }
    connection.request("GET", channel.PATH, headers=headers)
    response = connection.getresponse()
    assert response.status == 400 and b"first request" in response.read()
    connection.close()
    status, _, body = request(master.address, "GET", channel.PATH)
    assert status == 400 and channel.PROTOCOL_HEADER.encode() in body


def run_bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "bench" / "failover.py"), *args, "--json"]
    out = subprocess.run(
        [*command, "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    summary: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return summary


@pytest.mark.parametrize("mode", ["socket", "mux"])
def test_the_failover_bench_runs_small_and_reports_its_figures(tmp_path: Path, mode: str):
    summary = run_bench(
        tmp_path, "--agents", "40", "--mode", mode, "--agents-per-socket", "16", "--repeat", "1"
    )
    (run,) = summary["runs"]
    assert (run["agents"], run["tasks"], run["mode"]) == (40, 400, mode)
    assert run["sockets"] == (40 if mode == "socket" else 3)
    for key in ("reregister_s", "leader_failover_s", "connect_s", "master_cpu_s"):
        assert run[key] > 0, key
    assert summary["reregister_s"] == run["reregister_s"]
    assert summary["leader_failover_s"] == run["leader_failover_s"]


@pytest.mark.skipif(missing_zookeeper() is not None, reason=str(missing_zookeeper()))
def test_the_failover_bench_fails_over_between_masters_through_zookeeper(tmp_path: Path):
    summary = run_bench(
        tmp_path, "--zk", "--masters", "2", "--zk-session-timeout-s", "2", "--agents", "20"
    )
    (run,) = summary["runs"]
    assert run["tasks"] == 200 and run["repeat"] == 3
    assert run["leader_failover_s"] > 1.0  # at least the dead leader's session expiry
