"""The stack registry: one record per server stack, defined once, like the transports.

Rules of this module:
- A stack is a way of serving a transport's wire: ``stock`` (what a FastAPI team writes first),
  ``lean`` (the same app with a raw handler on its hot route), ``granian`` (the stock app on a
  Rust server). Its record holds what the CLI, the report and the tests say about it.
- A transport names the server module of each stack it has (``Transport.servers``); nothing
  outside a stack's own modules compares a stack's name, except ``stock``, the baseline every
  transport has and every headline figure comes from.
- One rule for a stack a transport lacks (``split``): that transport is left out of the run, one
  line says so, and its figures read "not measured". Nothing falls back to another stack.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transports import Transport

STOCK = "stock"
# The stacks the protocol verdicts judge each protocol on, at its best, against stock
# (bench/report/verdicts.py, "the cost difference is the protocol's"): the first of these a
# run measured for both SSE and WebSocket; the verdict's reason names it.
TUNED = ("floor", "lean")


@dataclass(frozen=True)
class Stack:
    name: str  # in the CLI (``--stack``), results.json, report rows
    short: str  # a few words in a verdict's reason
    what: str  # one clause: what it is, for the report
    # How long a live reader's tokens may wait while four readers stall with a backlog each
    # (tests/test_resilience.py): the stack's fairness, as its tests hold it.
    stalled_delay_s: float = 0.5


_STACKS: dict[str, Stack] = {}


def register(stack: Stack) -> Stack:
    """Add a stack (the registry's order is the report's); the same name replaces."""
    _STACKS[stack.name] = stack
    return stack


def names() -> tuple[str, ...]:
    return tuple(_STACKS)


def get(name: str) -> Stack:
    """The record for ``name``; ``ValueError`` with the choices if there is none."""
    try:
        return _STACKS[name]
    except KeyError:
        raise ValueError(f"--stack: {', '.join(names())}, not {name!r}") from None


def parse(spec: str, many: bool = True) -> list[str]:
    """``--stack``: a name, or a comma list where ``many``; ``ValueError`` in one line."""
    chosen = [s.strip() for s in spec.split(",") if s.strip()]
    if not chosen or (len(chosen) > 1 and not many) or any(s not in _STACKS for s in chosen):
        choices = ", ".join(names())
        raise ValueError(f"--stack: {choices}{' (a comma list)' if many else ''}, not {spec!r}")
    return chosen


def choices(many: bool = True) -> str:
    """The CLI's help for ``--stack``."""
    listed = ", ".join(names())
    return f"{listed}, or a comma list" if many else f"{listed} (where a transport has it)"


def split(records: Iterable[Transport], stack: str) -> tuple[list[Transport], str | None]:
    """The one rule for a stack a transport lacks: the transports that have ``stack``, and a
    line naming those left out (None if none was)."""
    records = list(records)
    kept = [r for r in records if stack in r.stacks]
    lacking = [r.name for r in records if stack not in r.stacks]
    if not lacking:
        return kept, None
    return kept, f"== no {stack} stack for {', '.join(lacking)}: not measured"


def order(stack: str) -> int:
    """The stack's place in reports (an unknown stack from an old run goes last)."""
    return names().index(stack) if stack in _STACKS else len(_STACKS)


register(
    Stack(
        STOCK,
        "sse-starlette, FastAPI WebSocket",
        "what a FastAPI team writes first (sse-starlette, FastAPI's WebSocket and routes, "
        "grpc.aio, on uvicorn)",
    )
)
register(
    Stack(
        "lean",
        "raw ASGI",
        "the same app with a raw ASGI handler in front of the read route (servers/http/lean.py)",
    )
)
register(
    Stack(
        "granian",
        "the stock app on granian",
        "the stock app on granian, a Rust server (servers/http/granian.py; no WebSocket: granian "
        "sends no pings)",
        # granian writes from its own threads: while stalled readers' backlogs were produced,
        # a live SSE reader waited 0.53 to 0.61 s in two test runs of three on 2026-12-08
        # (2.5 ms in the third; every other stack: 60 ms at most)
        stalled_delay_s=2.0,
    )
)
register(
    Stack(
        "floor",
        "asyncio.Protocol, no task per reader",
        "the read on asyncio.Protocol with httptools, paced by one timer wheel per process, one "
        "write per connection per tick, the stock app for everything else (servers/http/floor.py)",
    )
)
