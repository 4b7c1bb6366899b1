"""The floor stack's targets (issue 26), each judged on figures that runs measured.

Rules of this module:
- A target is a goal on a figure, normalised by the run's own yardstick: ``syscall_us``, the
  kernel's cost of one small loopback write and read (bench/load/yardstick.py), or the
  reference machine (figures.Knee.normalised_users_per_core). The physical limit is one core's
  writes a second at ``syscall_us``, one write per token, over 40 tokens a second per user.
- Runs are picked by what they are, not by name: floor knees at 40 tok/s (and at a 100 ms write
  window), the floor's memory per connection at 10,000 connections or more (the worst point
  counts), the newest 50,000-user hold at 1 tok/s with 60-token answers on the floor stack
  (the best transport's where it has one), and the knees of ``make bench``'s knee job (runs
  with a ``knee_budget_s``: the load generator's bound).
- A knee's own doubts go into its text: unsettled, cut short, pinning leaked (then its users per
  core are not judged: they are inflated). Where the logistic fit left a knee open above but a
  count broke, the bracket [held, broke) is judged.
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
from bench.report.stats import Interval, bracket
from bench.results.queries import Variant, runs_of
from transports import stacks

# the stack the targets are for: the first the protocol verdicts judge on (the floor)
STACK = stacks.TUNED[0]
FLOOR = Variant(STACK)
FLUSH = Variant(STACK, flush_ms=100.0)
RATE = 40.0
CPU_GOALS = {"sse": 1.5, "ws": 1.5, "grpc": 2.0, "poll": 4.0}  # × syscall_us, server
BEST_CPU = 1.2
LOADGEN_GOALS = {"sse": 1.0, "ws": 1.0, "grpc": 1.5, "poll": 1.5}  # × syscall_us, load side
SHARE_EACH, SHARE_BEST = 0.25, 0.70  # of the physical limit, users per core
FLUSH_USERS = 10_000  # users per core on the reference machine, --flush-ms 100
MEMORY_KIB, MEMORY_AT = 10.0, 10_000
HOLD_USERS, HOLD_P99_MS, HOLD_TTFT_MS = 50_000, 250.0, 1_000.0
HOLD_RATE, HOLD_TOKENS = 1.0, 60


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


def _knee_docs(docs: list[dict[str, Any]], variant: Variant) -> list[dict[str, Any]]:
    """The documents with knee runs of ``variant`` at 40 tok/s."""

    def knee(r: dict[str, Any]) -> bool:
        return bool(r.get("knee")) and len(r["steps"]) > 1

    return [d for d in docs if d.get("config", {}).get("rate") == RATE
            and any(map(knee, runs_of(d, variant)))]  # fmt: skip


def _yardstick(docs: list[dict[str, Any]]) -> float | None:
    known = [y for y in map(syscall_us, docs) if y is not None]
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
    close = ")" if x.open_hi or not math.isfinite(x.hi) else "]"
    return f"{f(x.mean)}{unit} [{f(x.lo)}, {f(x.hi)}{close}"


def _doubts(k: Knee) -> str:
    """What the knee itself is unsure of, as a suffix of its text."""
    said = ["unsettled" if k.settled is False else "", "cut short" if k.cut else "",
            "pinning leaked" if k.over_cores else ""]  # fmt: skip
    said = [w for w in said if w]
    return f" ({', '.join(said)})" if said else ""


def _best(name: str, goal: float, by: dict[str, Interval], lowest: bool, of: int) -> Target:
    """The 'best transport' form of a target: the transport with the lowest (or highest) mean,
    of the ``of`` transports the target names."""
    shown = f"≤ {goal:g}" if lowest else f"≥ {goal * 100:.0f} %"
    if not by:
        return Target(name, "best", shown, "-", "not measured")
    who = (min if lowest else max)(by, key=lambda w: by[w].mean)
    x = by[who]
    measured = _show(x) if lowest else _show(x, 0, " %", 100)
    if len(by) < of:
        measured += f" (best of the {len(by)} of {of} measured)"
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
        measured = f"{_show(x)} ({k.cpu_us_per_token.mean:.1f} µs at {k.clients:,} users)"
        rows.append(Target(name, NAMES[t], f"≤ {goal:g}", measured, at_most(x, goal)))
    return [_best(name, BEST_CPU, ratios, True, len(CPU_GOALS)), *rows]


def _per_core(k: Knee) -> tuple[Interval, str]:
    """The knee's users per core; its bracket where the fit left it open above but a count broke."""
    x = k.users_per_core
    if x.bounded or k.broke_at is None or k.harness_bound:  # the load generator's break
        return x, ""
    cores = max(k.server_cores, 1)
    return bracket(k.clients / cores, k.broke_at / cores), "; the fit is open above: its bracket"


