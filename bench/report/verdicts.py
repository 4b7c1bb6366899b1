"""What the measurements say about the mission's claims, and what 50,000 users would need.

Everything here is computed from results.json by the rules written next to each claim, never
typed in: rerun the benchmark and the verdicts follow the new numbers. A claim whose data is
missing says so instead of guessing.
"""

from __future__ import annotations

from typing import Any

import transports

USERS = 50_000
RATE = 40.0
NAMES = {t.name: t.label for t in transports.all_transports()}


def knees(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per transport, the busiest step that held the SLO at the highest token rate run."""
    out: dict[str, dict[str, Any]] = {}
    for doc in docs:
        rate = doc["config"].get("rate")
        for run in doc.get("runs", []):
            held = [s for s in run["steps"] if s["slo"]["held"]]
            if not held or len(run["steps"]) < 2:
                continue
            best = max(held, key=lambda s: s["clients"])
            t = run["transport"]
            if t not in out or rate > out[t]["_rate"]:
                out[t] = {**best, "_rate": rate, "_steps": run["steps"]}
    return out


def scale(step: dict[str, Any]) -> int:
    """A step's scale: the connections the server held in the window, or else its users (a
    transport that could not connect everyone is measured at what it held, not what was asked)."""
    return step["server"].get("connections") or step["clients"]


def largest(docs: list[dict[str, Any]], key: str) -> dict[str, tuple[int, float]]:
    """Per transport, a server figure at the most connections measured: (connections, value)."""
    out: dict[str, tuple[int, float]] = {}
    for doc in docs:
        for run in doc.get("runs", []):
            for s in run["steps"]:
                v = s["server"].get(key)
                if v is not None and scale(s) >= out.get(run["transport"], (0, 0))[0]:
                    out[run["transport"]] = (scale(s), v)
    return out


def fleet(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Server cores and memory for 50,000 users at 40 tok/s, with the points they rest on."""
    k = knees(docs)
    mem = largest(docs, "mem_per_conn_bytes")
    rows = []
    for t in NAMES:
        if t not in k:
            continue
        knee = k[t]
        per_core = knee["clients"]  # one server core in the knee runs
        half = [s for s in knee["_steps"] if s["slo"]["held"] and s["clients"] <= per_core / 2]
        cpu_knee = knee["server"]["cpu_s_per_1k_tokens"]
        cpu_half = (
            max(half, key=lambda s: s["clients"])["server"]["cpu_s_per_1k_tokens"] if half else None
        )
        linear = None if cpu_half is None else round(cpu_knee / cpu_half, 2)
        rows.append({
            "transport": t,
            "users_per_core": per_core,
            "harness_bound": knee["limited_by"] == "loadgen" or any(
                s["limited_by"] == "loadgen" for s in knee["_steps"] if s["clients"] > per_core),
            "cores": round(USERS / per_core, 1),
            "cpu_ms_per_1k_at_knee": round(cpu_knee * 1000, 1),
            "cpu_ratio_knee_to_half": linear,
            "memory_gib": round(USERS * mem[t][1] / 2**30, 2) if t in mem else None,
            "memory_measured_at": mem[t][0] if t in mem else None,
            "mem_per_conn_kib": round(mem[t][1] / 1024, 1) if t in mem else None,
        })  # fmt: skip
    return rows


def _fault(
    entries: list[dict[str, Any]], scenario: str, t: str, mode: str
) -> dict[str, Any] | None:
    return next((e for e in entries if (e["scenario"], e["transport"], e["mode"]) ==
                 (scenario, t, mode)), None)  # fmt: skip


