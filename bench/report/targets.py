"""The floor stack's targets (issue 26), each judged on figures that runs measured.

Rules of this module:
- A target is a goal on a figure, normalised by the run's own yardstick: ``syscall_us``, the
  kernel's cost of one small loopback write and read (bench/load/yardstick.py), or the
  reference machine (figures.Knee.normalised_users_per_core). The physical limit is one core's
  writes a second at ``syscall_us``, one write per token, over 40 tokens a second per user.
- Runs are picked by what they are, not by name: floor knees at 40 tok/s and at a 100 ms write
  window, the floor's memory per connection at 10,000 connections or more, a 50,000-user hold
  on the floor stack, and the stock knees of a ``make bench`` (the load generator's bound).
- An outcome is ``met`` when the figure's whole interval meets the goal, ``missed`` when none of
  it does, ``within noise`` when it straddles the goal, ``not measured`` when no run has it.
- Nothing here runs anything: the text is made of the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.report import figures, stats
from bench.report.figures import NAMES, Knee
from bench.report.stats import Interval
from bench.results.queries import Variant, runs_of

FLOOR = Variant("floor")
FLUSH = Variant("floor", flush_ms=100.0)
RATE = 40.0
CPU_GOALS = {"sse": 1.5, "ws": 1.5, "grpc": 2.0, "poll": 4.0}  # × syscall_us, server
BEST_CPU = 1.2
LOADGEN_GOALS = {"sse": 1.0, "ws": 1.0, "grpc": 1.5, "poll": 1.5}  # × syscall_us, load side
SHARE_EACH, SHARE_BEST = 0.25, 0.70  # of the physical limit, users per core
FLUSH_USERS = 10_000  # users per core on the reference machine, --flush-ms 100
MEMORY_KIB, MEMORY_AT = 10.0, 10_000
HOLD_USERS, HOLD_P99_MS, HOLD_TTFT_MS = 50_000, 250.0, 1_000.0


@dataclass(frozen=True)
class Target:
    target: str
    who: str  # a transport's label, "best" or "every"
    goal: str
    measured: str
    outcome: str  # met, missed, within noise, not measured


def syscall_us(doc: dict[str, Any]) -> float | None:
    """The run's kernel write + read, the median of its calibrations (before and after)."""
    ys = doc.get("machine", {}).get("yardstick") or {}
    got = [c["syscall_us"]["median"] for c in (ys.get("before"), ys.get("after")) if c]
    return sum(got) / len(got) if got else None


def _yardstick(docs: list[dict[str, Any]], variant: Variant) -> float | None:
    """The mean ``syscall_us`` of the documents holding knee runs of ``variant``."""
    got = [syscall_us(d) for d in docs if any(r.get("knee") for r in runs_of(d, variant))]
    known = [g for g in got if g is not None]
    return sum(known) / len(known) if known else None


def at_most(x: Interval, goal: float) -> str:
    return "met" if x.hi <= goal else "missed" if x.lo > goal else "within noise"


def at_least(x: Interval, goal: float) -> str:
    """A bracket [lo, hi) misses when ``hi``, where it broke, is at or under the goal."""
    if x.lo >= goal:
        return "met"
    return "missed" if (x.hi <= goal if x.open_hi else x.hi < goal) else "within noise"


def _show(x: Interval, digits: int = 2, unit: str = "", k: float = 1.0) -> str:
    """``mean [lo, hi]`` (a bracket ``[lo, hi)``, open above ``[lo, ...)``), times ``k``."""
    f = lambda v: "..." if not math.isfinite(v) else f"{v * k:,.{digits}f}"  # noqa: E731
    if x.lo == x.hi:
        return f(x.mean) + unit
    return f"{f(x.mean)}{unit} [{f(x.lo)}, {f(x.hi)}{')' if x.open_hi else ']'}"


def _best(name: str, goal: float, by: dict[str, Interval], lowest: bool) -> Target:
    """The 'best transport' form of a target: the transport with the lowest (or highest) mean."""
    shown = f"≤ {goal:g}" if lowest else f"≥ {goal:.0%}"
    if not by:
        return Target(name, "best", shown, "-", "not measured")
    who = (min if lowest else max)(by, key=lambda w: by[w].mean)
    x = by[who]
    measured = _show(x) if lowest else _show(x, 0, " %", 100)
    outcome = at_most(x, goal) if lowest else at_least(x, goal)
    return Target(name, "best", shown, f"{who}: {measured}", outcome)


