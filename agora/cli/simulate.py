"""`agora simulate`: run simulator seeds and report failures with a reproduction line."""

from __future__ import annotations

import click

from agora.testing.sim.__main__ import main as run_seeds


@click.command()
@click.option("--seeds", default="0-99", show_default=True, help="seeds, e.g. 0-999 or 1,5,9")
@click.option("--seed", type=int, help="run one seed and show its failure in full")
def simulate(seeds: str, seed: int | None) -> None:
    """Run the deterministic cluster simulator over many seeds."""
    argv = ["--seed", str(seed)] if seed is not None else ["--seeds", seeds]
    raise SystemExit(run_seeds(argv))
