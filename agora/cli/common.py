"""What the commands that talk to a master share: the --master option, one-line errors,
running a coroutine, and number formatting."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

DEFAULT_MASTER = "127.0.0.1:5050"
MASTER_ENV = "AGORA_MASTER"
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def default_master() -> str:
    return os.environ.get(MASTER_ENV) or DEFAULT_MASTER


def master_option(function: F) -> F:
    return click.option(
        "--master",
        default=default_master,
        show_default=f"${MASTER_ENV} or {DEFAULT_MASTER}",
        metavar="HOST:PORT|zk://...",
        help="the master to talk to (a zk:// URL: the one that leads)",
    )(function)


class CliError(click.ClickException):
    """One clear line on stderr and exit status 1, never a traceback."""

    def show(self, file: Any = None) -> None:
        click.echo(f"agora: error: {self.format_message()}", err=True, file=file)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def number(value: object) -> str:
    """A resource amount as short text (`0.5`, `1024`)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value) if value is not None else "-"
    return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
