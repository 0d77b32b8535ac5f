"""`agora`: the command line entry point (click).

Subcommands are imported when they are run, not all at start: `agora master` then
loads only the master (a master taking over after a failover is serving ~0.5 s
sooner than with every command's imports, agents and containerizer included)."""

from __future__ import annotations

import importlib

import click

from agora import __version__

COMMANDS = {
    "agent": "agora.cli.agent:agent",
    "local": "agora.cli.local:local",
    "master": "agora.cli.master:master",
    "simulate": "agora.cli.simulate:simulate",
    "run": "agora.cli.run:run",
    "ps": "agora.cli.inspect:ps",
    "agents": "agora.cli.inspect:agents",
    "frameworks": "agora.cli.inspect:frameworks",
    "top": "agora.cli.top:top",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agora")
def cli() -> None:
    """Agora: a datacenter kernel with Mesos-style resource offers."""


def main() -> None:
    cli()
