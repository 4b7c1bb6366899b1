"""Charts of the measured steps, one workload per axis.

A workload is a per-user token rate: the knee search's steps (40 tok/s per user) and a 50,000-user
hold at a fraction of a token per second are different questions, so only one is drawn on an axis
(``workload``); the others are named under the charts, their figures in the tables. Repeats at
one user count (the knee's edges are run several times, passes pool) are drawn as their median
with the spread of the runs, or of one run's windows, not as a zig-zag line. A step whose load
generator was the bottleneck is drawn hollow: it bounds the harness, not the server.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import transports
from bench.report.figures import NAMES
from bench.report.tables import held
from bench.results.hist import Histogram, bucket_bounds
from bench.results.queries import headline_runs

COLORS = {t.name: t.color for t in transports.all_transports()}
ORDER = transports.names()  # a transport the registry does not know is not drawn
Steps = dict[str, list[dict[str, Any]]]
SPREAD = ("line: the median of the runs at each count; bar: their lowest to highest (one run: "
          "over its windows)\nhollow: the load generator was the bottleneck")  # fmt: skip


def rate_of(doc: dict[str, Any], transport: str) -> float | None:
    """The token rate per user of ``transport``'s runs in ``doc`` (``--rate-from`` sets one per
    transport)."""
    cfg = doc.get("config") or {}
    return (cfg.get("rates") or {}).get(transport) or cfg.get("rate")


def steps_of(docs: list[dict[str, Any]]) -> Steps:
    """Every measured step of the stock servers per transport, over all bench runs, each tagged
    with its run (``_run``), its rate per user (``_rate``) and whether a knee search made it."""
    out: Steps = {}
    for k, doc in enumerate(docs):
        for run in headline_runs(doc):
            t = run["transport"]
            for st in run["steps"]:
                tag = {"_run": k, "_rate": rate_of(doc, t), "_knee": bool(run.get("knee"))}
                out.setdefault(t, []).append({**st, **tag})
    return {t: sorted(s, key=lambda st: (st["_run"], st["clients"])) for t, s in out.items()}


def workload(steps: Steps) -> float | None:
    """The rate per user the charts draw: the knee search's (the highest, as the fleet takes),
    else the rate most steps ran at."""
    every = [st for s in steps.values() for st in s]
    knee = [st["_rate"] for st in every if st["_knee"] and st["_rate"] is not None]
    if knee:
        return max(knee)
    rates = [st["_rate"] for st in every]
    return max(set(rates), key=rates.count) if rates else None


def at_rate(steps: Steps, rate: float | None) -> tuple[Steps, Steps]:
    """(the steps at ``rate``, the others), per transport."""
    on: Steps = {t: [st for st in s if st["_rate"] == rate] for t, s in steps.items()}
    off: Steps = {t: [st for st in s if st["_rate"] != rate] for t, s in steps.items()}
    return {t: s for t, s in on.items() if s}, {t: s for t, s in off.items() if s}


Figure = Callable[[dict[str, Any]], float | None]  # a step's (or a window's) figure


def _spread(
    group: list[dict[str, Any]], value: Figure, window: Figure
) -> tuple[float, float, float] | None:
    """(median, lowest, highest) of the runs at one count; one run: the spread of its windows."""
    vals = [v for v in map(value, group) if v is not None]
    if not vals:
        return None
    mid, seen = statistics.median(vals), list(vals)
    if len(vals) == 1:
        seen += [v for st in group for w in st.get("windows") or [] if (v := window(w)) is not None]
    return mid, min(seen), max(seen)


def line_chart(
    steps: Steps, value: Callable[[dict[str, Any]], float | None],
    window: Callable[[dict[str, Any]], float | None], ylabel: str, title: str, path: Path,
    log_y: bool = False, lines: tuple[tuple[float, str, str], ...] = (),
) -> Path:  # fmt: skip
    """One figure against users per transport; ``lines``: (y, label, style) drawn across, with a
    legend entry each (the SLO)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for t in ORDER:
        by: dict[int, list[dict[str, Any]]] = {}
        for st in steps.get(t, []):
            by.setdefault(st["clients"], []).append(st)
        pts = []
        for n, group in sorted(by.items()):
            s = _spread(group, value, window)
            if s is not None and (not log_y or s[1] > 0):
                pts.append((n, *s, any(st.get("limited_by") == "loadgen" for st in group)))
        if not pts:
            continue
        c = COLORS[t]
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], "-", color=c, label=NAMES[t])
        ax.vlines(xs, [p[2] for p in pts], [p[3] for p in pts], color=c, linewidth=3, alpha=0.4)
        for x, mid, _, _, harness in pts:
            ax.plot(x, mid, "o", color=c, markerfacecolor="white" if harness else c)
    for y, label, style in lines:
        ax.axhline(y, color="black", linestyle=style, linewidth=1, label=label)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("concurrent users")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, SPREAD, fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def bar_chart(values: dict[str, float | None], ylabel: str, title: str, path: Path) -> Path:
    """One figure per transport."""
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    names = [t for t in ORDER if values.get(t) is not None]
    bars = ax.bar([NAMES[t] for t in names], [values[t] for t in names],
                  color=[COLORS[t] for t in names])  # fmt: skip
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def largest(steps: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> float | None:
    """The figure at the most users that has it."""
    for st in sorted(steps, key=lambda s: s["clients"], reverse=True):
        if (v := key(st)) is not None:
            return v
    return None


def ttft_chart(steps: Steps, path: Path) -> Path:
    """The time-to-first-token distribution of each transport's busiest step that held."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for t in ORDER:
        ok = [st for st in steps.get(t, []) if held(st)] or steps.get(t, [])
        if not ok:
            continue
        st = max(ok, key=lambda s: s["clients"])
        hist = Histogram.from_json(st["histograms"]["ttft_us"])
        if not hist.count:
            continue
        xs, ys, seen = [], [], 0
        for i, n in enumerate(hist.counts):
            if n:
                seen += n
                xs.append(bucket_bounds(i)[1] / 1000)
                ys.append(seen / hist.count)
        ax.step(xs, ys, where="post", color=COLORS[t], label=f"{NAMES[t]} ({st['clients']} users)")
    ax.set_xscale("log")
    ax.set_xlabel("time to first token, ms (POST sent to first token)")
    ax.set_ylabel("share of answers")
    ax.set_title("Time to first token (the busiest step that held)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
