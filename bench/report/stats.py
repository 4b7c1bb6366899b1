"""Spread and intervals for the report's figures (pyperf's rules), and how two compare.

- A figure measured in n windows has a mean, a standard deviation and a 95 % interval for the
  mean (Student's t). It is **unstable** when its standard deviation is over 10 % of its mean
  (pyperf: "the standard deviation is greater than 10% of the mean").
- A knee is a bracket, not a sample: capacity is at least the busiest count held (by most of its
  runs) and below the first count broken, the half-open [held, broke). A knee that never broke,
  or whose break was the load generator's, is [held, inf): at least ``held``. The report widens
  a bracket to its logistic fit's 95 % interval where that is wider (bench.report.figures).
- Two figures **tie** when their intervals overlap, that is when the evidence allows either
  order; otherwise the ratio and its interval say by how much one is above the other. Brackets
  that only touch do not overlap: [610, 675) and [675, 747) say the second held where the first
  broke. ``compare`` is the one comparison every verdict, the fleet projection, what to ship and
  ``tokenbench compare`` use.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Student's t, two-sided 95 %, by degrees of freedom (beyond 30: 1.96 is close enough).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip
UNSTABLE = 0.10


def t95(df: int) -> float:
    for k in sorted(_T95):
        if df <= k:
            return _T95[k]
    return 1.96


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int
    sd: float = 0.0
    open_hi: bool = False  # a bracket: ``hi`` itself is excluded (it broke there)

    @property
    def rel_sd(self) -> float:
        return self.sd / abs(self.mean) if self.mean else 0.0

    @property
    def unstable(self) -> bool:
        return self.rel_sd > UNSTABLE

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.hi)

    def below(self, other: Interval) -> bool:
        """Every value this allows is under every value ``other`` allows."""
        return self.hi < other.lo or (self.hi == other.lo and self.open_hi)

    def overlaps(self, other: Interval) -> bool:
        return not (self.below(other) or other.below(self))

    def scaled(self, k: float) -> Interval:
        """The same interval times ``k`` > 0 (a unit change, per-core, normalised)."""
        return Interval(self.mean * k, self.lo * k, self.hi * k, self.n, self.sd * k, self.open_hi)

    def doc(self, digits: int = 4) -> dict[str, float | int | bool | None]:
        """JSON-safe: an unbounded ``hi`` is null."""
        r = lambda v: round(v, digits) if math.isfinite(v) else None  # noqa: E731
        out: dict[str, float | int | bool | None] = {
            "mean": r(self.mean), "lo": r(self.lo), "hi": r(self.hi), "n": self.n,
            "sd": r(self.sd), "unstable": self.unstable}  # fmt: skip
        if self.open_hi:
            out["open_hi"] = True
        return out


def show(d: dict[str, Any] | None, digits: int = 0) -> str:
    """An interval's doc as ``mean [lo, hi]``: a bracket ``[lo, hi)``, unbounded ``[lo, ...)``;
    "-" for none."""
    if not d:
        return "-"
    f = lambda v: "..." if v is None else f"{v:,.{digits}f}"  # noqa: E731
    if d["lo"] == d["hi"]:
        return f(d["mean"])
    close = ")" if d.get("open_hi") or d["hi"] is None else "]"
    return f"{f(d['mean'])} [{f(d['lo'])}, {f(d['hi'])}{close}"


def of(values: Iterable[float | None]) -> Interval | None:
    """The mean of ``values`` (None dropped) with its 95 % interval; None if there are none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        return Interval(mean, mean, mean, 1)
    sd = statistics.stdev(xs)
    half = t95(len(xs) - 1) * sd / math.sqrt(len(xs))
    return Interval(mean, mean - half, mean + half, len(xs), sd)


def bracket(held: int, broke: int | None) -> Interval:
    """A knee: capacity in [held, broke); at least ``held`` when nothing broke (``broke`` None).
    Its mean is ``held``, the capacity measured."""
    hi = float(broke) if broke is not None else math.inf
    return Interval(float(held), float(held), hi, 1, open_hi=True)


def ratio(a: Interval, b: Interval) -> tuple[float, float, float]:
    """b / a with the interval its two intervals allow: (ratio, low, high)."""
    if a.mean == 0 or a.lo <= 0 or a.hi <= 0:
        return math.nan, math.nan, math.nan
    if not a.bounded:
        return b.mean / a.mean, 0.0, b.hi / a.lo
    return b.mean / a.mean, b.lo / a.hi, b.hi / a.lo


def compare(a: Interval, b: Interval, lower_is_better: bool = False) -> str:
    """ "tie" when the intervals overlap, else which one is better: "a" or "b"."""
    if a.overlaps(b):
        return "tie"
    b_higher = a.below(b)
    return "a" if b_higher == lower_is_better else "b"