def capacity(knees: dict[str, Knee], sys_us: float | None) -> list[Target]:
    """Users per server core at 40 tok/s, as a share of the physical limit."""
    name = "users per core at 40 tok/s (share of the physical limit)"
    limit = None if sys_us is None else 1e6 / (sys_us * RATE)
    rows, shares = [], {}
    for t in CPU_GOALS:
        k, goal = knees.get(t), f"≥ {SHARE_EACH * 100:.0f} %"
        if k is None or limit is None:
            rows.append(Target(name, NAMES[t], goal, "-", "not measured"))
            continue
        users, how = _per_core(k)
        x = users.scaled(1 / limit)
        measured = (f"{_show(x, 0, ' %', 100)} ({users.mean:,.0f} of {limit:,.0f}{how})"
                    f"{_doubts(k)}")  # fmt: skip
        if k.over_cores:  # its users per core are inflated: not a capacity per core
            rows.append(Target(name, NAMES[t], goal, measured, "not measured"))
            continue
        shares[NAMES[t]] = x
        rows.append(Target(name, NAMES[t], goal, measured, at_least(x, SHARE_EACH)))
    return [_best(name, SHARE_BEST, shares, False, len(CPU_GOALS)), *rows]


def flush(knees: dict[str, Knee], slo_ms: float | None) -> list[Target]:
    """Users per core at --flush-ms 100 on the reference machine; a knee held the run's p99
    SLO, which must be 250 ms or less."""
    name = "users per core at --flush-ms 100 (reference machine)"
    goal = f"≥ {FLUSH_USERS:,}, p99 ≤ {HOLD_P99_MS:g} ms"
    got = {t: (k, k.normalised_users_per_core()) for t, k in knees.items() if not k.over_cores}
    got = {t: (k, x) for t, (k, x) in got.items() if x is not None}
    if not got or slo_ms is None or slo_ms > HOLD_P99_MS:
        return [Target(name, "best", goal, "-", "not measured")]
    t = max(got, key=lambda t: got[t][1].mean)
    k, x = got[t]
    p99 = "" if k.p99_ms is None else f", p99 {k.p99_ms.mean:,.0f} ms"
    measured = f"{NAMES[t]}: {_show(x, 0)}{p99}{_doubts(k)}"
    return [Target(name, "best", goal, measured, at_least(x, FLUSH_USERS))]


def memory(points: dict[str, list[tuple[int, Interval, str]]]) -> list[Target]:
    """Server memory per connection at 10,000 connections or more: the worst point counts."""
    name = f"server memory per connection at {MEMORY_AT:,}+ connections (KiB)"
    rows = []
    for t in CPU_GOALS:
        big = [p for p in points.get(t, []) if p[0] >= MEMORY_AT]
        if not big:
            rows.append(Target(name, NAMES[t], f"≤ {MEMORY_KIB:g}", "-", "not measured"))
            continue
        n, worst, gc = max(big, key=lambda p: p[1].mean)
        x = worst.scaled(1 / 1024)
        measured = f"{_show(x, 1)} ({n:,} connections, gc {gc}; worst of {len(big)})"
        rows.append(Target(name, NAMES[t], f"≤ {MEMORY_KIB:g}", measured, at_most(x, MEMORY_KIB)))
    return rows


