"""The proxies in front (``bench --lb haproxy|nginx --lb-profile ...``): what each transport got
through each proxy and configuration profile, and what it needed (servers/topology/nginx.py).

A run through a proxy carries ``topology`` (its ``lb`` and, for nginx, ``profile``) and
``works``: whether one stream got through end to end before any load (bench.load.run
``stream_check``), with ``why`` when not. A run that got through is its busiest step: latency
against due times, the inter-token gap as the user saw it (burstiness), goodput. What a
transport needed is the settings the documented profile adds to nginx's defaults for it, named
only where the defaults failed it and the documented profile did not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import transports
from bench.report.figures import NAMES
from servers.topology import nginx


@dataclass(frozen=True)
class Through:
    """One transport through one proxy and profile: its busiest step, or why none ran."""

    transport: str
    lb: str
    profile: str | None  # nginx's; None for HAProxy
    works: bool | None  # None: not measured (an older run without the check, and no steps)
    why: str | None
    users: int | None
    p50_ms: float | None
    p99_ms: float | None
    gap_p99_ms: float | None
    goodput: float | None
    slo_held: bool | None
    run_id: str

    @property
    def front(self) -> str:
        return self.lb + (f" {self.profile}" if self.profile else "")


def _lb(topo: dict[str, Any]) -> tuple[str, str | None] | None:
    """(proxy, profile) of a run's topology; None without a load balancer. Older runs kept
    the LB's settings as a dict under ``lb``: those are HAProxy's."""
    lb = topo.get("lb")
    if isinstance(lb, dict):
        return "haproxy", None
    if not lb:
        return None
    return str(lb), (topo.get("profile") if lb == "nginx" else None)


def rows(docs: list[dict[str, Any]]) -> list[Through]:
    """Every run through a proxy, in the registry's transport order."""
    out = []
    for doc in docs:
        for run in doc.get("runs", []):
            front = _lb(run.get("topology") or {})
            if front is None:
                continue
            steps = run["steps"]
            st = max(steps, key=lambda s: s["clients"]) if steps else None
            works = run.get("works")
            if works is None or (works and st is None):  # no check, or nothing measured
                works = True if st is not None else None
            out.append(Through(
                run["transport"], *front, works,
                run.get("why"), st["clients"] if st else None,
                st["latency_ms"]["p50"] if st else None, st["latency_ms"]["p99"] if st else None,
                st.get("gap_p99_ms") if st else None, st["goodput"] if st else None,
                st["slo"]["held"] if st else None, doc["run_id"],
            ))  # fmt: skip
    order = {name: i for i, name in enumerate(NAMES)}
    return sorted(out, key=lambda r: (order.get(r.transport, 99), r.lb, r.profile or ""))


def needed(transport: str) -> list[str]:
    """The nginx settings the documented profile adds to the defaults for ``transport``."""
    return nginx.additions(not transports.get(transport).http)


def _fixed_by(r: Through, all_rows: list[Through]) -> str:
    """What made it work: for a transport the nginx defaults failed and the documented profile
    carried, the settings that profile adds; "-" otherwise."""
    if r.lb != "nginx" or r.profile != "defaults" or r.works is None or _ok(r):
        return "-"
    tried = [o for o in all_rows if o.transport == r.transport and o.lb == "nginx"
             and o.profile == "documented"]  # fmt: skip
    if not tried:
        return "not measured (no run through the documented profile)"
    if not any(o.works for o in tried):
        return "not carried by the documented profile either"
    return "; ".join(f"`{s}`" for s in needed(r.transport))


def _f(v: float | None, fmt: str = ",.1f") -> str:
    return "-" if v is None else format(v, fmt)


def markdown(docs: list[dict[str, Any]]) -> list[str]:
    found = rows(docs)
    if not found:
        return []
    lines = [
        "", "## Through the proxies", "",
        "Each transport through each proxy and configuration (`bench --lb`; nginx's `defaults` "
        "is `proxy_pass` alone, `documented` what the docs ask for: servers/topology/nginx.py). "
        "Works: "
        "one stream read end to end before any load. Gap p99 is the inter-token gap as the user "
        "saw it (bursts show as long gaps), at the busiest step. Where the defaults failed a "
        "transport and the documented profile carried it, the last column lists what that "
        "profile adds (not which one line was enough).", "",
        "| transport | proxy | works | users | p50 ms | p99 ms | gap p99 ms | goodput | SLO "
        "| the documented profile adds | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in found:
        works = ("not measured" if r.works is None else "yes" if r.works
                 else f"**no**: {' '.join(str(r.why).split())[:160]}")  # fmt: skip
        slo = "-" if r.slo_held is None else ("held" if r.slo_held else "**broke**")
        lines.append(
            f"| {NAMES.get(r.transport, r.transport)} | {r.front} | {works} | "
            f"{_f(r.users, ',')} | {_f(r.p50_ms)} | {_f(r.p99_ms)} | {_f(r.gap_p99_ms)} | "
            f"{_f(r.goodput, '.3f')} | {slo} | {_fixed_by(r, found)} | `{r.run_id}` |"
        )
    return lines


def _ok(r: Through) -> bool:
    return bool(r.works) and bool(r.slo_held)


def verdicts(docs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """ "SSE works through the proxies teams run", judged on nginx's two profiles: SSE held its
    SLO through both (confirmed), through the documented profile only (nuanced: it needs
    configuring), or not through the documented one (refuted); "not measured" without SSE
    through both. The text names what the other transports got through the defaults."""
    claim = "SSE works through the proxies teams run (nginx as it comes, and as documented)"
    found = [r for r in rows(docs) if r.lb == "nginx" and r.works is not None]
    sse: dict[str | None, list[Through]] = {}
    for r in found:
        if r.transport == "sse":
            sse.setdefault(r.profile, []).append(r)
    if "defaults" not in sse or "documented" not in sse:
        return [{"claim": claim, "verdict": "not measured",
                 "why": "needs bench --lb nginx with --lb-profile defaults and documented, SSE "
                        "among the transports"}]  # fmt: skip

    def said(r: Through) -> str:
        if not r.works:
            return f"no stream ({' '.join(str(r.why).split())[:120]})"
        return (
            f"{'held' if r.slo_held else 'broke'} its SLO at {r.users:,} users, p99 "
            f"{_f(r.p99_ms)} ms, gap p99 {_f(r.gap_p99_ms)} ms, goodput {_f(r.goodput, '.3f')}"
        )

    d, doc_ = sse["defaults"], sse["documented"]  # every run of each: all must hold
    why = (
        f"SSE through nginx's defaults: {'; '.join(map(said, d))}; as documented: "
        f"{'; '.join(map(said, doc_))}"
    )
    others = [r for r in found if r.transport != "sse" and r.profile == "defaults"]
    if others:
        why += "; through the defaults " + ", ".join(
            f"{NAMES.get(r.transport, r.transport)} {'got through' if r.works else 'did not'}"
            + ("" if r.works else f" (the documented profile adds "
                                  f"{', '.join(needed(r.transport))})")
            for r in others
        )  # fmt: skip
    if not all(map(_ok, doc_)):
        verdict = "refuted"
    elif not all(map(_ok, d)):
        verdict = "nuanced"
        why += f"; it held once configured as documented, which adds {', '.join(needed('sse'))}"
    else:
        verdict = "confirmed"
    return [{"claim": claim, "verdict": verdict, "why": why}]