def verdicts(docs: list[dict[str, Any]], faults: list[dict[str, Any]]) -> list[dict[str, str]]:
    k = knees(docs)
    mem = largest(docs, "mem_per_conn_bytes")
    out: list[dict[str, str]] = []

    def add(claim: str, verdict: str, why: str) -> None:
        out.append({"claim": claim, "verdict": verdict, "why": why})

    # 1. Rule: SSE holds at least as many users per core as WebSocket, at no more CPU per token.
    claim = "One-way traffic fits SSE best"
    if "sse" in k and "ws" in k:
        s, w = k["sse"], k["ws"]
        cs, cw = s["server"]["cpu_s_per_1k_tokens"] * 1e3, w["server"]["cpu_s_per_1k_tokens"] * 1e3
        why = (f"users per core at 40 tok/s: SSE {s['clients']}, WebSocket {w['clients']} "
               f"(p99 {s['latency_ms']['p99']:.0f} vs {w['latency_ms']['p99']:.0f} ms); server CPU "
               f"per 1,000 tokens {cs:.1f} vs {cw:.1f} ms")  # fmt: skip
        if s["clients"] >= w["clients"] and cs <= cw * 1.05:
            add(claim, "confirmed", why)
        elif s["clients"] < w["clients"] and cs > cw * 1.05:
            add(claim, "refuted", why)
        else:
            add(
                claim,
                "nuanced",
                why + "; SSE's edge is the protocol (plain HTTP, EventSource), not server cost",
            )
    else:
        add(claim, "not measured", "needs a knee run for SSE and WebSocket")

    # 2. Rule: WebSocket memory per connection above SSE's by more than 10 %.
    claim = "WebSockets cost more memory per connection"
    if "sse" in mem and "ws" in mem:
        (ns, ms_), (nw, mw) = mem["sse"], mem["ws"]
        why = (
            f"server RSS per connection: WebSocket {mw / 1024:.1f} KiB ({nw:,} connections), "
            f"SSE {ms_ / 1024:.1f} KiB ({ns:,})"
        )
        add(
            claim,
            "confirmed" if mw > ms_ * 1.1 else "refuted" if mw < ms_ * 0.9 else "nuanced",
            why,
        )
    else:
        add(claim, "not measured", "needs bench runs for SSE and WebSocket")

    # 3. Rule: a WebSocket client without a watchdog misses a black hole, with one it resumes.
    claim = "WebSockets need heartbeats and hand-written resume"
    d, h = (
        _fault(faults, "blackhole", "ws", "default"),
        _fault(faults, "blackhole", "ws", "hardened"),
    )
    sd = _fault(faults, "blackhole", "sse", "default")
    if d and h:
        why = (f"black hole: a WebSocket loop without a watchdog left {d['unrecovered']}/"
               f"{d['clients']} streams unrecovered; with a heartbeat watchdog and ?after= resume "
               f"{h['unrecovered']}/{h['clients']}, {h['lost']} tokens lost")  # fmt: skip
        if sd and sd["unrecovered"]:
            why += (f"; but a browser's EventSource missed it too ({sd['unrecovered']}/"
                    f"{sd['clients']}): SSE needs the same watchdog")  # fmt: skip
            add(claim, "nuanced", why)
        else:
            add(claim, "confirmed" if d["unrecovered"] and not h["unrecovered"] else "nuanced", why)
    else:
        add(claim, "not measured", "needs tokenbench faults --scenario blackhole")

    # 4. Rule: long polling makes at least 0.8 requests per token at its knee.
    claim = "Long polling costs a request per token"
    if "poll" in k:
        p = k["poll"]
        per_token = p["requests_per_s"] / p["tokens_per_s"] if p["tokens_per_s"] else 0
        cpu = p["server"]["cpu_s_per_1k_tokens"] * 1e3
        ref = k.get("sse")
        extra = (f"; {cpu / (ref['server']['cpu_s_per_1k_tokens'] * 1e3):.1f}x SSE's server CPU "
                 f"per token" if ref else "")  # fmt: skip
        why = (
            f"{per_token:.2f} requests per token at its knee ({p['requests_per_s']:,.0f} req/s "
            f"for {p['tokens_per_s']:,.0f} tok/s){extra}; knee {p['clients']} users per core"
        )
        add(claim, "confirmed" if per_token >= 0.8 else "nuanced", why)
    else:
        add(claim, "not measured", "needs a knee run for long polling")

    # 5. Rule: SSE out of the box loses no stream and stalls under 1 s in every fault scenario.
    claim = "SSE reconnects are invisible"
    sse_default = [e for e in faults if e["transport"] == "sse" and e["mode"] == "default"]
    if sse_default:
        broken = [e["scenario"] for e in sse_default if e["unrecovered"]]
        stalls = [e["max_stall_ms"] or 0 for e in sse_default if not e["unrecovered"]]
        lost = sum(e["lost"] for e in sse_default if not e["unrecovered"])
        why = (f"as it comes, EventSource never recovered in: {', '.join(broken) or 'none'}; "
               f"elsewhere it lost {lost} tokens, with stalls up to "
               f"{max(stalls or [0]) / 1000:.1f} s (retry: waits between attempts)")  # fmt: skip
        if broken:
            add(claim, "refuted", why)
        elif max(stalls or [0]) >= 1000:
            add(claim, "nuanced", why)
        else:
            add(claim, "confirmed", why)
    else:
        add(claim, "not measured", "needs tokenbench faults")

    add(
        "gRPC needs a proxy for browsers",
        "not measured",
        "tokenbench has no browser gRPC-Web client; its gRPC figures are for native clients",
    )
    return out
