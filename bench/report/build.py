"""``tokenbench report RUN...``: charts (PNG) and REPORT.md from results.json files.

Reporting only reads JSON, never re-runs anything. It takes any mix of bench runs (knee steps,
holds) and fault runs. Each chart is one question:

- p99 latency against users, per transport;
- goodput against users;
- server CPU per 1,000 tokens;
- server memory per connection;
- requests per second;
- bytes on the wire per token;
- the time-to-first-token distribution;
- reconnect recovery per fault scenario.

A step whose load generator was the bottleneck is drawn hollow, because it bounds the harness,
not the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import transports
from bench import results
from bench.report import (
    behind_lb,
    browsers,
    figures,
    recovery,
    ship,
    stats,
    variants,
    verdicts,
)
from bench.report.tables import faults_markdown, merge_faults
from bench.results import machine as yardstick
from bench.results.hist import Histogram, bucket_bounds
from bench.results.machine import REFERENCE_WALL_US
from bench.results.queries import headline_runs

COLORS = {t.name: t.color for t in transports.all_transports()}
NAMES = figures.NAMES
ORDER = transports.names()  # a transport the registry does not know is not drawn


def _steps(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every measured step per transport, over all bench runs (each tagged with its run)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for k, doc in enumerate(docs):
        rate = doc["config"].get("rate")
        for run in headline_runs(doc):
            for st in run["steps"]:
                out.setdefault(run["transport"], []).append({**st, "_run": k, "_rate": rate})
    return {t: sorted(s, key=lambda st: (st["_run"], st["clients"])) for t, s in out.items()}


def _line_chart(
    steps: dict[str, list[dict[str, Any]]], value: Any, ylabel: str, title: str, path: Path,
    log_y: bool = False, hline: float | None = None,
) -> Path:  # fmt: skip
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    markers = "osD^v"
    for t in ORDER:
        runs = sorted({st["_run"] for st in steps.get(t, [])})
        for n, k in enumerate(runs):  # one line per run: different rates are not one curve
            pts = [
                (st["clients"], value(st), st.get("limited_by") == "loadgen")
                for st in steps[t]
                if st["_run"] == k
            ]
            pts = [p for p in pts if p[1] is not None]
            if not pts:
                continue
            label = NAMES[t] if n == 0 else None
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=COLORS[t], label=label)
            for x, y, harness in pts:
                face = "white" if harness else COLORS[t]
                ax.plot(x, y, markers[n % 5], color=COLORS[t], markerfacecolor=face)
    rates = [r for r in dict.fromkeys(st["_rate"] for s in steps.values() for st in s)]
    if len(rates) > 1:
        shapes = ", ".join(f"{markers[i % 5]}: {r:g} tok/s" for i, r in enumerate(rates))
        ax.text(0.99, 0.02, shapes, transform=ax.transAxes, ha="right", fontsize=8)
    if hline is not None:
        ax.axhline(hline, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("concurrent users")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.text(0.01, 0.01, "hollow: the load generator was the bottleneck", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _bar_chart(values: dict[str, float], ylabel: str, title: str, path: Path) -> Path:
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


def _largest(steps: list[dict[str, Any]], key: Any) -> float | None:
    """The figure at the most users that has it (memory per connection: the biggest scale)."""
    for st in sorted(steps, key=figures.scale_of, reverse=True):
        v = key(st)
        if v is not None:
            return v
    return None


def _ttft_chart(steps: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for t in ORDER:
        held = [st for st in steps.get(t, []) if st["slo"]["held"]] or steps.get(t, [])
        if not held:
            continue
        st = held[-1]  # the busiest step that held the SLO
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
    ax.set_title("Time to first token")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _faults_chart(entries: list[dict[str, Any]], path: Path) -> Path:
    scenarios = list(dict.fromkeys(e["scenario"] for e in entries))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110, sharey=True)
    for ax, mode in zip(axes, ("default", "hardened"), strict=True):
        width = 0.2
        for k, t in enumerate(ORDER):
            xs, ys, fails, partial = [], [], [], []
            for i, sc in enumerate(scenarios):
                e = next((e for e in entries if (e["scenario"], e["transport"], e["mode"])
                          == (sc, t, mode)), None)  # fmt: skip
                if e is None:
                    continue
                phases = [e[k2]["p50"] for k2 in ("detection_ms", "reconnect_ms", "catchup_ms")]
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


def build(paths: list[Path], out: Path) -> Path:
    """Read the runs, write the charts and REPORT.md into ``out``; returns REPORT.md's path."""
    docs = [results.load(p) for p in paths]
    out.mkdir(parents=True, exist_ok=True)
    bench_docs, _ = behind_lb.split_docs([d for d in docs if d.get("runs")])
    faults, lb_faults = behind_lb.split(merge_faults(docs))
    steps = _steps(bench_docs)
    charts: list[tuple[str, Path]] = []
    if steps:
        slo = bench_docs[0]["config"].get("slo_ms", 250)
        charts += [
            ("p99 token latency", _line_chart(steps, lambda s: s["latency_ms"]["p99"],
             "p99 latency against due time, ms", "p99 token latency", out / "latency_p99.png",
             log_y=True, hline=slo)),
            ("goodput", _line_chart(steps, lambda s: s["goodput"], "tokens delivered / due",
             "Goodput", out / "goodput.png")),
            ("server CPU per 1,000 tokens", _line_chart(
             steps, lambda s: _ms(s["server"]["cpu_s_per_1k_tokens"]),
             "server CPU ms per 1,000 tokens", "Server CPU per 1,000 tokens",
             out / "cpu_per_1k.png", log_y=True)),
            ("requests per second", _line_chart(steps, lambda s: s["requests_per_s"] or None,
             "HTTP requests and RPCs per second", "Requests per second", out / "requests.png",
             log_y=True)),
            ("memory per connection", _bar_chart(
             {t: _kib(_largest(s, lambda st: st["server"]["mem_per_conn_bytes"]))
              for t, s in steps.items()},
             "KiB", "Server memory per connection (largest scale measured)",
             out / "memory_per_connection.png")),
            ("bytes per token", _bar_chart(
             {t: _largest(s, lambda st: st["wire_bytes_per_token"]) for t, s in steps.items()},
             "bytes (both directions, all framing)", "Bytes on the wire per token",
             out / "wire_bytes.png")),
            ("time to first token", _ttft_chart(steps, out / "ttft.png")),
        ]  # fmt: skip
    if faults:
        charts.append(("reconnect recovery", _faults_chart(faults, out / "faults.png")))
    if (flush := variants.flush_chart(variants.flush_points(bench_docs), out)) is not None:
        charts.append(("tokens per write", flush))
    report = out / "REPORT.md"
    text = _markdown(docs, steps, faults, charts, out, lb_faults)
    report.write_text(text + f"\n{SOURCES}{' '.join(_shown(p) for p in paths)}`\n")
    return report


