"""The ``tokenbench`` command line's shared parts: the typer app, its errors, its choices.

The commands live next to what they run (``bench.load.commands``, ``bench.faults.commands``,
``bench.report.commands``, and ``bench.cli`` for the server); ``bench.cli`` gathers them.
"""

from __future__ import annotations

from enum import StrEnum

import typer

import transports

app = typer.Typer(
    help="tokenbench: SSE, WebSocket, gRPC and long polling for LLM token streams, measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Transport = StrEnum("Transport", {name: name for name in transports.names()})  # type: ignore[misc]
CHOICES = f"{', '.join(transports.names())}, a comma list, or all"


def fail(message: str, code: int = 2) -> None:
    """A one-line error on stderr and the exit code (2: bad usage, 1: the run failed)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def pick(spec: str) -> list[str]:
    """``--transport``: names from the registry, or a one-line error."""
    try:
        picked = [t.name for t in transports.select(spec)]
    except ValueError as exc:
        fail(f"{exc}, or all")
    if not picked:
        fail(f"--transport names none: {CHOICES}")
    return picked
