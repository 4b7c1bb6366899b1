"""``tokenbench report RUN...``: REPORT.md and its charts (PNG) from results.json files.

Reporting only reads JSON, never re-runs anything. It takes any mix of bench runs (knee steps,
holds) and fault runs. The report is read the evening before the meeting, in this order:

1. a short header (runs, machine, yardstick);
2. the decision in three bullets, each computed: what to ship and why (bench.report.ship), the
   strongest verdict, the main caveat and the noise;
3. the headline chart: server cores for 50,000 users at 40 tok/s (bench.report.charts_fleet);
4. the verdicts, then the charts, one workload per axis (bench.report.charts);
5. the detail: what to ship in full, the fleet, the 50,000-user holds, stacks, recovery, the
   runs; and last every step (the appendix).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench import profiles, results
from bench.report import (
    behind_lb,
    browsers,
    charts,
    charts_fleet,
    figures,
    proxies,
    recovery,
    ship,
    stats,
    stop,
    variants,
    verdicts,
)
from bench.report.charts_recovery import faults_chart
from bench.report.tables import (
    GOODPUT,
    faults_markdown,
    holds_md,
    merge_faults,
    short_of_users,
    steps_md,
)
from bench.results import machine as yardstick
from bench.results.machine import REFERENCE_WALL_US

NAMES = figures.NAMES


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _step_charts(steps: charts.Steps, slo: dict[str, Any], out: Path) -> list[tuple[str, Path]]:
    """The charts of the steps at one workload (bench.report.charts)."""
    p99 = ((slo["p99_ms"], f"SLO: p99 at most {slo['p99_ms']:g} ms", "--"),)
    good = (
        (1.0, "delivered = due (above: a stall caught up)", ":"),
        (slo["min_goodput"], f"SLO: goodput at least {slo['min_goodput']:g}", "--"),
    )
    return [
        ("p99 token latency", charts.line_chart(
            steps, lambda s: s["latency_ms"]["p99"], lambda w: w.get("p99_ms"),
            "p99 latency against due time, ms", "p99 token latency", out / "latency_p99.png",
            log_y=True, lines=p99)),
        ("goodput", charts.line_chart(
            steps, lambda s: s["goodput"], lambda w: w.get("goodput"),
            "tokens delivered / due in the window", "Goodput", out / "goodput.png", lines=good)),
        ("server CPU per 1,000 tokens", charts.line_chart(
            steps, lambda s: _ms(s["server"]["cpu_s_per_1k_tokens"]),
            lambda w: _ms(w.get("cpu_s_per_1k_tokens")), "server CPU ms per 1,000 tokens",
            "Server CPU per 1,000 tokens", out / "cpu_per_1k.png", log_y=True)),
        ("requests per second", charts.line_chart(
            steps, lambda s: s["requests_per_s"] or None, lambda w: w.get("requests_per_s") or None,
            "HTTP requests and RPCs per second", "Requests per second", out / "requests.png",
            log_y=True)),
        ("bytes per token", charts.bar_chart(
            {t: charts.largest(s, lambda st: st["wire_bytes_per_token"]) for t, s in steps.items()},
            "bytes (both directions, all framing)",
            "Bytes on the wire per token (the most users measured)", out / "wire_bytes.png")),
        ("time to first token", charts.ttft_chart(steps, out / "ttft.png")),
    ]  # fmt: skip


def build(paths: list[Path], out: Path) -> Path:
    """Read the runs, write the charts and REPORT.md into ``out``; returns REPORT.md's path."""
    docs = [results.load(p) for p in paths]
    out.mkdir(parents=True, exist_ok=True)
    bench_docs, _ = behind_lb.split_docs([d for d in docs if d.get("runs")])
    faults, lb_faults = behind_lb.split(merge_faults(docs))
    steps = charts.steps_of(bench_docs)
    rate = charts.workload(steps)
    drawn, others = charts.at_rate(steps, rate)
    headline = None
    if rows := charts_fleet.cores_rows(bench_docs):
        headline = charts_fleet.cores_chart(rows, out / "server_cores.png")
    found: list[tuple[str, Path | None]] = []
    if drawn:
        cfg = bench_docs[0]["config"]
        slo = {"p99_ms": cfg.get("slo_ms", 250), "min_goodput": cfg.get("min_goodput", 0.99)}
        found += _step_charts(drawn, slo, out)
    if bench_docs:
        found.append(("memory per connection", charts_fleet.memory_chart(
            bench_docs, out / "memory_per_connection.png")))  # fmt: skip
    if faults:
        found.append(("reconnect recovery", faults_chart(faults, out / "faults.png")))
    found.append(("tokens per write", variants.flush_chart(variants.flush_points(bench_docs), out)))
    made = [(title, path) for title, path in found if path is not None]
    report = out / "REPORT.md"
    text = _markdown(
        docs, steps, (rate, others), faults, made, headline, out, lb_faults, profiles.jobs_of(paths)
    )
    report.write_text(text + f"\n{SOURCES}{' '.join(_shown(p) for p in paths)}`\n")
    return report


