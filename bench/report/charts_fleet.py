"""Charts of the fleet for 50,000 users at 40 tok/s: the server cores each transport needs (the
report's headline) and the memory per connection, drawn from the very functions the fleet table
and what to ship read (bench.report.figures), so chart and table cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report import figures
from bench.report.charts import COLORS, ORDER
from bench.results.queries import Variant
from transports import stacks

NAMES = figures.NAMES


def cores_rows(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fleet rows (bench.report.figures.fleet) of the stock servers and of every other stack
    with a knee, each labelled, in the registry's order."""
    rows = []
    for stack in stacks.names():
        for r in figures.fleet(docs, Variant(stack=stack)):
            label = NAMES[r["transport"]] + ("" if stack == stacks.STOCK else f" ({stack})")
            rows.append({**r, "label": label, "stack": stack})
    order = {t: i for i, t in enumerate(ORDER)}
    return sorted(rows, key=lambda r: (order.get(r["transport"], 99), stacks.order(r["stack"])))


def _words(r: dict[str, Any]) -> str:
    c = r["cores"]
    out = (f"at most {c['hi']:g} (its knee: at least)" if c["lo"] is None
           else f"{c['lo']:g} to {c['hi']:g}")  # fmt: skip
    flags = [w for w, on in (("unsettled", r["settled"] is False), ("unstable", r["knee_unstable"]),
                             ("machine drifted", r["machine_drifted"])) if on]  # fmt: skip
    return out + (f" ({', '.join(flags)})" if flags else "")


def cores_chart(rows: list[dict[str, Any]], path: Path) -> Path:
    """Server cores per transport (and stack) as the knee bracket implies them: a bar from the
    first count that broke to the last that held; an open bracket (the load generator's limit,
    or nothing broke) as a dashed arrow down from its most."""
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.55 * len(rows)), dpi=110)
    top = max(r["cores"]["hi"] for r in rows)
    for i, r in enumerate(rows):
        y, c, color = len(rows) - 1 - i, r["cores"], COLORS[r["transport"]]
        dashed = r["stack"] != "stock"
        if c["lo"] is None:
            ax.annotate("", xy=(0, y), xytext=(c["hi"], y), arrowprops={
                "arrowstyle": "->", "linestyle": "--", "color": color, "linewidth": 2})  # fmt: skip
            ax.plot(c["hi"], y, "|", color=color, markersize=16, markeredgewidth=3)
        else:
            ax.plot([c["lo"], c["hi"]], [y, y], color=color, linewidth=9, alpha=0.5,
                    linestyle="--" if dashed else "-", solid_capstyle="butt")  # fmt: skip
            ax.plot(c["mean"], y, "o", color=color)
        ax.text(c["hi"] + top * 0.02, y, _words(r), va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)])
    ax.set_xlim(0, top * 1.6)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("server cores on the measuring machine (fewer is cheaper)")
    ax.set_title(f"Server cores for {figures.USERS:,} users at {figures.RATE:g} tok/s each")
    ax.grid(True, axis="x", alpha=0.3)
    fig.text(0.01, 0.01, "bar: users / the knee bracket per core [held, broke); dot: the knee.\n"
             "Dashed arrow: the knee is at least (the load generator's limit, or nothing broke), "
             "so the cores are at most.", fontsize=7)  # fmt: skip
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def memory_bars(docs: list[dict[str, Any]]) -> list[tuple[str, float, int, float, float]]:
    """(transport, KiB per connection, connections it was measured at, low, high of its 95 %
    interval) per transport: ``figures.memory``, the fleet table's figure, rounded as it is."""
    mem = figures.memory(docs)
    return [(t, round(iv.mean / 1024, 1), n, iv.lo / 1024, iv.hi / 1024)
            for t in ORDER if t in mem for n, iv in [mem[t]]]  # fmt: skip


def memory_chart(docs: list[dict[str, Any]], path: Path) -> Path | None:
    """Memory per connection per transport at the most connections measured, with its 95 %
    interval over the windows (``memory_bars``)."""
    bars = memory_bars(docs)
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    means = [b[1] for b in bars]
    errs = [[max(b[1] - b[3], 0) for b in bars], [max(b[4] - b[1], 0) for b in bars]]
    drawn = ax.bar([NAMES[b[0]] for b in bars], means, yerr=errs, capsize=4,
                   color=[COLORS[b[0]] for b in bars])  # fmt: skip
    ax.bar_label(drawn, [f"{b[1]:.1f} KiB\nat {b[2]:,}" for b in bars], fontsize=8,
                 label_type="center")  # fmt: skip
    ax.set_ylabel("KiB per connection (95 % interval over windows)")
    ax.set_title("Server memory per connection (at the most connections held)")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
