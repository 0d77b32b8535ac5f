"""Mesos's HierarchicalAllocator_BENCHMARK_Test.DeclineOffers, reproduced on Agora's allocator.

Workload (apache/mesos src/tests/hierarchical_allocator_tests.cpp): F frameworks in
role `*`; N agents of `cpus:24;mem:4096;disk:4096;ports:[31000-32000]`, each with
`cpus:16;mem:2014;disk:1024` plus 16 port fragments already allocated to one framework
(round-robin); then, each round, every outstanding offer is declined with an
"infinite" filter (refuse_seconds = INT_MAX, capped at 365 days) and one allocation
cycle is timed. Mesos runs 2 x F rounds; `--rounds 0` does the same here, the default
runs fewer (the early rounds, where every agent is offered, are the expensive ones
for this allocator; the late rounds filter everything and are cheap).

    python bench/allocator.py                       # the three sizes of the issue
    python bench/allocator.py --agents 10000 --frameworks 1000 --rounds 0 --json

Each size runs --repeat times (default 3); figures are medians over those runs. Prints a
table; with --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agora.core.allocator import AllocatorOptions, HierarchicalAllocator, OfferDecision
from agora.core.allocator.state import AgentProfile, FrameworkProfile
from agora.core.resource_meta import Resource, ResourceMeta
from agora.core.resource_text import parse_resources
from agora.core.resources import Resources
from agora.core.values import Kind, make_ranges

INT_MAX = 2**31 - 1
AGENT_RESOURCES = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]"
USED_RESOURCES = "cpus:16;mem:2014;disk:1024"
SIZES = [(1_000, 100), (10_000, 1_000), (50_000, 1_000)]
MESOS_CYCLE_S = {(10_000, 1_000): 1.06}  # commit 86653356d, optimized build


@dataclass
class Result:
    agents: int
    frameworks: int
    rounds: int
    repeats: int
    add_frameworks_s: float
    add_agents_s: float
    cycle_s_median: float
    cycle_s_p90: float
    cycle_s_max: float
    offer_cycle_s_median: float
    offers_total: int
    bytes_per_agent: int
    peak_rss_mb: float


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _port_fragments(count: int) -> Resources:
    """Like Mesos's makePortRanges: `count` two-port ranges spread over [31000-32000]."""
    step = 1000 // count
    ranges = make_ranges((31000 + i * step, 31000 + i * step + 1) for i in range(count))
    return Resources([Resource(ResourceMeta("ports", Kind.RANGES), ranges)])


def build(
    agents: int, frameworks: int, seed: int
) -> tuple[HierarchicalAllocator, float, float, list[OfferDecision]]:
    """The benchmark's cluster: frameworks, then agents with resources already in use.
    Returns the allocator, the add times and the offers the agent adds triggered."""
    allocator = HierarchicalAllocator(AllocatorOptions(), random.Random(seed))
    started = time.perf_counter()
    framework_ids = [f"framework{i + 1}" for i in range(frameworks)]
    profile = FrameworkProfile(roles=frozenset({"*"}), capabilities=frozenset({"MULTI_ROLE"}))
    for framework_id in framework_ids:
        allocator.add_framework(framework_id, profile)
    add_frameworks_s = time.perf_counter() - started
    total = parse_resources(AGENT_RESOURCES)
    used = (parse_resources(USED_RESOURCES) + _port_fragments(16)).allocate("*")
    started = time.perf_counter()
    for i in range(agents):
        agent_id = f"agent{i + 1}"
        allocator.add_agent(
            agent_id, AgentProfile(hostname=agent_id), total, {framework_ids[i % frameworks]: used}
        )
    add_agents_s = time.perf_counter() - started
    offers = allocator.allocate(0.0)  # the event-driven allocation the agent adds trigger
    return allocator, add_frameworks_s, add_agents_s, offers


def bytes_per_agent(frameworks: int, sample: int = 2000) -> int:
    """Allocator memory per agent (agent, resources, holdings, sorter entries, offers),
    traced over a sample-sized build (tracing slows building, so not the timed one)."""
    gc.collect()
    tracemalloc.start()
    kept = build(sample, frameworks, 0)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return traced // sample


