"""``summary.json``: what a report decided, for machines (CI gates, dashboards).

``tokenbench report`` writes it beside REPORT.md, computed by the same functions: what to ship
(bench.report.ship), every verdict (bench.report.verdicts), and per transport the headline
figures with their intervals (bench.report.figures). A figure not measured is null, never 0.
Versioned like results.json (docs/results-schema.md, "summary.json").
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, TypedDict

from bench.report.stats import Interval as Iv
from bench.results.load import read_json

SUMMARY_VERSION = 1


class Interval(TypedDict):
    mean: float
    lo: float
    hi: float | None  # null: unbounded (a knee that never broke, or the load generator's)
    open_hi: bool  # a bracket [lo, hi): hi itself broke
    n: int
    sd: float
    unstable: bool  # standard deviation over 10 % of the mean


class Source(TypedDict):
    run_id: str
    kind: str
    commit: str | None
    dirty: bool | None
    date: str


class Decision(TypedDict):
    text: str  # the report's "What to ship" paragraph (Markdown)
    ship: list[str]  # the transports to ship, tied ones together; [] when none is named
    build: dict[str, list[str]]  # per transport shipped, what to build around it
    missing: list[str]  # what a complete run has that these lack


class Verdict(TypedDict):
    rule: str
    outcome: str  # confirmed, refuted, nuanced, tie, not measured
    text: str


class Fleet(TypedDict):
    users: int
    rate: float
    cores: dict[str, float | None]  # mean, lo (null: unbounded capacity), hi
    memory_gib: float | None


class Figures(TypedDict):
    transport: str
    label: str
    knee: int | None  # users held at the knee
    broke_at: int | None
    users_per_core: Interval | None  # the knee bracket [held, broke) per core
    users_per_core_normalised: Interval | None  # on the reference machine
    knee_settled: bool | None
    knee_unstable: bool | None
    harness_bound: bool | None  # the load generator saturated: capacity at least the knee
    machine_drifted: bool | None
    passes: int | None
    cpu_us_per_token: Interval | None  # server CPU per token at the knee
    cpu_us_per_token_normalised: Interval | None
    p99_ms: Interval | None  # at the knee
    mem_per_conn_bytes: Interval | None  # at the most connections measured
    mem_measured_at: int | None
    fleet: Fleet | None  # for figures.USERS users at figures.RATE tok/s


class Summary(TypedDict):
    schema_version: int
    kind: Literal["summary"]
    runs: list[Source]
    decision: Decision | None  # null without a bench run
    verdicts: list[Verdict]
    transports: list[Figures]


def _iv(i: Iv | None, digits: int) -> Interval | None:
    if i is None:
        return None
    r = lambda v: round(v, digits) if math.isfinite(v) else None  # noqa: E731
    return {"mean": r(i.mean), "lo": r(i.lo), "hi": r(i.hi), "open_hi": i.open_hi, "n": i.n,
            "sd": r(i.sd), "unstable": i.unstable}  # type: ignore[typeddict-item]  # fmt: skip


def _source(d: dict[str, Any]) -> Source:
    git = d["machine"].get("git") or {}
    return {"run_id": d["run_id"], "kind": d.get("kind", "bench"), "commit": git.get("commit"),
            "dirty": git.get("dirty"), "date": d["machine"]["date"]}  # fmt: skip


def _figures(bench: list[dict[str, Any]]) -> list[Figures]:
    from bench.report import figures as fg

    k, mem = fg.knees(bench), fg.memory(bench)
    fleet = {r["transport"]: r for r in fg.fleet(bench)}
    ran = {r["transport"] for d in bench for r in d.get("runs", [])}
    out: list[Figures] = []
    for t in [*fg.NAMES, *sorted(ran - set(fg.NAMES))]:
        if t not in ran:
            continue
        n, m, f = k.get(t), mem.get(t), fleet.get(t)
        out.append({
            "transport": t, "label": fg.NAMES.get(t, t),
            "knee": n.clients if n else None, "broke_at": n.broke_at if n else None,
            "users_per_core": _iv(n.users_per_core, 1) if n else None,
            "users_per_core_normalised": _iv(n.normalised_users_per_core(), 1) if n else None,
            "knee_settled": n.settled if n else None, "knee_unstable": n.unstable if n else None,
            "harness_bound": n.harness_bound if n else None,
            "machine_drifted": n.drifted if n else None, "passes": n.passes if n else None,
            "cpu_us_per_token": _iv(n.cpu_us_per_token, 2) if n else None,
            "cpu_us_per_token_normalised": _iv(n.normalised_cpu_us(), 2) if n else None,
            "p99_ms": _iv(n.p99_ms, 1) if n else None,
            "mem_per_conn_bytes": _iv(m[1], 0) if m else None,
            "mem_measured_at": m[0] if m else None,
            "fleet": {"users": fg.USERS, "rate": fg.RATE, "cores": f["cores"],
                      "memory_gib": f["memory_gib"]} if f else None,
        })  # fmt: skip
    return out


def summarize(docs: list[dict[str, Any]]) -> Summary:
    """The summary of these runs, as the report reads them (bench.report.build)."""
    from bench.report import behind_lb, browsers, ship, stop, verdicts
    from bench.report.tables import merge_faults

    bench, through = behind_lb.split_docs([d for d in docs if d.get("runs")])
    faults, lb_faults = behind_lb.split(merge_faults(docs))
    browser = browsers.entries(docs)
    decision: Decision | None = None
    if bench:
        pick = ship.recommend(bench, faults, lb_faults, browser, through)
        decision = {"text": pick["text"], "ship": list(pick["group"]),
                    "build": dict(pick["build"]), "missing": list(pick["missing"])}  # fmt: skip
    rules: list[Verdict] = []
    stops = stop.docs(docs)
    if bench or faults or lb_faults or browser or through or stops:
        rules = [
            {"rule": v["claim"], "outcome": v["verdict"], "text": v["why"]}
            for v in verdicts.verdicts(bench, faults + lb_faults, browser, through, stops)
        ]
    return {"schema_version": SUMMARY_VERSION, "kind": "summary",
            "runs": [_source(d) for d in docs], "decision": decision, "verdicts": rules,
            "transports": _figures(bench)}  # fmt: skip


def write(paths: list[Path], out: Path) -> Path:
    """Read the runs and write ``out``/summary.json; returns its path."""
    from bench import results

    path = out / "summary.json"
    path.write_text(json.dumps(summarize([results.load(p) for p in paths]), indent=1) + "\n")
    return path


def read(path: Path) -> Summary:
    """A summary.json (or the directory holding one); ValueError with a one-line message when
    it is not one this code reads."""
    path, doc = read_json(path, "summary.json")  # a SchemaError is a ValueError
    if not isinstance(doc, dict) or doc.get("kind") != "summary":
        raise ValueError(f'{path}: not a summary (kind must be "summary")')
    if doc.get("schema_version") != SUMMARY_VERSION:
        raise ValueError(f"{path}: summary version {doc.get('schema_version')!r}, this code "
                         f"reads {SUMMARY_VERSION}")  # fmt: skip
    for key in Summary.__required_keys__:
        if key not in doc:
            raise ValueError(f"{path}: no {key!r}")
    return doc  # type: ignore[return-value]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _show(i: Interval | None, digits: int = 0) -> str:
    from bench.report.stats import show

    return show(i, digits) + (" (unstable)" if i and i["unstable"] else "")  # type: ignore[arg-type]


def markdown(s: Summary) -> str:
    """The decision, the headline figures and the verdict table, as Markdown (a CI job's step
    summary)."""
    runs = ", ".join(f"`{r['run_id']}` ({str(r['commit'])[:12]}"
                     f"{', dirty' if r['dirty'] else ''})" for r in s["runs"])  # fmt: skip
    lines = ["## tokenbench", "", f"Runs: {runs}.", ""]
    if s["decision"]:
        lines += ["### What to ship", "", s["decision"]["text"], ""]
    if s["transports"]:
        lines += ["### Headline figures", "",
                  "| transport | users per core (knee) | normalised | server CPU µs / token at "
                  "knee | p99 ms at knee | memory per connection, KiB (at) |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for f in s["transports"]:
            m = f["mem_per_conn_bytes"]
            mem = "-" if m is None else f"{m['mean'] / 1024:,.1f} ({f['mem_measured_at']:,})"
            lines.append(f"| {f['label']} | {_show(f['users_per_core'])} | "
                         f"{_show(f['users_per_core_normalised'])} | "
                         f"{_show(f['cpu_us_per_token'], 1)} | {_show(f['p99_ms'], 1)} | "
                         f"{mem} |")  # fmt: skip
        lines.append("")
    if s["verdicts"]:
        lines += ["### Verdicts", "", "| claim | verdict | the numbers |", "|---|---|---|"]
        lines += [f"| {_cell(v['rule'])} | **{v['outcome']}** | {_cell(v['text'])} |"
                  for v in s["verdicts"]]  # fmt: skip
    return "\n".join(lines) + "\n"
