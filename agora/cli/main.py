"""`agora`: the command line entry point (click)."""

from __future__ import annotations

import click

from agora import __version__
from agora.cli.agent import agent
from agora.cli.inspect import agents, frameworks, ps
from agora.cli.local import local
from agora.cli.master import master
from agora.cli.run import run
from agora.cli.simulate import simulate
from agora.cli.top import top


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agora")
def cli() -> None:
    """Agora: a datacenter kernel with Mesos-style resource offers."""


cli.add_command(agent)
cli.add_command(local)
cli.add_command(master)
cli.add_command(simulate)
cli.add_command(run)
cli.add_command(ps)
cli.add_command(agents)
cli.add_command(frameworks)
cli.add_command(top)


def main() -> None:
    cli()
