"""A swarm in a process of its own, driven over stdin/stdout, one JSON object a line.

    python -m agora.testing.swarm --master 127.0.0.1:5050 --agents 5000 --first-index 0 \
        [--agents-per-socket 1000] [--source-ip 127.0.0.2 ...]

Commands (stdin):    {"op": "connect"}   every agent not registered connects and says hello
                                        (with "master": "host:port", to a new address)
                     {"op": "prepare"}   encode every agent's next hello now (not while timed)
                     {"op": "stats"}     answer with the figures so far
                     {"op": "exit"}      close every socket and exit
Events (stdout):     {"event": "ready", "fd_limit": n}
                     {"event": "registered", ...timings}  once every agent is (re)registered
                     {"event": "disconnected", "agents": n}  once every agent lost the master
                     {"event": "stats", ...}, {"event": "error", "message": ...}

Timings are `time.monotonic()` readings, comparable across the processes of one host.
The agents do not reconnect on their own: a `connect` is the news that a (new) leader
is known, as agents learn it from ZooKeeper. Several processes share the work when one
process cannot hold the sockets (its open-file limit) or keep up (one core each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from agora.runtime.gc_tuning import tune_for_service
from agora.runtime.limits import raise_open_file_limit
from agora.testing.swarm.swarm import Swarm, SwarmOptions
from agora.testing.swarm.workload import SwarmSpec


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def cpu_s() -> float:
    return time.process_time()


async def registration(swarm: Swarm, timeout_s: float) -> None:
    """Report when every agent has (re)registered, then when all lost the master."""
    try:
        await swarm.wait_registered(timeout_s)
    except TimeoutError as error:
        emit("error", message=str(error), cpu_s=cpu_s(), **swarm.timings())
        return
    emit("registered", cpu_s=cpu_s(), **swarm.timings())
    await swarm.wait_disconnected(1e9)
    emit("disconnected", agents=len(swarm.agents), cpu_s=cpu_s())


async def serve(swarm: Swarm, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    round_: asyncio.Task[None] | None = None
    while line := await reader.readline():
        command = json.loads(line)
        op = command.get("op")
        if op == "connect":
            if round_ is not None:
                round_.cancel()
            await swarm.connect(command.get("master"))
            round_ = loop.create_task(registration(swarm, timeout_s))
        elif op == "prepare":
            for agent in swarm.agents:
                agent.hello()
            emit("prepared")
        elif op == "stats":
            emit("stats", cpu_s=cpu_s(), **swarm.timings())
        elif op == "exit":
            break
    if round_ is not None:
        round_.cancel()
    await swarm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="a swarm of simulated agents")
    parser.add_argument("--master", required=True, help="host:port")
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--first-index", type=int, default=0)
    parser.add_argument("--agents-per-socket", type=int, default=None, help="multiplex")
    parser.add_argument("--source-ip", action="append", default=[])
    parser.add_argument("--max-connecting", type=int, default=512)
    parser.add_argument("--tasks-per-agent", type=int, default=10)
    parser.add_argument("--frameworks", type=int, default=5)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    args = parser.parse_args()
    limit = raise_open_file_limit()
    spec = SwarmSpec(tasks_per_agent=args.tasks_per_agent, frameworks=args.frameworks)
    options = SwarmOptions(
        agents_per_socket=args.agents_per_socket,
        source_ips=tuple(args.source_ip),
        max_connecting=args.max_connecting,
        reconnect_backoff_s=None,
    )

    async def run() -> None:
        swarm = Swarm.build(args.master, spec, args.agents, args.first_index, options)
        tune_for_service()  # after the build: the agents' state is never scanned again
        emit("ready", fd_limit=limit, cpu_s=cpu_s())
        await serve(swarm, args.timeout_s)

    asyncio.run(run())


if __name__ == "__main__":
    main()
