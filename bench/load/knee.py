"""The knee search: the most users a transport holds within the SLO. Pure functions, no I/O.

The ladder grows by a factor per step (``ladder``). After the first step that broke the SLO no
higher step runs; instead up to ``refine`` bisection steps run at the geometric mean of the last
held and the first broken count (``next_step``). The knee is the busiest held step below the
first break (``knee_of``): a held step above a broken one is noise, not capacity.
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


def bracket(done: Sequence[Outcome]) -> tuple[int, int] | None:
    """(last held below the first break, first break), or None while nothing broke."""
    broke = [o.clients for o in done if not o.held]
    if not broke:
        return None
    hi = min(broke)
    lo = max((o.clients for o in done if o.held and o.clients < hi), default=0)
    return lo, hi


def next_step(done: Sequence[Outcome], planned: Sequence[int], refine_left: int) -> int | None:
    """The client count of the next step, or None when the search is over.

    ``planned`` is the ladder still ahead; ``refine_left`` how many bisection steps remain.
    """
    edge = bracket(done)
    if edge is None:
        return planned[0] if planned else None
    lo, hi = edge
    mid = round(math.sqrt(lo * hi)) if lo else 0
    if refine_left > 0 and lo < mid < hi and mid not in {o.clients for o in done}:
        return mid
    return None


def knee_of(done: Sequence[Outcome]) -> tuple[int | None, int | None]:
    """(knee, broke_at): the busiest held count below the first break, and that break."""
    edge = bracket(done)
    broke_at = edge[1] if edge else None
    held = [o.clients for o in done if o.held and o.clients < (broke_at or math.inf)]
    return (max(held) if held else None), broke_at
