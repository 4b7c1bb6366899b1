"""The knee search: the most users a transport holds within the SLO. Pure functions, no I/O.

The ladder grows by a factor per step (``ladder``). After the first step that broke the SLO no
higher step runs; instead bisection steps run at the geometric mean of the last held and the
first broken count (``next_step``) until the bracket between them is as narrow as the search
aims at: ``refine`` halvings of the factor, hi / lo <= factor ** (0.5 ** refine)
(``target_ratio``; with 1.5 and 2, about 1.107). Then the two edges run again until each ran
``repeats`` times: one window near the break is a coin toss on a noisy machine. A count held
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

# Bisections on top of ``refine`` when repeats move an edge: the cap that ends the search.
EXTRA_BISECTS = 4
# The chi-squared(1) quantile at 95 %: the profile likelihood's interval.
CHI2_95 = 3.841458820694124


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
    return (ladder_len + max_bisects(refine)) * max(1, repeats)


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
) -> tuple[int, str] | None:
    """(client count, why: "ladder", "bisect" or "repeat") of the next step, or None when the
    search is over. ``planned`` is the ladder still ahead; ``refine_left`` how many bisection
    steps may still run (``max_bisects(refine)`` at the start, one less after each bisection);
    ``repeats`` how often each edge must have run; ``target`` the bracket width hi / lo at which
    bisecting stops (``target_ratio``). A bisection comes before the repeats, and again whenever
    the repeats moved an edge and left the bracket wider than ``target``. The default target,
    1.0, bisects while the budget lasts: ``refine_left`` alone decides (the search before issue
    23, where it was the refine count)."""
    edge = bracket(done)
    if edge is None:
        return (planned[0], "ladder") if planned else None
    lo, hi = edge
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


# The fit: P(held) = 1 / (1 + exp(-s * (m - ln users))), m = ln(users at 50 %), s > 0.


def _softplus(eta: float) -> float:
    """ln(1 + e**eta) without overflow."""
    return eta + math.log1p(math.exp(-eta)) if eta > 0 else math.log1p(math.exp(eta))


def _sigmoid(eta: float) -> float:
    if eta >= 0:
        return 1 / (1 + math.exp(-eta))
    e = math.exp(eta)
    return e / (1 + e)


def _loglik(data: Sequence[tuple[float, int, int]], a: float, b: float) -> float:
    """Binomial log likelihood (without the constant) of logit p = a + b x."""
    return sum(h * (a + b * x) - n * _softplus(a + b * x) for x, h, n in data)


def _mle(data: Sequence[tuple[float, int, int]]) -> tuple[float, float] | None:
    """(a, b) maximising the likelihood of logit p = a + b x: Newton's method (the same as
    IRLS here) with step halving, at most 100 iterations. None if it does not converge."""
    a = b = 0.0
    ll = _loglik(data, a, b)
    for _ in range(100):
        g0 = g1 = h00 = h01 = h11 = 0.0
        for x, h, n in data:
            p = _sigmoid(a + b * x)
            r, w = h - n * p, n * p * (1 - p)
            g0, g1 = g0 + r, g1 + r * x
            h00, h01, h11 = h00 + w, h01 + w * x, h11 + w * x * x
        det = h00 * h11 - h01 * h01
        if det <= 0:
            return None
        da, db = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
        for _ in range(60):  # halve the step until the likelihood does not fall
            new = _loglik(data, a + da, b + db)
            if new >= ll - 1e-12:
                break
            da, db = da / 2, db / 2
        a, b, ll = a + da, b + db, new
        if abs(da) + abs(db) < 1e-10:
            return a, b
    return None


def _profile(data: Sequence[tuple[float, int, int]], m: float, s: float) -> float:
    """The log likelihood at 50 % point ``m``, maximised over the slope (from ``s``): logit p
    = s * (m - x) is concave in s; Newton with step halving, the slope kept within +-1e4."""
    ll = _loglik(data, s * m, -s)
    for _ in range(100):
        g = d = 0.0
        for x, h, n in data:
            z = m - x
            p = _sigmoid(s * z)
            g, d = g + (h - n * p) * z, d + n * p * (1 - p) * z * z
        if d <= 0:
            return ll
        step = g / d
        for _ in range(60):
            t = max(-1e4, min(1e4, s + step))
            new = _loglik(data, t * m, -t)
            if new >= ll - 1e-12:
                break
            step /= 2
        s, ll, moved = t, max(ll, new), abs(t - s)
        if moved < 1e-10:
            break
    return ll


def _edge(data: Sequence[tuple[float, int, int]], m: float, s: float, ll: float,
          towards: float) -> float | None:  # fmt: skip
    """Where the profile deviance from ``m`` towards ``towards`` first reaches CHI2_95
    (bisection to 1e-7 in ln users), or None if it does not before ``towards``."""
    dev = lambda at: 2 * (ll - _profile(data, at, s))  # noqa: E731
    near, n_grid = m, 64
    for k in range(1, n_grid + 1):
        far = m + (towards - m) * k / n_grid
        if dev(far) >= CHI2_95:
            break
        near = far
    else:
        return None
    for _ in range(60):
        mid = (near + far) / 2
        near, far = (mid, far) if dev(mid) < CHI2_95 else (near, mid)
        if abs(far - near) < 1e-7:
            break
    return (near + far) / 2


def fit(runs: Sequence[Sequence[int]]) -> tuple[float, float, float] | None:
    """(users at 50 %, lo, hi): a logistic fit of P(SLO held) against ln(users) over every run
    (``runs``: (clients, runs held, runs) per count, as ``table`` gives), by maximum
    likelihood, with a 95 % profile likelihood interval (the 50 % points whose likelihood,
    maximised over the slope, is within chi-squared(1) 3.84 / 2 of the best).

    None when the runs cannot support a fit, and then the bracket alone is the answer: all
    held or all broke; separated (every held run at fewer users than every broken run, or at
    most one count where both happened: the usual case with a few runs per count, where the
    likelihood grows without bound as the curve steepens into a step, so no 50 % point or
    interval follows from the runs); a fitted P(held) that rises with users; or an interval
    that does not close within half the fewest and twice the most users tried."""
    data = [(math.log(c), h, n) for c, h, n in runs if n > 0 and c > 0]
    held = [x for x, h, _ in data if h > 0]
    broke = [x for x, h, n in data if h < n]
    if not held or not broke or max(held) <= min(broke) or min(held) >= max(broke):
        return None
    x0 = sum(x * n for x, _, n in data) / sum(n for *_, n in data)  # centred: better Newton
    centred = [(x - x0, h, n) for x, h, n in data]
    ab = _mle(centred)
    if ab is None or ab[1] >= 0:
        return None
    a, b = ab
    m, s, ll = -a / b, -b, _loglik(centred, a, b)
    lo_x, hi_x = min(x for x, *_ in centred), max(x for x, *_ in centred)
    lo = _edge(centred, m, s, ll, lo_x - math.log(2))
    hi = _edge(centred, m, s, ll, hi_x + math.log(2))
    if lo is None or hi is None:
        return None
    return math.exp(m + x0), math.exp(lo + x0), math.exp(hi + x0)
