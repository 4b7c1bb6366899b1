"""Faults behind the load balancer in the report: which deployments lose tokens, and the claims
about the ALB architecture (sticky sessions, invisible reconnects, heartbeats).

An entry of ``tokenbench faults --lb`` carries ``topology`` (its replay log and stickiness);
the same scenario, transport and mode under another deployment is another row, never a
replacement. Every verdict here is a rule over those entries, written next to the claim.
"""

from __future__ import annotations

from typing import Any

from bench.results.schema import LB_SCENARIOS as SCENARIOS

Entry = dict[str, Any]


def deployment(e: Entry) -> str:
    """``redis``, ``pod``, ``pod, sticky``, ``redis, nginx defaults, idle 60 s``...; "" for a
    fault on one plain server."""
    topo = e.get("topology")
    if not topo:
        return ""
    replay = topo.get("replay") or topo.get("source") or "derive"
    front = ""  # HAProxy, the ALB's stand-in, is the one the columns assume
    if topo.get("lb") == "nginx":
        front = ", nginx" + (f" {topo['profile']}" if topo.get("profile") else "")
    idle = topo.get("idle_timeout_s")
    if str(e.get("scenario", "")).startswith("idle-timeout") and isinstance(idle, (int, float)):
        front += f", idle {idle:g} s"  # the cut the scenario ran against (faults --idle-s)
    return replay + (", sticky" if topo.get("sticky") else "") + front


def split(faults: list[Entry]) -> tuple[list[Entry], list[Entry]]:
    """(faults on one server, faults behind the load balancer)."""
    return [e for e in faults if not e.get("topology")], [e for e in faults if e.get("topology")]


def _flat(text: str) -> str:
    """One table cell: one line, no pipes (a proxy's HTML error page, say)."""
    return " ".join(str(text).split()).replace("|", "/")


def _cell(e: Entry | None) -> str:
    if e is None:
        return "-"
    if e["passed"]:
        return "ok"
    return f"**{e['lost']} lost, {e['unrecovered']}/{e['clients']} unrecovered**"


def matrix_md(entries: list[Entry]) -> list[str]:
    """Scenario and transport down, deployment and client mode across: ok, or what was lost."""
    if not entries:
        return []
    deps = sorted({deployment(e) for e in entries})
    modes = [m for m in ("default", "hardened") if any(e["mode"] == m for e in entries)]
    cols = [(d, m) for d in deps for m in modes]
    at = {(e["scenario"], e["transport"], deployment(e), e["mode"]): e for e in entries}
    order = {name: i for i, name in enumerate(SCENARIOS)}
    keys = sorted({(e["scenario"], e["transport"]) for e in entries},
                  key=lambda k: (order.get(k[0], 99), k[1]))  # fmt: skip
    lines = [
        "", "## Behind the load balancer", "",
        "Each cell: `ok` (nothing lost, every stream finished), or tokens lost and streams "
        "unrecovered. Columns are the replay log (and stickiness) and the client: `default` as it "
        "comes (EventSource gives up on any non-200), `hardened` (watchdog, retries 5xx). "
        "Commands and deployments are in the runs listed above.", "",
        "| scenario | transport | " + " | ".join(f"{d} ({m})" for d, m in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]  # fmt: skip
    for scenario, t in keys:
        cells = [_cell(at.get((scenario, t, d, m))) for d, m in cols]
        lines.append(f"| {scenario} | {t} | " + " | ".join(cells) + " |")
    lines += ["", "| scenario | transport | replay | mode | reconnects (why) | max stall | "
              "user saw |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for e in sorted(entries, key=lambda e: (order.get(e["scenario"], 99), e["transport"],
                                            deployment(e), e["mode"])):  # fmt: skip
        why = ", ".join(f"{k} x{v}" for k, v in (e.get("reconnect_reasons") or {}).items())
        stall = "-" if e["max_stall_ms"] is None else f"{e['max_stall_ms'] / 1000:.1f} s"
        lines.append(f"| {e['scenario']} | {e['transport']} | {deployment(e)} | {e['mode']} | "
                     f"{e.get('reconnects', '-')} ({why or 'none'}) | {stall} | "
                     f"{_flat(e['user_saw'])} |")  # fmt: skip
    return lines


def _fails(entries: list[Entry], t: str, dep: str, mode: str = "hardened") -> bool | None:
    """Did any scenario of transport ``t`` under deployment ``dep`` lose tokens or streams?"""
    kinds = ("backend-kill", "rolling-deploy")
    got = [e for e in entries if e["transport"] == t and deployment(e) == dep
           and e["mode"] == mode and e["scenario"] in kinds]  # fmt: skip
    if not got:
        return None
    return any(not e["passed"] for e in got)


