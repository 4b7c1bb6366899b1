"""Beside the headline: stock and lean stacks, tokens per write, and garbage-collector pauses.

Rules of this module:
- It reads results.json only. The headline figures and verdicts are the stock servers' as they
  come (bench.load.config.headline_runs); this module reports every other variant a run
  measured (``--stack``, ``--flush-ms``, ``--gc``) next to them, each with the figures it rests
  on.
- Users per core and server cores at a write window come from a step below the knee: server CPU
  per token there, projected to a saturated core (1 / (CPU per token x rate)). They are marked
  projected; a knee measured at that window would be the measurement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

import transports
from bench.report import figures, stats
from bench.report.figures import NAMES, USERS
from bench.results.queries import Variant, variant_of
from transports import stacks

COLORS = {t.name: t.color for t in transports.all_transports()}


def _iv(d: dict[str, Any] | None, digits: int = 0) -> str:
    return stats.show(d, digits)


def stacks_md(docs: list[dict[str, Any]]) -> list[str]:
    """Knees of each transport on each stack measured, side by side."""
    rows, measured = [], set()
    for rec in transports.all_transports():
        for stack in rec.stacks:
            v = Variant(stack)
            knee = figures.knees(docs, v).get(rec.name)
            if knee is None:
                continue
            measured.add(stack)
            mem = figures.memory(docs, v).get(rec.name)
            norm = knee.normalised_users_per_core()
            at = [s for s in knee.steps if s["clients"] == knee.clients]
            gen = stats.of(figures.windows(at, "loadgen_cpu_us_per_token"))
            rows.append(
                f"| {rec.label} | {stack} | {'>= ' if knee.harness_bound else ''}"
                f"{_iv(knee.users_per_core.doc(1))} | {_iv(norm.doc(1) if norm else None)} | "
                f"{_iv(knee.cpu_us_per_token.doc(2) if knee.cpu_us_per_token else None, 1)} | "
                f"{'-' if mem is None else f'{mem[1].mean / 1024:.1f} KiB ({mem[0]:,})'} | "
                f"{'-' if gen is None else f'{gen.mean:.1f}'} | {knee.threads} |"
            )
    if not any("| stock |" not in r for r in rows):
        return []
    shown = [s for s in stacks.names() if s in measured]
    return [
        "", f"## Server stacks: {', '.join(shown)}", "",
        "; ".join(f"`{s}` is {stacks.get(s).what}" for s in shown) + ". "
        "Users per core is the knee bracket at the run's rate; CPU per "
        "token is at the knee. Memory per connection is at the most connections each measured.",
        "", "| transport | stack | users per core (knee) | normalised | server CPU µs / token "
        "| memory per connection (at) | loadgen µs / token | server threads on its cores |",
        "|---|---|---|---|---|---|---|---|", *rows,
    ]  # fmt: skip


def flush_points(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per (transport, stack, write window) of runs that swept ``--flush-ms``: the
    run's busiest step held, its CPU per token and p99, and what they project."""
    out = []
    for doc in docs:
        if len(doc["config"].get("flushes") or [0]) < 2:
            continue
        for run in doc.get("runs", []):
            held = [s for s in run["steps"] if s["slo"]["held"]] or run["steps"]
            st = max(held, key=lambda s: s["clients"])
            cpu_s = st["server"].get("cpu_s_per_1k_tokens")
            if not cpu_s:
                continue
            us = cpu_s * 1000
            rate = st["tokens_per_s"] / max(st["clients"], 1)
            per_core = 1e6 / (us * (doc["config"].get("rate") or rate))
            out.append({
                "transport": run["transport"], "stack": variant_of(run).stack,
                "flush_ms": variant_of(run).flush_ms, "clients": st["clients"],
                "cpu_us_per_token": round(us, 2), "p50_ms": st["latency_ms"]["p50"],
                "p99_ms": st["latency_ms"]["p99"], "users_per_core": round(per_core),
                "cores_50k": round(USERS / per_core, 1), "held": st["slo"]["held"],
                "lost": st["lost"],
            })  # fmt: skip
    return out