def run(agents: int, frameworks: int, rounds: int, seed: int = 1) -> Result:
    gc.collect()
    allocator, add_frameworks_s, add_agents_s, offers = build(agents, frameworks, seed)
    now = 0.0
    wanted = 2 * frameworks if rounds <= 0 else rounds
    cycles: list[float] = []
    offer_cycles: list[float] = []
    offers_total = 0
    for _ in range(wanted):
        for decision in offers:
            allocator.recover_resources(
                decision.framework_id, decision.agent_id, decision.resources, INT_MAX, now
            )
        now += allocator.options.allocation_interval_s
        started = time.perf_counter()
        offers = allocator.allocate(now, full=True)
        elapsed = time.perf_counter() - started
        cycles.append(elapsed)
        if offers:
            offer_cycles.append(elapsed)
        offers_total += len(offers)
    cycles_sorted = sorted(cycles)
    return Result(
        agents=agents,
        frameworks=frameworks,
        rounds=wanted,
        repeats=1,
        add_frameworks_s=add_frameworks_s,
        add_agents_s=add_agents_s,
        cycle_s_median=statistics.median(cycles),
        cycle_s_p90=cycles_sorted[int(0.9 * (len(cycles_sorted) - 1))],
        cycle_s_max=cycles_sorted[-1],
        offer_cycle_s_median=statistics.median(offer_cycles) if offer_cycles else 0.0,
        offers_total=offers_total,
        bytes_per_agent=bytes_per_agent(frameworks, min(agents, 2000)),
        peak_rss_mb=_peak_rss_mb(),
    )


def repeated(agents: int, frameworks: int, rounds: int, seed: int, repeats: int) -> Result:
    """Run a size `repeats` times (seeds seed, seed+1...); report medians over runs."""
    runs = [run(agents, frameworks, rounds, seed + i) for i in range(max(1, repeats))]

    def median_of(field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in runs))

    return Result(
        agents=agents,
        frameworks=frameworks,
        rounds=runs[0].rounds,
        repeats=len(runs),
        add_frameworks_s=median_of("add_frameworks_s"),
        add_agents_s=median_of("add_agents_s"),
        cycle_s_median=median_of("cycle_s_median"),
        cycle_s_p90=median_of("cycle_s_p90"),
        cycle_s_max=max(r.cycle_s_max for r in runs),
        offer_cycle_s_median=median_of("offer_cycle_s_median"),
        offers_total=runs[0].offers_total,
        bytes_per_agent=int(median_of("bytes_per_agent")),
        peak_rss_mb=max(r.peak_rss_mb for r in runs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int)
    parser.add_argument("--frameworks", type=int)
    parser.add_argument(
        "--rounds", type=int, default=20, help="cycles to time; 0 = 2 x frameworks as Mesos"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="whole runs per size (median taken)")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object as the last line"
    )
    args = parser.parse_args()
    if (args.agents is None) != (args.frameworks is None):
        parser.error("give both --agents and --frameworks, or neither")
    sizes = [(args.agents, args.frameworks)] if args.agents else SIZES
    results = [repeated(n, f, args.rounds, args.seed, args.repeat) for n, f in sizes]
    header = (
        f"{'agents':>7} {'fws':>5} {'rounds':>6} {'add agents':>10} {'cycle med':>10} "
        f"{'p90':>8} {'max':>8} {'offer-cycle med':>15} {'offers':>9} {'B/agent':>8} "
        f"{'vs Mesos':>9}"
    )
    print(
        "DeclineOffers: one allocation cycle per round after declining every offer forever "
        f"(median over {args.repeat} runs of {args.rounds or '2 x frameworks'} rounds)"
    )
    print(header)
    for r in results:
        mesos = MESOS_CYCLE_S.get((r.agents, r.frameworks))
        ratio = f"{mesos / r.cycle_s_median:.1f}x" if mesos else "-"
        print(
            f"{r.agents:>7} {r.frameworks:>5} {r.rounds:>6} {r.add_agents_s:>9.2f}s "
            f"{r.cycle_s_median:>9.3f}s {r.cycle_s_p90:>7.3f}s {r.cycle_s_max:>7.3f}s "
            f"{r.offer_cycle_s_median:>14.3f}s {r.offers_total:>9} {r.bytes_per_agent:>8} "
            f"{ratio:>9}"
        )
    if args.json:
        summary = (
            asdict(results[-1])
            if len(results) == 1
            else {
                "cycle_s_median": results[-1].cycle_s_median,
                "bytes_per_agent": results[-1].bytes_per_agent,
                "results": [asdict(r) for r in results],
            }
        )
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
