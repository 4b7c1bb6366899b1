"""The ``tokenbench`` command line's shared parts: the typer app, its errors, its choices.

The commands live next to what they run (``bench.load.commands``, ``bench.faults.commands``,
``bench.report.commands``, and ``bench.cli`` for the server); ``bench.cli`` gathers them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

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


def version_line() -> str:
    """``tokenbench 0.1.0``, with the commit it runs from when that is a git checkout."""
    from importlib import metadata

    from bench.results.machine import git_state

    try:
        line = f"tokenbench {metadata.version('tokenbench')}"
    except metadata.PackageNotFoundError:
        line = "tokenbench (not installed)"
    state = git_state()
    if state["commit"]:
        line += f" (commit {state['commit'][:12]}{', dirty' if state['dirty'] else ''})"
    return line


def _version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """tokenbench: SSE, WebSocket, gRPC and long polling for LLM token streams, measured."""
    from bench.results.machine import open_files

    open_files()  # soft limit up to the hard one: servers and clients hold one per connection


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


def on_stack(names: list[str], stack: str) -> list[str]:
    """``--stack`` of one server stack: the transports in ``names`` that have it. Those that
    lack it are named on stderr as not measured (transports.stacks.split); none left, or an
    unknown stack, is a one-line error."""
    import sys

    from transports import stacks

    try:
        stacks.parse(stack, many=False)
    except ValueError as exc:
        fail(str(exc))
    kept, left_out = stacks.split(map(transports.get, names), stack)
    if left_out:
        print(left_out, file=sys.stderr)
    if not kept:
        fail(f"no transport here has a {stack} stack")
    return [r.name for r in kept]
