"""The reconnect-recovery chart: per fault scenario, how long from the fault until a stream is
live again (detect + reconnect + catch up, p50 over the clients), per transport and client mode.
The same fault entries as the recovery table (bench.report.tables.merge_faults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report.charts import COLORS, ORDER
from bench.report.figures import NAMES

PHASES = ("detection_ms", "reconnect_ms", "catchup_ms")


def _entry(entries: list[dict[str, Any]], sc: str, t: str, mode: str) -> dict[str, Any] | None:
    return next((e for e in entries if (e["scenario"], e["transport"], e["mode"]) == (sc, t, mode)),
                None)  # fmt: skip


def faults_chart(entries: list[dict[str, Any]], path: Path) -> Path:
    """Bars of fault-to-live per scenario, one panel per client mode; a cross where streams never
    recovered, ``+?`` over a bar with a phase never seen (a lower bound)."""
    scenarios = list(dict.fromkeys(e["scenario"] for e in entries))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110, sharey=True)
    for ax, mode in zip(axes, ("default", "hardened"), strict=True):
        width = 0.2
        for k, t in enumerate(ORDER):
            xs, ys, fails, partial = [], [], [], []
            for i, sc in enumerate(scenarios):
                e = _entry(entries, sc, t, mode)
                if e is None:
                    continue
                phases = [e[p]["p50"] for p in PHASES]
                x = i + (k - 1.5) * width
                if e["unrecovered"]:
                    fails.append(x)
                    continue
                xs.append(x)
                ys.append(max(sum(v for v in phases if v is not None), 1) / 1000)
                if None in phases:  # a phase never seen: the bar is a lower bound
                    partial.append((x, ys[-1]))
            ax.bar(xs, ys, width, color=COLORS[t], label=NAMES[t])
            for x in fails:
                ax.text(x, 0.0012, "✗", color=COLORS[t], ha="center", fontsize=11)
            for x, y in partial:
                ax.text(x, y * 1.15, "+?", color=COLORS[t], ha="center", fontsize=8)
        ax.set_xticks(range(len(scenarios)), scenarios, rotation=35, ha="right")
        ax.set_yscale("log")
        ax.set_ylim(0.001, 100)
        ax.set_title(f"{mode} clients")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("fault to live again, s (p50: detect + reconnect + catch up)")
    axes[1].legend(fontsize=8)
    fig.text(
        0.01, 0.01,
        "✗: streams not recovered within the run's window.  +?: a phase never seen (no live "
        "token after the resume): at least the bar.  latency and slow-reader drop nothing: no bar.",
        fontsize=8,
    )  # fmt: skip
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
