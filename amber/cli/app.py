"""The ``amber`` command: one typer app that every command module registers on.

Each group of commands lives in its own module (``data.py`` for get/put/…,
``serve.py``, ``backup.py`` …) and decorates ``app``; ``amber/cli/__init__.py``
imports them all. A command module turns ``amber.errors`` into a one-line
message and exit code 1 through ``fail``, never a traceback.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console

from amber import __version__

app = typer.Typer(
    name="amber",
    help="Amber: a persistent, replicated document key-value database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain text; brackets such as [default: …] must be escaped.
    rich_markup_mode="rich",
    # Inherited by every command and group: -h everywhere, as --help.
    context_settings={"help_option_names": ["-h", "--help"]},
)
# soft_wrap: a message is one line however narrow the terminal (no break mid-sentence).
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"amber {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Amber: a persistent, replicated document key-value database."""
