"""The knee search: the most users a transport holds within the SLO. Pure functions, no I/O.

The ladder grows by a factor per step (``ladder``). After the first step that broke the SLO no
higher step runs; instead up to ``refine`` bisection steps run at the geometric mean of the last
held and the first broken count (``next_step``). Then the two edges, the last held and the first
broken count, run again until each ran ``repeats`` times: one window near the break is a coin
toss on a noisy machine. A count held when most of its runs held (``collapse``; a tie counts as
broken). The knee is the busiest held count below the first break (``knee_of``): a held count
above a broken one is noise, not capacity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    clients: int
    held: bool


def ladder(start: int, limit: int, factor: float) -> list[int]:
    """Client counts from ``start`` up by ``factor`` (at least +1), ending exactly at ``limit``."""
    out, n = [], max(1, start)
    while n < limit:
        out.append(n)
        n = max(n + 1, int(n * factor))
    out.append(limit)
    return out


def collapse(done: Sequence[Outcome]) -> list[Outcome]:
    """One outcome per count: held if most of its runs held (a tie is broken)."""
    runs: dict[int, list[bool]] = {}
    for o in done:
        runs.setdefault(o.clients, []).append(o.held)
    return [Outcome(c, 2 * sum(h) > len(h)) for c, h in sorted(runs.items())]


def runs_of(done: Sequence[Outcome], clients: int) -> tuple[int, int]:
    """(runs held, runs) of one count."""
    held = [o.held for o in done if o.clients == clients]
    return sum(held), len(held)


def bracket(done: Sequence[Outcome]) -> tuple[int, int] | None:
    """(last held below the first break, first break), or None while nothing broke."""
    done = collapse(done)
    broke = [o.clients for o in done if not o.held]
    if not broke:
        return None
    hi = min(broke)
    lo = max((o.clients for o in done if o.held and o.clients < hi), default=0)
    return lo, hi


def next_step(
    done: Sequence[Outcome], planned: Sequence[int], refine_left: int, repeats: int = 1
) -> tuple[int, str] | None:
    """(client count, why: "ladder", "bisect" or "repeat") of the next step, or None when the
    search is over. ``planned`` is the ladder still ahead; ``refine_left`` how many bisection
    steps remain; ``repeats`` how often each edge must have run."""
    edge = bracket(done)
    if edge is None:
        return (planned[0], "ladder") if planned else None
    lo, hi = edge
    mid = round(math.sqrt(lo * hi)) if lo else 0
    if refine_left > 0 and lo < mid < hi and mid not in {o.clients for o in done}:
        return mid, "bisect"
    for count in (lo, hi):
        if count and runs_of(done, count)[1] < repeats:
            return count, "repeat"
    return None


def knee_of(done: Sequence[Outcome]) -> tuple[int | None, int | None]:
    """(knee, broke_at): the busiest held count below the first break, and that break."""
    edge = bracket(done)
    broke_at = edge[1] if edge else None
    held = [o.clients for o in collapse(done) if o.held and o.clients < (broke_at or math.inf)]
    return (max(held) if held else None), broke_at