def cpu(knees: dict[str, Knee], sys_us: float | None) -> list[Target]:
    """Server CPU per token at the knee, in units of ``syscall_us``."""
    name = "server CPU per token (× syscall_us)"
    rows, ratios = [], {}  # ratios: by transport label
    for t, goal in CPU_GOALS.items():
        k = knees.get(t)
        if k is None or k.cpu_us_per_token is None or sys_us is None:
            rows.append(Target(name, NAMES[t], f"≤ {goal:g}", "-", "not measured"))
            continue
        ratios[NAMES[t]] = x = k.cpu_us_per_token.scaled(1 / sys_us)
        rows.append(Target(name, NAMES[t], f"≤ {goal:g}", _show(x), at_most(x, goal)))
    return [_best(name, BEST_CPU, ratios, lowest=True), *rows]


def capacity(knees: dict[str, Knee], sys_us: float | None) -> list[Target]:
    """Users per server core at 40 tok/s, as a share of the physical limit."""
    name = "users per core at 40 tok/s (share of the physical limit)"
    limit = None if sys_us is None else 1e6 / (sys_us * RATE)
    rows, shares = [], {}
    for t in CPU_GOALS:
        k = knees.get(t)
        if k is None or limit is None:
            rows.append(Target(name, NAMES[t], f"≥ {SHARE_EACH:.0%}", "-", "not measured"))
            continue
        shares[NAMES[t]] = x = k.users_per_core.scaled(1 / limit)
        measured = f"{_show(x, 0, ' %', 100)} ({k.users_per_core.mean:,.0f} of {limit:,.0f})"
        rows.append(
            Target(name, NAMES[t], f"≥ {SHARE_EACH:.0%}", measured, at_least(x, SHARE_EACH))
        )
    return [_best(name, SHARE_BEST, shares, lowest=False), *rows]


def flush(knees: dict[str, Knee]) -> list[Target]:
    """Users per core at --flush-ms 100, normalised to the reference machine; a knee's p99 is
    within 250 ms by definition (the knee is the most users that held the SLO)."""
    name = "users per core at --flush-ms 100 (reference machine)"
    got = {t: k.normalised_users_per_core() for t, k in knees.items()}
    got = {t: x for t, x in got.items() if x is not None}
    if not got:
        return [Target(name, "best", f"≥ {FLUSH_USERS:,}", "-", "not measured")]
    t = max(got, key=lambda t: got[t].mean)
    measured = f"{NAMES[t]}: {_show(got[t], 0)}"
    return [Target(name, "best", f"≥ {FLUSH_USERS:,}", measured, at_least(got[t], FLUSH_USERS))]


def memory(points: dict[str, dict[int, Interval]]) -> list[Target]:
    """Server memory per connection at the most connections measured, 10,000 or more."""
    name = f"server memory per connection at {MEMORY_AT:,}+ connections (KiB)"
    rows = []
    for t in CPU_GOALS:
        scales = [n for n in points.get(t, {}) if n >= MEMORY_AT]
        if not scales:
            rows.append(Target(name, NAMES[t], f"≤ {MEMORY_KIB:g}", "-", "not measured"))
            continue
        x = points[t][max(scales)].scaled(1 / 1024)
        measured = f"{_show(x, 1)} ({max(scales):,} connections)"
        rows.append(Target(name, NAMES[t], f"≤ {MEMORY_KIB:g}", measured, at_most(x, MEMORY_KIB)))
    return rows