def _jobs_md(jobs: list[profiles.JobRecord]) -> list[str]:
    """The profile's jobs (jobs.json): those that did not run are named, with why."""
    if not jobs:
        return []
    ran = [j for j in jobs if j["status"] == "ran"]
    out = [f"Jobs: {len(ran)} of {len(jobs)} ran ({', '.join(j['name'] for j in ran) or 'none'})."]
    out += [f"**Not measured**: `{j['name']}` {j['status']}: {j['why']}."
            for j in jobs if j["status"] != "ran"]  # fmt: skip
    return [" ".join(out), ""]


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
        "Users per core is the knee at 40 tok/s: the half-open bracket [held, broke), the "
        "busiest count that held the SLO in most of its runs and the first that broke (`...` "
        "when none did, or the break was the load generator's), widened to the fit's 95 % "
        "interval where that is wider (then closed, `]`). The fit is a logistic fit of the "
        "chance a step held against users over every step of every pass (bench/results/fit.py), "
        "`-` where held and broken steps do not overlap enough to fit. Server cores = users / "
        "users per core, over that interval; unsettled: the interval is wider than the search's "
        "target, so it is not a knee by itself. Several passes of the search pool into one "
        "bracket, the hull of theirs, so the spread between passes is in it. Normalised: what the "
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
        fit = (
            "-"
            if f is None
            else (f"{f[0]:,.0f} [{f[1]:,.0f}, {'...' if f[2] is None else format(f[2], ',.0f')}]")
        )
        out.append(f"| {NAMES[r['transport']]} | {bound}{_iv(r['users_per_core'])} | {held} | "
                   f"{r['passes']} | {fit} | "
                   f"{_iv(r['users_per_core_normalised'])}"
                   f"{' (machine drifted)' if r['machine_drifted'] else ''} | {cores_txt} | "
                   f"{_iv(r['cpu_us_per_token'], 1)} | {r['cpu_ratio_knee_to_half'] or '-'} | "
                   f"{mem} | {at} |")  # fmt: skip
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


def _yardstick_short(docs: list[dict[str, Any]]) -> str:
    """Each run's speed against the reference machine, and a drift where there was one."""
    out = []
    for d in docs:
        ys = yardstick.of(d)
        if not ys:
            out.append(f"`{d['run_id']}` not measured")
            continue
        drift = (
            f" (**its speed changed {ys['drift']:.0%} during the run**)" if ys["drifted"] else ""
        )
        out.append(f"`{d['run_id']}` {ys['unit_us'] / ys['reference_unit_us']:.2f}x{drift}")
    return "CPU per reference token against the reference machine: " + ", ".join(out)


def _margin(clause: str) -> float | None:
    """The least ratio a clause's evidence allows (its 95 % or bracket low end), or None."""
    lows = re.findall(r"(\d+\.\d+)x to \S+x", clause) + re.findall(r"at least (\d+\.\d+)x", clause)
    lows += re.findall(r"\d\.\d+x [^;]*?\(95 % interval (\d+\.\d+) to", clause)
    return max(map(float, lows)) if lows else None


def _strongest(rows: list[dict[str, Any]]) -> str:
    """The settled claim (confirmed or refuted) whose numbers allow the widest margin at their
    low end, with the clause that shows it."""
    settled = [v for v in rows if v["verdict"] in ("confirmed", "refuted")]
    counts = {k: sum(v["verdict"] == k for v in rows) for k in dict.fromkeys(
        v["verdict"] for v in rows)}  # fmt: skip
    tally = ", ".join(f"{n} {k}" for k, n in counts.items())
    if not settled:
        return f"**Strongest verdict:** none: no claim was confirmed or refuted ({tally})."

    def clauses(v: dict[str, Any]) -> list[tuple[float, str]]:
        return [(m, c) for c in v["why"].split("; ") if (m := _margin(c)) is not None]

    best = max(settled, key=lambda v: max((m for m, _ in clauses(v)), default=0.0))
    shown = max(clauses(best), default=(None, best["why"].split("; ")[0]))[1]
    rule = (
        "of the claims confirmed or refuted, the largest ratio the low end of its interval allows"
        if clauses(best)
        else "no claim settled states a ratio: the first settled"
    )
    return (
        f'**Strongest verdict:** "{best["claim"]}" is **{best["verdict"]}**: {shown} '
        f"({rule}; verdicts: {tally})."
    )