def verdicts(entries: list[Entry]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def add(claim: str, verdict: str, why: str) -> None:
        out.append({"claim": claim, "verdict": verdict, "why": why})

    from bench.report.recovery import invisible

    names = sorted({e["transport"] for e in entries})
    # 1. Rule, over backend-kill and rolling-deploy with hardened clients: a transport "needs
    # stickiness" where it loses tokens or streams without it and keeps them with it. Confirmed
    # if WebSocket needs it with every replay log; refuted if it never loses without it;
    # nuanced when it needs it only with answers held in the pod, or when SSE needs it too.
    claim = "WebSockets need sticky sessions on the ALB"
    pod, redis, sticky = (
        {t: _fails(entries, t, d) for t in names} for d in ("pod", "redis", "pod, sticky")
    )
    if pod.get("ws") is None and redis.get("ws") is None:
        add(claim, "not measured", "needs tokenbench faults --lb haproxy (pod and redis replay)")
    else:
        need = [t for t in names if pod.get(t)]
        parts = [f"without stickiness, answers held in the pod: lost or refused on "
                 f"{', '.join(need) or 'none'}"]  # fmt: skip
        if any(v is not None for v in redis.values()):
            lossy = [t for t in names if redis.get(t)]
            parts.append(f"with the shared Redis log: lost on {', '.join(lossy) or 'none'}")
        if any(v is not None for v in sticky.values()):
            lossy = [t for t in names if sticky.get(t)]
            parts.append(f"sticky with pod replay: lost on {', '.join(lossy) or 'none'} "
                         "(a sticky cookie cannot bring back a pod that died)")  # fmt: skip
        why = "; ".join(parts) + " (hardened clients, backend-kill and rolling-deploy)"
        if not pod.get("ws") and not redis.get("ws"):
            add(claim, "refuted", why)
        elif redis.get("ws"):
            add(claim, "confirmed", why)
        else:
            add(claim, "nuanced", why + ": it is where the answer lives, not the transport")
    # 2. Rule: SSE as it comes (EventSource) with the shared log, through a backend kill and a
    # rolling deploy, judged as on one server (bench.report.recovery.invisible).
    claim = "SSE reconnects are invisible behind a load balancer"
    kinds = ("backend-kill", "rolling-deploy")
    sse = [e for e in entries if e["transport"] == "sse" and e["mode"] == "default"
           and deployment(e) == "redis" and e["scenario"] in kinds]  # fmt: skip
    if not sse:
        add(claim, "not measured", "needs tokenbench faults --lb haproxy --replay redis")
    else:
        add(claim, *invisible(sse))
    # 3. Rule, per transport: the LB cut idle connections during the pause with heartbeats off
    # (reconnects > 0) and not with them on. Confirmed if that holds for WebSocket and not for
    # SSE; nuanced if SSE needs them as well; refuted if WebSocket's connection survived without
    # heartbeats. A transport cut with heartbeats on too is named: heartbeats did not save it.
    claim = "WebSockets need heartbeats (against the LB's idle timeout)"
    # Read where a cut connection can resume (the shared log), so that a refusal is not a cut.
    if any(deployment(e) == "redis" for e in entries):
        entries = [e for e in entries if deployment(e) == "redis"]
    cut: dict[str, tuple[int, int]] = {}
    for t in names:
        on = [e for e in entries if e["transport"] == t and e["scenario"] == "idle-timeout"]
        off = [e for e in entries if e["transport"] == t and e["scenario"] == "idle-timeout-silent"]
        counts = [e.get("reconnects") for e in on + off]
        if on and off and None not in counts:
            cut[t] = (sum(e["reconnects"] for e in on), sum(e["reconnects"] for e in off))
    if "ws" not in cut:
        add(claim, "not measured", "needs tokenbench faults --lb haproxy --source llm "
            "--scenario idle-timeout,idle-timeout-silent")  # fmt: skip
    else:
        needs = [t for t, (on, off) in cut.items() if off > 0 and on == 0]
        anyway = [t for t, (on, _) in sorted(cut.items()) if on > 0]
        lossy = sorted({e["transport"] for e in entries if e["scenario"].startswith("idle-")
                        and not e["passed"]})  # fmt: skip
        why = (
            "reconnects during a pause longer than the idle timeout, heartbeats on / off: "
            + ", ".join(f"{t} {on} / {off}" for t, (on, off) in sorted(cut.items()))
            + f"; tokens or streams lost in: {', '.join(lossy) or 'none'}"
            + (f"; cut with heartbeats on too: {', '.join(anyway)}" if anyway else "")
        )
        if "ws" not in needs:
            add(claim, "refuted", why)
        elif "sse" in needs:
            add(claim, "nuanced", why + f"; needed them: {', '.join(needs)}, SSE among them")
        else:
            add(claim, "confirmed", why)
    return out


def split_docs(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(bench runs on one server, bench runs through a topology: ``bench --lb``)."""
    through = [d for d in docs if (d.get("config") or {}).get("deploy")]
    return [d for d in docs if d not in through], through


def _us(h: dict[str, Any] | None) -> str:
    return "-" if not h or h.get("cpu_us_per_token") is None else f"{h['cpu_us_per_token']:.1f}"


def _kib(h: dict[str, Any] | None) -> str:
    per = (h or {}).get("mem_per_stream_bytes")
    return "-" if per is None else f"{per / 1024:.1f}"


def hops_md(plain: list[dict[str, Any]], through: list[dict[str, Any]]) -> list[str]:
    """Each step through the topology beside the one-server step of the same transport and
    users (if a run here has one): latency, and each part's CPU per token and memory."""
    if not through:
        return []
    alone = {(r["transport"], st["clients"]): st for d in plain for r in d.get("runs", [])
             for st in r["steps"]}  # fmt: skip
    lines = [
        "", "## What the extra hops cost", "",
        "Through the topology (`bench --lb`): latency against the one-server run of the same "
        "transport and users where there is one, the backends' CPU per token (relaying), and "
        "each extra part's CPU per token and memory per live stream (one client connection at "
        "the LB, one live answer in Redis). All parts shared the server's cores.", "",
        "| transport | users | deployment | p50 ms | p99 ms | one server p50 / p99 | backends "
        "µs/tok | LB µs/tok | LB KiB/stream | Redis µs/tok | Redis KiB/answer | producer µs/tok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for d in through:
        dep = d["config"]["deploy"]
        topo = dep.get("topology") or {}
        lb = topo.get("lb") if isinstance(topo.get("lb"), dict) else {}
        label = (f"{topo.get('backends', 1)} backends, {dep['source']}"
                 + (f", {dep['replay']}" if dep["source"] == "llm" else "")
                 + (", sticky" if lb.get("sticky") else "")
                 + (", HAProxy's default (no http-no-delay)" if lb.get("no_delay") is False
                    else ""))  # fmt: skip
        for r in d.get("runs", []):
            for st in r["steps"]:
                h = st.get("hops") or {}
                one = alone.get((r["transport"], st["clients"]))
                ref = "-" if one is None else (f"{one['latency_ms']['p50']:,.1f} / "
                                               f"{one['latency_ms']['p99']:,.1f}")  # fmt: skip
                cpu = st["server"]["cpu_s_per_1k_tokens"]
                lines.append(
                    f"| {r['transport']} | {st['clients']:,} | {label} | "
                    f"{st['latency_ms']['p50']:,.1f} | {st['latency_ms']['p99']:,.1f} | {ref} | "
                    f"{'-' if cpu is None else f'{cpu * 1000:.1f}'} | {_us(h.get('lb'))} | "
                    f"{_kib(h.get('lb'))} | {_us(h.get('redis'))} | {_kib(h.get('redis'))} | "
                    f"{_us(h.get('producer'))} |"
                )  # fmt: skip
    lines.append("")
    lines.append("The producer is the simulated model, not a cost of the deployment: it is shown "
                 "because it shared the server's cores.")  # fmt: skip
    return lines + projection_md(through, 50_000, 40.0)


def projection_md(through: list[dict[str, Any]], users: int, rate: float) -> list[str]:
    """The fleet's load-balancer and Redis rows per transport, from the hops measured
    (bench.report.plan; each transport's largest step, its costliest deployment)."""
    from bench.report import plan

    names = sorted({r["transport"] for d in through for r in d.get("runs", [])})
    out = []
    for part, name in (("lb", "Load balancer (HAProxy)"), ("redis", "Redis")):
        cells = []
        for t in names:
            fig = plan.measured(through, part, users, rate, transport=t)
            if fig is not None:
                v = fig.value
                count = f"{v['processes']} processes" if part == "lb" else f"{v['shards']} shards"
                gib = "memory not measured" if v["memory_gib"] is None else f"{v['memory_gib']} GiB"
                cells.append(f"{t} {v['cores']:,} cores ({count}, {gib})")
        if cells:
            out.append(f"- {name} for {users:,} users at {rate:g} tok/s, projected from "
                       f"`bench --lb`: {'; '.join(cells)}.")  # fmt: skip
    if out:
        out.append("- HAProxy: one process carries at most 9,000 connections here; Redis runs "
                   "commands on one core per shard, so a shard per 80 % of a core.")  # fmt: skip
    return ["", *out] if out else []