def _holds(docs: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(date, transport, last step) of every floor run of 50,000 users at 1 tok/s with
    60-token answers and no write window."""
    out = []
    for d in docs:
        c = d.get("config", {})
        if c.get("rate") != HOLD_RATE or c.get("tokens") != HOLD_TOKENS:
            continue
        for r in runs_of(d, FLOOR) + runs_of(d, Variant(STACK, "tuned")):
            if r["steps"] and r["steps"][-1]["clients"] >= HOLD_USERS:
                out.append((d.get("machine", {}).get("date") or "", r["transport"], r["steps"][-1]))
    return sorted(out, key=lambda h: h[0])


def hold(docs: list[dict[str, Any]], best: str | None = None) -> list[Target]:
    """The newest 50,000-user hold with churn in its window, of the ``best`` transport where it
    has one (module rules)."""
    name = f"{HOLD_USERS:,} users at 1 tok/s with churn"
    goal = (f"{HOLD_USERS:,} connected, p99 ≤ {HOLD_P99_MS:g} ms, first token p99 ≤ 1 s, "
            f"0 lost, 0 unread, 0 failed")  # fmt: skip
    holds = _holds(docs)
    if best is not None and any(t == best for _, t, _ in holds):
        holds = [h for h in holds if h[1] == best]
    if not holds:
        return [Target(name, "best", goal, "-", "not measured")]
    churned = [h for h in holds if h[2].get("streams_done")]
    if not churned:
        return [Target(name, NAMES[holds[-1][1]], goal, "no answer ended in the window: no churn",
                       "not measured")]  # fmt: skip
    _, t, st = churned[-1]
    connected = st["server"].get("connections")
    p99 = st["latency_ms"].get("p99")
    ttft = st["ttft_ms"]["p99"] if st["ttft_ms"].get("count") else None
    lost, unread, failed = st.get("lost"), st.get("unread"), st.get("streams_failed")
    figures_ = (connected, p99, ttft, lost, unread, failed)
    if st.get("limited_by") == "loadgen":
        return [Target(name, NAMES[t], goal, "limited by the load generator", "not measured")]
    if any(v is None for v in figures_):
        return [Target(name, NAMES[t], goal, "a figure is missing", "not measured")]
    measured = (f"{connected:,} connected in the window, p99 {p99:,.0f} ms, first token p99 "
                f"{ttft / 1e3:,.1f} s, {lost:,} lost, {unread:,} unread, {failed:,} "
                f"failed")  # fmt: skip
    ok = (connected >= HOLD_USERS and p99 <= HOLD_P99_MS and ttft <= HOLD_TTFT_MS
          and not lost and not unread and not failed)  # fmt: skip
    # what the load side says of itself (docs/results-schema.md): the figures stand, with it
    if (st.get("ramp") or {}).get("limited_by") == "loadgen":
        measured += "; its ramp was limited by the load generator"
    if st.get("loadgen", {}).get("costlier_than_server"):
        measured += "; the load generator was costlier than the server"
    return [Target(name, NAMES[t], goal, measured, "met" if ok else "missed")]


def loadgen(
    knees: dict[str, Knee], sys_us: float | None, decision: dict[str, Knee]
) -> list[Target]:
    """The load generator's CPU per token at each floor knee, in units of ``syscall_us``; and
    whether it bounded a knee of ``make bench``'s knee job (``decision``)."""
    name = "load generator CPU per token (× syscall_us)"
    rows = []
    for t, goal in LOADGEN_GOALS.items():
        k = knees.get(t)
        at_knee = [] if k is None else [s for s in k.steps if s["clients"] == k.clients]
        x = stats.of(figures.windows(at_knee, "loadgen_cpu_us_per_token"))
        if x is None or sys_us is None:
            rows.append(Target(name, NAMES[t], f"≤ {goal:g}", "-", "not measured"))
            continue
        x = x.scaled(1 / sys_us)
        rows.append(Target(name, NAMES[t], f"≤ {goal:g}", _show(x), at_most(x, goal)))
    bound = "LIMITED BY LOADGEN at a make bench knee"
    missing = [NAMES[t] for t in CPU_GOALS if t not in decision]
    hit = [NAMES[t] for t, k in decision.items() if k.harness_bound]
    if hit:
        rows.append(Target(bound, "every", "never", ", ".join(hit), "missed"))
    elif missing:
        rows.append(Target(bound, "every", "never", f"no knee of {', '.join(missing)}",
                           "not measured"))  # fmt: skip
    else:
        rows.append(Target(bound, "every", "never", f"none of {len(decision)}", "met"))
    return rows


def judge(docs: list[dict[str, Any]]) -> list[Target]:
    """Every target, from the documents given (module rules)."""
    at40 = _knee_docs(docs, FLOOR)
    floor, sys_us = figures.knees(at40, FLOOR), _yardstick(at40)
    flushed = _knee_docs(docs, FLUSH)
    slo = [d["config"].get("slo_ms") for d in flushed]
    points: dict[str, list[tuple[int, Interval, str]]] = {}
    for gc in ("stock", "tuned"):
        for t, pts in figures.memory_points(docs, Variant(STACK, gc)).items():
            points.setdefault(t, []).extend((n, x, gc) for n, x in pts.items())
    best = max(floor, key=lambda t: floor[t].users_per_core.mean) if floor else None
    decision = [d for d in docs if d.get("config", {}).get("knee_budget_s")]
    return (cpu(floor, sys_us) + capacity(floor, sys_us)
            + flush(figures.knees(flushed, FLUSH), max(slo) if slo and None not in slo else None)
            + hold(docs, best) + memory(points)
            + loadgen(floor, sys_us, figures.knees(decision)))  # fmt: skip


def yardstick_line(docs: list[dict[str, Any]]) -> str:
    """The floor knees' yardstick and the physical limit it sets, in words."""
    sys_us = _yardstick(_knee_docs(docs, FLOOR))
    if sys_us is None:
        return "No floor knee at 40 tok/s with a yardstick: the physical limit is not measured."
    return (f"Yardstick of the floor knees: `syscall_us` {sys_us:.2f} µs; physical limit "
            f"{1e6 / (sys_us * RATE):,.0f} users per core at {RATE:g} tok/s.")  # fmt: skip


def markdown(docs: list[dict[str, Any]]) -> str:
    rows = [f"| {t.target} | {t.who} | {t.goal} | {t.measured} | {t.outcome} |"
            for t in judge(docs)]  # fmt: skip
    head = ["| target | who | goal | measured | outcome |", "| --- | --- | --- | --- | --- |"]
    return "\n".join([yardstick_line(docs), "", *head, *rows])