def _short_50k(steps: charts.Steps) -> str | None:
    """The steps of ``figures.USERS`` users that did not connect them all, in words."""
    big = [(t, st) for t, s in steps.items() for st in s if st["clients"] >= figures.USERS]
    short = [(t, got) for t, st in big if (got := (short_of_users(st) or (None,))[0]) is not None]
    if not short:
        return None
    t, most = max(short, key=lambda x: x[1])
    names = list(dict.fromkeys(NAMES[t] for t, _ in short))
    who = (f"none of {', '.join(names[:-1])} and {names[-1]} connected"
           if len(short) == len(big) and len(names) > 1
           else f"{', '.join(names)} did not connect")  # fmt: skip
    return (
        f"at {figures.USERS:,} users {who} every user within its ramp (at most {most:,}, "
        f"{NAMES[t]}): a limit measured, not a hold (*{figures.USERS:,} users*)"
    )


def _lead(item: str) -> str:
    """What to build, without its evidence: the words before the first colon outside brackets."""
    depth = 0
    for i, ch in enumerate(item):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == ":" and depth == 0:
            return item[:i]
    return item


def _decision(docs: list[dict[str, Any]], steps: charts.Steps, rec: dict[str, Any] | None,
              rows: list[dict[str, Any]]) -> list[str]:  # fmt: skip
    """Three bullets, every word from the data: what to ship and why, the strongest verdict,
    the main caveat and the noise."""
    if rec is None:
        ship_line = "**What to ship:** not measured (no bench run in these runs)."
        caveats: list[str] = []
    else:
        head, _, tail = rec["text"].partition(" Caveats: ")
        caveats = tail.rstrip(".").split("; ") if tail else []
        ship_line = re.split(r" (?=Build around |Out: )", head)[0].strip()
        needs = [
            f"Build around {NAMES[t]}: " + "; ".join(map(_lead, rec["build"][t]))
            for t in rec["group"]
            if rec["build"].get(t)
        ]
        if needs:
            ship_line += " " + ". ".join(needs) + "."
    knee = [c for c in caveats if "knee" in c][:1]
    parts = knee + [c for c in [_short_50k(steps)] if c]
    knee_docs = [d for d in docs if any(r.get("knee") for r in d.get("runs", []))] or docs
    drifts = [(ys["drift"], d["run_id"]) for d in knee_docs
              if (ys := yardstick.of(d)) and ys["drifted"]]  # fmt: skip
    if drifts:
        drift, run = max(drifts)
        noise = f"the machine's speed changed {drift:.0%} during `{run}`"
    else:
        noise = "the machine's speed held within 10 % in every knee run" if any(
            map(yardstick.of, knee_docs)) else "the machine's speed was not measured"  # fmt: skip
    more = len(caveats) - len(knee)
    caveat = ("**Main caveat:** " + ("; ".join(parts) if parts else "none found in the data")
              + f". Noise: {noise}."
              + (f" {more} more caveat(s) under *What to ship*." if more > 0 else ""))  # fmt: skip
    return ["## Decision", "", f"- {ship_line}", f"- {_strongest(rows)}", f"- {caveat}"]


def _charts_md(charts_made: list[tuple[str, Path]], out: Path, rate: float | None,
               others: charts.Steps) -> list[str]:  # fmt: skip
    lines = ["", "## Charts", ""]
    off = [st for s in others.values() for st in s]
    if rate is not None:
        lines.append(f"The step charts draw the steps at {rate:g} tok/s per user, one workload "
                     "per axis." + (" Not drawn (another workload): " + _workload(off) +
                     ": see the tables." if off else ""))  # fmt: skip
        lines.append("")
    for title, path in charts_made:
        lines += [f"### {title[0].upper() + title[1:]}", "", f"![{title}]({path.relative_to(out)})",
                  ""]  # fmt: skip
        if title == "goodput":
            lines += [GOODPUT, ""]
    return lines


