"""The ZooKeeper registry store on real ZooKeeper servers: how long one `apply` of a group of
transactions takes, and how long `load()` of N records takes.

    python bench/zookeeper_store.py [--nodes 1|3] [--records 10000] [--repeat 5] [--json]

Starts its own ZooKeeper (agora.testing.zookeeper: a standalone server or a 3-node ensemble on
127.0.0.1, forceSync on, so every write is fsynced before ZooKeeper answers). Each group is
G transactions of one Put of a 300-byte value (an agent registration's size), applied in one
`apply`, fenced on a candidacy znode as an HA master's store is; the figure is the median
over `--repeat` groups, with the number of multi requests the group took. load() reads
`--records` records of 300 bytes spread over 4 kinds from a fresh store on a fresh session;
median over `--repeat` loads. With `--json` the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agora.master.registry.store import Put
from agora.master.registry.zookeeper_store import ZooKeeperStore
from agora.testing.zookeeper import ZooKeeperEnsemble
from agora.zookeeper.election import Contender

VALUE = b"x" * 300
GROUPS = (1, 10, 100, 1000, 5000)


@dataclass
class GroupFigure:
    transactions: int
    apply_s_median: float
    per_transaction_ms: float
    multis: int


@dataclass
class Result:
    nodes: int
    groups: list[GroupFigure]
    records: int
    load_s_median: float
    load_records_per_s: float


async def measure_group(store: ZooKeeperStore, size: int, repeat: int, tag: str) -> GroupFigure:
    times = []
    multis = 0
    for round_ in range(repeat):
        group = [[Put("agents", f"{tag}-{size}-{round_}-{i}", VALUE)] for i in range(size)]
        before = store.multis
        started = time.perf_counter()
        await store.apply(group)
        times.append(time.perf_counter() - started)
        multis = store.multis - before
    median = statistics.median(times)
    return GroupFigure(size, median, median / size * 1000, multis)


async def fill(url: str, records: int) -> None:
    store = await ZooKeeperStore.connect(url)
    group = [[Put(f"kind{i % 4}", f"record-{i}", VALUE)] for i in range(records)]
    await store.apply(group)
    await store.close()


async def measure_load(url: str, records: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        store = await ZooKeeperStore.connect(url)
        started = time.perf_counter()
        loaded = await store.load()
        times.append(time.perf_counter() - started)
        await store.close()
        assert sum(len(keys) for keys in loaded.values()) == records, "load lost records"
    return statistics.median(times)


async def bench(zk: ZooKeeperEnsemble, nodes: int, records: int, repeat: int) -> Result:
    url = zk.url("/bench")
    store = await ZooKeeperStore.connect(url)
    contender = Contender(store.session, b"{}")
    store.fence = await contender.start()
    await store.apply([[Put("agents", "warm-up", VALUE)]])
    groups = [await measure_group(store, size, repeat, "g") for size in GROUPS]
    await store.close()
    await fill(zk.url("/load"), records)
    load_s = await measure_load(zk.url("/load"), records, repeat)
    return Result(nodes, groups, records, load_s, records / load_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1, choices=(1, 3))
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-zk-") as work,
        ZooKeeperEnsemble(size=args.nodes, work_dir=Path(work)) as zk,
    ):
        result = asyncio.run(bench(zk, args.nodes, args.records, args.repeat))
    print(f"ZooKeeper registry store, {args.nodes} node(s), forceSync on, 300-byte values")
    print(f"{'group (txs)':>12} {'apply (ms)':>11} {'per tx (ms)':>12} {'multis':>7}")
    for g in result.groups:
        print(
            f"{g.transactions:>12} {g.apply_s_median * 1000:>11.1f} "
            f"{g.per_transaction_ms:>12.3f} {g.multis:>7}"
        )
    print(
        f"load() of {result.records} records: {result.load_s_median * 1000:.0f} ms "
        f"({result.load_records_per_s:,.0f} records/s)"
    )
    if args.json:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