def hold(docs: list[dict[str, Any]]) -> list[Target]:
    """50,000 users on the floor stack at 1 tok/s with churn in the window: the last such run."""
    name = f"{HOLD_USERS:,} users at 1 tok/s with churn"
    goal = f"p99 ≤ {HOLD_P99_MS:g} ms, first token p99 ≤ 1 s, 0 lost, 0 unread"
    steps = [(NAMES[r["transport"]], r["steps"][-1]) for d in docs for r in d.get("runs", [])
             if r.get("stack") == "floor" and r["steps"] and not r.get("knee")
             and r["steps"][-1]["clients"] >= HOLD_USERS]  # fmt: skip
    if not steps:
        return [Target(name, "best", goal, "-", "not measured")]
    churned = [(who, st) for who, st in steps if st.get("streams_done")]
    if not churned:
        who = steps[-1][0]
        return [Target(name, who, goal, "no answer ended in the window: no churn", "not measured")]
    who, st = churned[-1]  # the last run with churn in its window
    connected = (st.get("ramp") or {}).get("users_connected") or st["clients"]
    ttft = st["ttft_ms"]["p99"] if st["ttft_ms"].get("count") else math.inf
    p99, lost, unread = st["latency_ms"]["p99"], st["lost"], st.get("unread") or 0
    ok = (connected >= HOLD_USERS and p99 <= HOLD_P99_MS and ttft <= HOLD_TTFT_MS
          and not lost and not unread)  # fmt: skip
    measured = (f"{connected:,} connected, p99 {p99:,.0f} ms, first token p99 {ttft / 1e3:,.1f} "
                f"s, {lost:,} lost, {unread:,} unread")  # fmt: skip
    return [Target(name, who, goal, measured, "met" if ok else "missed")]


def loadgen(
    knees: dict[str, Knee], sys_us: float | None, decision: dict[str, Knee]
) -> list[Target]:
    """The load generator's CPU per token at each floor knee, in units of ``syscall_us``; and
    whether it bounded a knee of ``make bench`` (its stock knees)."""
    name = "load generator CPU per token (× syscall_us)"
    rows = []
    for t, goal in LOADGEN_GOALS.items():
        k = knees.get(t)
        at_knee = [] if k is None else [s for s in k.steps if s["clients"] == k.clients]
        xs = figures.windows(at_knee, "loadgen_cpu_us_per_token")
        if not xs or sys_us is None:
            rows.append(Target(name, NAMES[t], f"≤ {goal:g}", "-", "not measured"))
            continue
        x = stats.of(xs)
        assert x is not None
        x = x.scaled(1 / sys_us)
        rows.append(Target(name, NAMES[t], f"≤ {goal:g}", _show(x), at_most(x, goal)))
    bound = "LIMITED BY LOADGEN at a make bench knee"
    if not decision:
        rows.append(Target(bound, "every", "never", "-", "not measured"))
    else:
        hit = [NAMES[t] for t, k in decision.items() if k.harness_bound]
        rows.append(Target(bound, "every", "never", ", ".join(hit) or "none of "
                           f"{len(decision)}", "missed" if hit else "met"))  # fmt: skip
    return rows


def judge(docs: list[dict[str, Any]]) -> list[Target]:
    """Every target, from the documents given (module rules)."""
    floor = figures.knees(docs, FLOOR)
    sys_us = _yardstick(docs, FLOOR)
    points: dict[str, dict[int, Interval]] = {}
    for gc in ("stock", "tuned"):
        for t, pts in figures.memory_points(docs, Variant("floor", gc)).items():
            points.setdefault(t, {}).update(pts)
    stock = figures.knees(docs)
    return (cpu(floor, sys_us) + capacity(floor, sys_us) + flush(figures.knees(docs, FLUSH))
            + hold(docs) + memory(points) + loadgen(floor, sys_us, stock))  # fmt: skip


def yardstick_line(docs: list[dict[str, Any]]) -> str:
    """The floor knees' yardstick and the physical limit it sets, in words."""
    sys_us = _yardstick(docs, FLOOR)
    if sys_us is None:
        return "No floor knee with a yardstick: the physical limit is not measured."
    return (f"Yardstick of the floor knees: `syscall_us` {sys_us:.2f} µs; physical limit "
            f"{1e6 / (sys_us * RATE):,.0f} users per core at {RATE:g} tok/s.")  # fmt: skip


def markdown(docs: list[dict[str, Any]]) -> str:
    rows = [f"| {t.target} | {t.who} | {t.goal} | {t.measured} | {t.outcome} |"
            for t in judge(docs)]  # fmt: skip
    head = ["| target | who | goal | measured | outcome |", "| --- | --- | --- | --- | --- |"]
    return "\n".join([yardstick_line(docs), "", *head, *rows])