def _workload(steps: list[dict[str, Any]]) -> str:
    """'4 steps at 50,000 users, 0.046 to 0.13 tok/s per user'."""
    users = sorted({st["clients"] for st in steps})
    rates = sorted({st["_rate"] for st in steps if st["_rate"] is not None})
    who = f"{users[0]:,}" if len(users) == 1 else f"{users[0]:,} to {users[-1]:,}"
    per = "" if not rates else f", {rates[0]:g}" + (f" to {rates[-1]:g}" if len(rates) > 1 else "")
    return f"{len(steps)} step(s) at {who} users{per} tok/s per user"


def _markdown(
    docs: list[dict[str, Any]], steps: charts.Steps, workload: tuple[float | None, charts.Steps],
    faults: list[dict[str, Any]], charts_made: list[tuple[str, Path]], headline: Path | None,
    out: Path, lb_faults: list[dict[str, Any]] | None = None,
    jobs: list[profiles.JobRecord] | None = None,
) -> str:  # fmt: skip
    lb_faults = lb_faults or []
    m = docs[0]["machine"]
    bench_docs, through = behind_lb.split_docs([d for d in docs if d.get("runs")])
    browser = browsers.entries(docs)
    stops = stop.docs(docs)
    rows = verdicts.verdicts(bench_docs, faults + lb_faults, browser, through, stops)
    rec = ship.recommend(bench_docs, faults, lb_faults, browser, through) if bench_docs else None
    lines = [
        "# tokenbench report", "",
        f"Runs: {', '.join('`' + d['run_id'] + '`' for d in docs)} ({_commits(docs)}). "
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {_gib(m['memory_bytes'])}; "
        f"{m['date']}. Yardstick: {_yardstick_short(docs)}. Commands and clocks: *Runs*, at the "
        "end.", "",
        *_jobs_md(jobs or []),
        *_decision(docs, steps, rec, rows),
    ]  # fmt: skip
    if bench_docs:
        title = f"## Server cores for {figures.USERS:,} users at {figures.RATE:g} tok/s"
        lines += ["", title, ""]
        if headline is None:
            lines.append("Not measured: no knee run (`tokenbench bench --find-knee`) here.")
        else:
            lines += [f"![server cores]({headline.relative_to(out)})", "",
                      "Users over each knee bracket per core [held, broke), on the measuring "
                      "machine: the server cores column of *Fleet projection*."]  # fmt: skip
    if bench_docs or faults or lb_faults or browser or through or stops:
        lines += ["", "## Verdicts", "",
                  "Each rule is stated in docs/verdicts.md; rerun and the verdicts follow the "
                  "numbers. A comparison is a tie only when the evidence allows either order "
                  "(95 % intervals, or knees' capacity intervals, overlap).",
                  "", "| claim | verdict | the numbers |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {v['claim']} | **{v['verdict']}** | {v['why']} |" for v in rows]
    lines += _charts_md(charts_made, out, *workload)
    if rec is not None:
        lines += ["", "## What to ship", "", rec["text"]]
    if bench_docs:
        lines += _fleet_md(bench_docs)
        if through and _fleet_md(bench_docs):
            lines += behind_lb.projection_md(through, figures.USERS, figures.RATE)
        lines += holds_md(bench_docs, figures.USERS, NAMES)
        lines += variants.stacks_md(bench_docs)
        lines += variants.flush_md(variants.flush_points(bench_docs))
        lines += variants.gc_md(bench_docs)
    if faults:
        lines += ["", "## Reconnect recovery", "", "Times in ms as p50 / max over the clients.", "",
                  faults_markdown(faults), *recovery.rankings_md(faults)]  # fmt: skip
    lines += behind_lb.hops_md(bench_docs, through)
    lines += proxies.markdown(through)
    lines += stop.markdown(stops)
    lines += behind_lb.matrix_md(lb_faults)
    lines += browsers.markdown(docs)
    lines += [
        "", "## Runs", "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {_gib(m['memory_bytes'])}, {m['os']} "
        f"{m['kernel']}, Python {m['python']}; {m['date']}. Commits: {_commits(docs)}.", "",
    ]  # fmt: skip
    lines += [f"- `{d['run_id']}` ({d.get('kind', 'bench')}, {_tree(d)}): "
              f"`{d['machine']['command']}`" for d in docs]  # fmt: skip
    lines += ["", "Yardstick (bench/load/yardstick.py), per run:", "", *_machine_md(docs)]
    lines += _clocks_md(docs)
    if steps:
        lines += ["", "## Appendix: every step", "",
                  "Every step of the stock servers, every workload, in the order run. "
                  "SLO: held, broke, or not held where fewer users connected than the step "
                  "asked for.", "", *steps_md(steps, NAMES), "", GOODPUT]  # fmt: skip
    return "\n".join(lines) + "\n"
