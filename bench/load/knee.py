"""The knee search: the most users a transport holds within the SLO. Pure functions, no I/O.

The ladder grows by a factor per step (``ladder``); when its first step breaks, it goes on
downward, at most ``DOWN_STEPS`` steps, until one holds. After the first step that broke the
SLO no higher step runs; instead bisection steps run at the geometric mean of the last held and the
first broken count (``next_step``) until the bracket between them is as narrow as the search
aims at: ``refine`` halvings of the factor, hi / lo <= factor ** (0.5 ** refine)
(``target_ratio``; with 1.5 and 2, about 1.107). Then the two edges run again until each ran
``repeats`` times: one window near the break is a coin toss on a noisy machine, and every step
starts from no users (bench.load.run._empty), so its runs are independent tosses; the
transports' searches take a step each in turn (``run_interleaved``), so a drift of the machine's
speed falls on all of them alike. A count held
when most of its runs held (``collapse``; a tie counts as broken). When the repeats move an
edge (the knee broke in most of its runs, or the break held), the bracket is wide again and
the search bisects again, then repeats the new edges. At most ``max_bisects(refine)``
bisections run in all, so the search always ends (in at most ``step_cap`` steps); one that
ended wider than the target is unsettled (``settled``).

The knee is the busiest held count below the first break (``knee_of``): a held count above a
broken one is noise, not capacity. The bracket [knee, first break) is the capacity estimate
only when it is settled: an unsettled bracket (up to a whole ladder step wide, or more) must
never be reported as a knee by itself. ``fit`` fits P(held) against log(users) over every run,
where the runs overlap enough to allow one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.results.fit import fit as fit  # over the runs a search wrote (bench.results)

# Bisections on top of ``refine`` when repeats move an edge: the cap that ends the search.
EXTRA_BISECTS = 4
# Ladder steps below the start while nothing held (``next_step``'s ``down``): a factor of 1.5
# three times is 3.4x, this machine's day-to-day range.
DOWN_STEPS = 3


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


def factor_of(counts: Sequence[int]) -> float:
    """The factor a ``ladder`` grew by, read back from its counts: the widest ratio of one count
    to the next where ``int(n * factor)`` decided (not the +1 floor, not the final ``limit``);
    rounding down only narrows a step, so this is the factor up to one user in the start. A
    ladder too short to tell gives its widest ratio (2.0 when it has one count)."""
    pairs = list(itertools.pairwise(counts))
    grown = [b / a for a, b in pairs[:-1] if b > a + 1]
    ratios = grown or [b / a for a, b in pairs if a > 0]
    return max(ratios, default=2.0)


def target_ratio(factor: float, refine: int) -> float:
    """The bracket width hi / lo the search aims at: ``refine`` halvings of one ladder step."""
    return factor ** (0.5**refine)


def max_bisects(refine: int) -> int:
    """Bisections the search may run in all: ``refine`` plus a few when repeats move an edge."""
    return refine + EXTRA_BISECTS


def step_cap(ladder_len: int, refine: int, repeats: int) -> int:
    """Steps the search can run at most: each ladder or bisection count, ``repeats`` times (a
    count runs again only as an edge with fewer than ``repeats`` runs)."""
    return (ladder_len + max_bisects(refine) + DOWN_STEPS) * max(1, repeats)


def within(lo: int, hi: int, target: float) -> bool:
    """The bracket [lo, hi) is as narrow as ``target``, give or take one user of rounding (so
    two adjacent counts always are: nothing lies between them to try)."""
    return lo > 0 and hi <= lo * target + 1


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


def table(done: Sequence[Outcome]) -> list[tuple[int, int, int]]:
    """(clients, runs held, runs) of every count tried, by clients: what ``fit`` reads."""
    return [(c, *runs_of(done, c)) for c in sorted({o.clients for o in done})]


def bracket(done: Sequence[Outcome]) -> tuple[int, int] | None:
    """(last held below the first break, first break), or None while nothing broke. No count
    tried lies strictly between the two (it would be held above ``lo`` or broken below ``hi``),
    so a bisection always tries a new count."""
    done = collapse(done)
    broke = [o.clients for o in done if not o.held]
    if not broke:
        return None
    hi = min(broke)
    lo = max((o.clients for o in done if o.held and o.clients < hi), default=0)
    return lo, hi


def next_step(
    done: Sequence[Outcome],
    planned: Sequence[int],
    refine_left: int,
    repeats: int = 1,
    target: float = 1.0,
    down: float = 0.0,
) -> tuple[int, str] | None:
    """(client count, why: "ladder", "bisect" or "repeat") of the next step, or None when the
    search is over. ``planned`` is the ladder still ahead; ``refine_left`` how many bisection
    steps may still run (``max_bisects(refine)`` at the start, one less after each bisection);
    ``repeats`` how often each edge must have run; ``target`` the bracket width hi / lo at which
    bisecting stops (``target_ratio``). A bisection comes before the repeats, and again whenever
    the repeats moved an edge and left the bracket wider than ``target``. The default target,
    1.0, bisects while the budget lasts: ``refine_left`` alone decides (the search before issue
    23, where it was the refine count). ``down``, the ladder's factor: while nothing held, the
    ladder goes on downward from the lowest break, at most ``DOWN_STEPS`` times (a slow day can
    break the first step; 0: it does not, and that search ends with no knee)."""
    edge = bracket(done)
    if edge is None:
        return (planned[0], "ladder") if planned else None
    lo, hi = edge
    tried = {o.clients for o in done}
    if lo == 0 and down > 1 and len(tried) <= DOWN_STEPS and (below := int(hi / down)) >= 1:
        return below, "ladder"  # every count tried broke: the start and the steps down so far
    mid = round(math.sqrt(lo * hi)) if lo else 0
    wide = lo > 0 and not within(lo, hi, target)
    if refine_left > 0 and wide and lo < mid < hi and mid not in {o.clients for o in done}:
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


def settled(done: Sequence[Outcome], target: float, repeats: int) -> bool:
    """The search found its bracket: something held and something broke, the bracket is within
    ``target`` and both edges ran ``repeats`` times. False otherwise: the bracket (if any) is
    then wider than aimed at or rests on fewer runs, and is no capacity estimate by itself."""
    edge = bracket(done)
    if edge is None or edge[0] == 0:
        return False
    lo, hi = edge
    return within(lo, hi, target) and min(runs_of(done, lo)[1], runs_of(done, hi)[1]) >= repeats