SOURCES = "Rebuild: `tokenbench report "  # the report's last line: the runs it read


def sources(report: Path) -> list[Path] | None:
    """The runs a REPORT.md was built from (its last line), or None for an older report."""
    last = report.read_text().rstrip("\n").rsplit("\n", 1)[-1]
    if not last.startswith(SOURCES):
        return None
    return [Path(p) for p in last[len(SOURCES) :].rstrip("`").split()]


def _shown(p: Path) -> str:
    """A run's path as a reader types it: relative to here when it is under here."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _iv(d: dict[str, Any] | None, digits: int = 0) -> str:
    """``mean [lo, hi]`` of an interval doc (bench.report.stats.show), flagged when unstable."""
    return stats.show(d, digits) + (" (unstable)" if d and d.get("unstable") else "")


def _fleet_md(docs: list[dict[str, Any]]) -> list[str]:
    rows = figures.fleet(docs)
    if not rows:
        return []
    out = [
        "", f"## Fleet projection: {figures.USERS:,} users at {figures.RATE:g} tok/s", "",
        "Users per core is the knee at 40 tok/s, a half-open bracket [held, broke): the busiest "
        "count that held the SLO in most of its runs, and the first that broke (`...` when none "
        "did, or the break was the load generator's). Server cores = users / users per core, "
        "over that bracket; unsettled: the search ended with the bracket wider than its target, "
        "so it is not a knee by itself. Several passes of the search pool into one bracket, the "
        "hull of theirs, so the spread between passes is in it; the fit is a logistic fit of the "
        "chance a step held against users over every step of every pass (bench/load/knee.py), "
        "`-` where held and broken steps do not overlap enough to fit. Normalised: what the "
        "reference machine (a reference "
        f"token in {REFERENCE_WALL_US:g} µs of wall time) would hold, from the run's "
        "yardstick. CPU per token at the knee is the mean of its windows with a 95 % interval; "
        "a figure whose windows spread "
        "over 10 % is flagged unstable. The CPU ratio compares the knee with half the knee: "
        "below 1, fixed costs amortise with load. A knee bounded by the load generator is a "
        "lower bound, so its core count is an upper bound. A knee is unstable when its edges "
        "were not unanimous (it held in only some of its runs, or its first break held in "
        "some): its capacity is then within one step's noise.",
        "",
        "| transport | users per core (knee) | held | passes | fit: 50 % held [95 %] | normalised "
        "| server cores | server CPU µs / token at knee | CPU ratio knee : half | memory | memory "
        "per connection (at) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        bound = ">= " if r["harness_bound"] else ""
        cores = r["cores"]
        upto = "<= " if r["harness_bound"] else ""
        low = "0" if cores["lo"] is None else f"{cores['lo']:,}"
        cores_txt = f"{upto}{cores['mean']:,} ({low}, {cores['hi']:,}]"
        mem = "-" if r["memory_gib"] is None else f"{r['memory_gib']} GiB"
        at = "-" if r["mem_per_conn_kib"] is None else (
            f"{r['mem_per_conn_kib']} KiB ({r['memory_measured_at']:,})"
            + (" (unstable)" if r["mem_unstable"] else ""))  # fmt: skip
        held = f"{r['held_runs'][0]}/{r['held_runs'][1]}" + (
            " **(server over its cores)**" if r["cpu_over_cores"] else "") + (
            " (unstable)" if r["knee_unstable"] else "") + (
            " (unsettled)" if r["settled"] is False else "")  # fmt: skip
        f = r["fit_per_core"]
        fit = "-" if f is None else f"{f[0]:,.0f} [{f[1]:,.0f}, {f[2]:,.0f}]"
        out.append(f"| {NAMES[r['transport']]} | {bound}{_iv(r['users_per_core'])} | {held} | "
                   f"{r['passes']} | {fit} | "
                   f"{_iv(r['users_per_core_normalised'])}"
                   f"{' (machine drifted)' if r['machine_drifted'] else ''} | {cores_txt} | "
                   f"{_iv(r['cpu_us_per_token'], 1)} | {r['cpu_ratio_knee_to_half'] or '-'} | "
                   f"{mem} | {at} |")  # fmt: skip
    return out


def _slo(st: dict[str, Any]) -> str:
    """held or broke, and what it did not check: a window without a time-to-first-token sample
    (the TTFT part not measured), a server that used more CPU than its cores (pinning leaked)."""
    out = "held" if st["slo"]["held"] else "broke"
    if st["slo"]["held"] and not st["ttft_ms"].get("count"):
        out += " (no TTFT sample)"
    if st["server"].get("cpu_over_cores"):
        out += " **(server over its cores)**"
    return out


def _gib(n: int | None) -> str:
    return "memory not measured" if n is None else f"{n / 2**30:.0f} GiB"


def _tree(d: dict[str, Any]) -> str:
    """A run's commit and whether its tree was clean (``dirty``: changes, untracked files too,
    under the package; docs/results-schema.md)."""
    git = d["machine"].get("git") or {}
    state = {True: "**dirty tree**", False: "clean tree"}.get(git.get("dirty"), "tree unknown")
    return f"commit {str(git.get('commit'))[:12]}, {state}"


def _commits(docs: list[dict[str, Any]]) -> str:
    seen = dict.fromkeys(_tree(d) for d in docs)
    return "; ".join(seen)


def _machine_md(docs: list[dict[str, Any]]) -> list[str]:
    out = []
    for d in docs:
        ys = yardstick.of(d)
        if not ys:
            out.append(f"- `{d['run_id']}`: no yardstick (a run from before it existed)")
            continue
        b, a = ys["before"], ys.get("after") or ys["before"]
        out.append(
            f"- `{d['run_id']}`: {ys['unit_us']:.2f} µs of CPU per reference token (fastest of "
            f"five, before → after: kernel write + read {b['syscall_us']['min']:.2f} → "
            f"{a['syscall_us']['min']:.2f} µs, Python {b['python_us']['min']:.2f} → "
            f"{a['python_us']['min']:.2f} µs), {ys['unit_us'] / ys['reference_unit_us']:.2f}x the "
            f"reference; {ys['wall_us']:.2f} µs of wall time on the server's cores, "
            f"{ys['wall_us'] / ys['reference_wall_us']:.2f}x the reference"
            + (f"; **the machine changed speed during the run ({ys['drift']:.0%})**"
               if ys["drifted"] else "")
        )  # fmt: skip
    return out


def _clocks_md(docs: list[dict[str, Any]]) -> list[str]:
    """Where the load ran and how sure its clocks were (bench/load/clock.py)."""
    out = []
    for d in docs:
        runs = [r for r in d.get("runs", []) if r.get("clock")]
        if not runs:
            continue
        worst = [r["clock"]["uncertainty_ms"] for r in runs if r["clock"]["uncertainty_ms"]]
        nodes = {n.get("node_id") or n.get("host") for r in runs for n in r.get("load_nodes", [])}
        where = (f"on a Ray cluster ({d['cluster']['address']}, {len(nodes)} node(s))"
                 if d.get("cluster") else "on this machine")  # fmt: skip
        line = (
            f"- `{d['run_id']}`: load {where}; latencies on the server's clock, to within "
            f"{max(worst):.2f} ms"
            if worst
            else f"- `{d['run_id']}`: load {where}"
        )
        warnings = [f"{r['transport']}: {r['clock']['warning']}" for r in runs
                    if r["clock"]["warning"]]  # fmt: skip
        out.append(line + ("; **" + "; ".join(warnings) + "**" if warnings else ""))
    return ["", "Clocks (bench/load/clock.py), per run:", "", *out] if out else []


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _kib(n: float | None) -> float | None:
    return None if n is None else n / 1024


def _markdown(
    docs: list[dict[str, Any]], steps: dict[str, list[dict[str, Any]]],
    faults: list[dict[str, Any]], charts: list[tuple[str, Path]], out: Path,
    lb_faults: list[dict[str, Any]] | None = None,
) -> str:  # fmt: skip
    lb_faults = lb_faults or []

    m = docs[0]["machine"]
    lines = [
        "# tokenbench report",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, "
        f"{_gib(m['memory_bytes'])}, {m['os']} {m['kernel']}, "
        f"Python {m['python']}; {m['date']}. Commits: {_commits(docs)}.",
        "",
        "Runs:",
        "",
    ]
    lines += [f"- `{d['run_id']}` ({d.get('kind', 'bench')}, {_tree(d)}): "
              f"`{d['machine']['command']}`" for d in docs]  # fmt: skip
    lines += ["", "Yardstick (bench/load/yardstick.py), per run:", "", *_machine_md(docs)]
    lines += _clocks_md(docs)
    bench_docs, through = behind_lb.split_docs([d for d in docs if d.get("runs")])
    if bench_docs:
        lines[1:1] = ["", "## What to ship", "",
                      ship.recommend(bench_docs, faults, lb_faults,
                                     browsers.entries(docs))["text"]]  # fmt: skip
    if steps:
        lines += [
            "", "## Capacity and cost", "",
            "| transport | users | tok/s | p50 ms | p99 ms | goodput | lost | unread | server ms "
            "/ 1k tok | KiB / conn | loadgen µs / tok | SLO | bottleneck |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for t in ORDER:
            for st in steps.get(t, []):
                srv, gen = st["server"], st["loadgen"]
                cpu = _ms(srv["cpu_s_per_1k_tokens"])
                mem = _kib(srv["mem_per_conn_bytes"])
                cells = [
                    NAMES[t], f"{st['clients']:,}", f"{st['tokens_per_s']:,.0f}",
                    f"{st['latency_ms']['p50']:,.1f}", f"{st['latency_ms']['p99']:,.1f}",
                    "-" if st["goodput"] is None else str(st["goodput"]), str(st["lost"]),
                    "-" if st.get("unread") is None else str(st["unread"]),
                    "-" if cpu is None else f"{cpu:.1f}", "-" if mem is None else f"{mem:.1f}",
                    str(gen["cpu_us_per_token"] or "-"), _slo(st),
                    st["limited_by"] or "-",
                ]  # fmt: skip
                lines.append("| " + " | ".join(cells) + " |")
    if bench_docs:
        lines += _fleet_md(bench_docs)
        if through and _fleet_md(bench_docs):
            lines += behind_lb.projection_md(through, figures.USERS, figures.RATE)
    browser = browsers.entries(docs)
    if bench_docs or faults or lb_faults or browser:
        lines += ["", "## Verdicts", "",
                  "Each rule is stated in docs/verdicts.md; rerun and the verdicts follow the "
                  "numbers. A comparison is a tie only when the evidence allows either order "
                  "(95 % intervals, or half-open knee brackets, overlap).",
                  "", "| claim | verdict | the numbers |", "|---|---|---|"]  # fmt: skip
        for v in verdicts.verdicts(bench_docs, faults + lb_faults, browser):
            lines.append(f"| {v['claim']} | **{v['verdict']}** | {v['why']} |")
    if bench_docs:
        lines += variants.stacks_md(bench_docs)
        lines += variants.flush_md(variants.flush_points(bench_docs))
        lines += variants.gc_md(bench_docs)
    if faults:
        lines += ["", "## Reconnect recovery", "", "Times in ms as p50 / max over the clients.", "",
                  faults_markdown(faults), *recovery.rankings_md(faults)]  # fmt: skip
    lines += behind_lb.hops_md(bench_docs, through)
    lines += behind_lb.matrix_md(lb_faults)
    lines += browsers.markdown(docs)
    lines += ["", "## Charts", ""]
    for title, path in charts:
        lines += [
            f"### {title[0].upper() + title[1:]}",
            "",
            f"![{title}]({path.relative_to(out)})",
            "",
        ]
    return "\n".join(lines) + "\n"
