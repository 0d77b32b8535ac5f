"""Run simulation seeds: `python -m agora.testing.sim --seeds 0-999` (or `--seed 42`).

Prints one line per failing seed with the command that reproduces it, and exits 1 if
any seed failed.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import time

from agora.testing.sim.invariants import InvariantViolation
from agora.testing.sim.world import run_seed


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        start, sep, end = part.partition("-")
        seeds.extend(range(int(start), int(end) + 1) if sep else [int(start)])
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agora.testing.sim", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seed", type=int, help="run one seed and show its failure in full")
    group.add_argument("--seeds", default="0-99", help="seeds to run, e.g. 0-999 or 1,5,9")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else parse_seeds(args.seeds)
    failures = 0
    started = time.perf_counter()
    steps = 0
    faults: collections.Counter[str] = collections.Counter()
    for seed in seeds:
        try:
            sim = run_seed(seed)
            steps += sim.steps
            faults.update(dataclasses.asdict(sim.stats))
            faults.update(dataclasses.asdict(sim.store.stats))
        except InvariantViolation as violation:
            failures += 1
            if args.seed is not None:
                print(violation)
            else:
                print(f"FAIL seed {seed}: {violation.message}")
                print(f"     reproduce: python -m agora.testing.sim --seed {seed}")
    elapsed = time.perf_counter() - started
    print(f"{len(seeds) - failures}/{len(seeds)} seeds passed, {steps} steps in {elapsed:.1f}s")
    if len(seeds) > 1:
        print("faults in the passing seeds: " + ", ".join(f"{k} {v}" for k, v in faults.items()))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
