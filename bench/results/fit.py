"""The knee's logistic fit: the chance a step holds the SLO against log(users), over every run.

A pure function of (clients, runs held, runs) per count, as a knee document's ``runs`` lists
them: the search (bench.load.knee) writes it into the knee document, the report
(bench.report.figures) refits over every pass it pools.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# The chi-squared(1) quantile at 95 %: the profile likelihood's interval.
CHI2_95 = 3.841458820694124


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
    interval follows from the runs); a fitted P(held) that rises with users; or a 50 % point
    beyond half the fewest or twice the most users tried. An interval
    edge that does not close towards fewer users within half the fewest tried is that bound,
    and one that does not close towards more within twice the most tried is ``math.inf``."""
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
    if not lo_x - math.log(2) < m < hi_x + math.log(2):
        return None  # the 50 % point itself is outside what the runs reach
    lo = _edge(centred, m, s, ll, lo_x - math.log(2))
    hi = _edge(centred, m, s, ll, hi_x + math.log(2))
    # An edge that does not close within the range is as far as the runs reach: half the fewest
    # users tried below, unbounded (inf) above. The runs then do not place the knee: never
    # drop such a fit for the bare bracket, which would claim more.
    low = math.exp((lo if lo is not None else lo_x - math.log(2)) + x0)
    high = math.inf if hi is None else math.exp(hi + x0)
    return math.exp(m + x0), low, high