def flush_md(points: list[dict[str, Any]]) -> list[str]:
    if not points:
        return []
    lines = [
        "", "## Tokens per write (`--flush-ms`)", "",
        "Each server writes every token due within the window in one write (the wire format per "
        "token unchanged). Latency counts from each token's due time, so the wait shows in p50 "
        "and p99. Users per core and cores for 50,000 users are projected from the CPU per token "
        "at the step shown (1 / (CPU per token x rate)), not measured at a knee.",
        "", "| transport | stack | flush ms | users | server CPU µs / token | p50 ms | p99 ms | "
        "users per core (projected) | cores for 50,000 (projected) | lost |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for p in sorted(points, key=lambda p: (list(NAMES).index(p["transport"]), p["stack"],
                                           p["flush_ms"])):  # fmt: skip
        lines.append(
            f"| {NAMES[p['transport']]} | {p['stack']} | {p['flush_ms']:g} | {p['clients']:,} | "
            f"{p['cpu_us_per_token']:.1f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | "
            f"{p['users_per_core']:,} | {p['cores_50k']:,} | {p['lost']} |"
        )
    return lines


def flush_chart(points: list[dict[str, Any]], out: Path) -> Path | None:
    """Server CPU per token against p99, one line per transport and stack, points by window."""
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for p in points:
        series.setdefault((p["transport"], p["stack"]), []).append(p)
    for (t, stack), pts in series.items():
        pts.sort(key=lambda p: p["flush_ms"])
        ax.plot([p["p99_ms"] for p in pts], [p["cpu_us_per_token"] for p in pts],
                "-o" if stack == "stock" else "--s", color=COLORS[t],
                label=f"{NAMES[t]} ({stack})")  # fmt: skip
        for p in pts:
            ax.annotate(f"{p['flush_ms']:g}", (p["p99_ms"], p["cpu_us_per_token"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))  # fmt: skip
    ax.set_xlabel("p99 token latency, ms (against each token's due time)")
    ax.set_ylabel("server CPU per token, µs")
    ax.set_title("Tokens per write: the window (ms) on each point")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = out / "flush_curve.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gc_md(docs: list[dict[str, Any]]) -> list[str]:
    """Collector pauses per run variant, at each run's most connections per worker."""
    rows = []
    for doc in docs:
        for run in doc.get("runs", []):
            steps = [s for s in run["steps"] if (s["server"].get("gc") or {}).get("pauses")]
            if not steps:
                continue
            st = max(steps, key=lambda s: s["server"].get("connections") or 0)
            conns = st["server"].get("connections") or st["clients"]
            per_worker = conns // max(run.get("server_workers") or 1, 1)
            if per_worker < 1000:
                continue
            g = st["server"]["gc"]
            slow = sum(n for edge, n in g["pauses"].items() if edge not in ("<1 ms", "<10 ms"))
            rows.append(
                f"| {NAMES[run['transport']]} | {variant_of(run).stack} | {run.get('gc', 'stock')}"
                f" | {per_worker:,} | "
                + " | ".join(str(n) for n in g["pauses"].values())
                + f" | {slow} | {g['pause_ms_total'] / st['window_s']:.1f} | {g['full']} | "
                f"{st['latency_ms']['p99']:.1f} | {st['latency_ms']['max']:.1f} |"
            )
    if not rows:
        return []
    edges = "<1 ms | <10 ms | <100 ms | <1 s | >=1 s"
    return [
        "", "## Garbage-collector pauses", "",
        "Every collection in the measured window, summed over the server's workers "
        "(servers/process/gcpolicy.py), at each run's most connections per worker. `tuned` freezes "
        "long-lived objects (gc.freeze) so collections skip them.",
        "", f"| transport | stack | gc | connections per worker | {edges} | 10 ms or more | "
        "pause ms per s | full | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", *rows,
    ]  # fmt: skip
