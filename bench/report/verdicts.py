"""What the measurements say about the mission's claims.

Everything here is computed from results.json by the rules written next to each claim, never
typed in: rerun the benchmark and the verdicts follow the new numbers. A claim whose data is
missing says so instead of guessing. A comparison knows its noise (bench.report.stats): when
the two intervals overlap the verdict is a tie, and otherwise it states the margin with its
interval. The figures and their intervals come from bench.report.figures.
"""

from __future__ import annotations

from typing import Any

from bench.load.config import Variant
from bench.report import behind_lb, browsers, stats
from bench.report.figures import Knee, cpu_at_common_load, knees, memory
from bench.report.stats import Interval
from transports import STACKS


def _fault(
    entries: list[dict[str, Any]], scenario: str, t: str, mode: str
) -> dict[str, Any] | None:
    return next((e for e in entries if (e["scenario"], e["transport"], e["mode"]) ==
                 (scenario, t, mode)), None)  # fmt: skip


def margin(a_name: str, a: Interval, b_name: str, b: Interval, what: str) -> tuple[str, str]:
    """(outcome, words): "tie", or which is higher, "a" / "b", and by how much (b / a)."""
    r, lo, hi = stats.ratio(a, b)
    if a.overlaps(b):
        return "tie", f"{what}: a tie ({b_name} / {a_name} {r:.2f}, intervals overlap)"
    top, low = (b_name, a_name) if r > 1 else (a_name, b_name)
    k, klo, khi = (r, lo, hi) if r > 1 else (1 / r, 1 / hi, 1 / lo)
    return ("b" if r > 1 else "a"), (f"{what}: {top} {k:.2f}x {low}'s "
                                     f"(95 % interval {klo:.2f} to {khi:.2f})")  # fmt: skip


def _capacity(s: Knee, w: Knee) -> tuple[str, str]:
    out, words = margin("SSE", s.users_per_core, "WebSocket", w.users_per_core, "users per core")
    return out, (f"{words}; SSE {s.clients} held ({s.held_runs[0]}/{s.held_runs[1]} runs), "
                 f"broke at {s.broke_at}; WebSocket {w.clients} "
                 f"({w.held_runs[0]}/{w.held_runs[1]}), broke at {w.broke_at}")  # fmt: skip


def _one_way(k: dict[str, Knee]) -> tuple[str, str] | None:
    """SSE holds at least as many users per core as WebSocket and costs no more server CPU
    per token, at the same load (the most users both held). Each comparison is a tie while
    the intervals overlap: both ties is a tie; WebSocket ahead on one and behind on none
    refutes; SSE ahead on one and behind on none confirms; one each way is nuanced."""
    common = cpu_at_common_load(k["sse"], k["ws"]) if "sse" in k and "ws" in k else None
    if common is None:
        return None
    s, w = k["sse"], k["ws"]
    load, cs, cw = common
    cap, cap_words = _capacity(s, w)
    cpu, cpu_words = margin("SSE", cs, "WebSocket", cw, f"server CPU per token at {load} users")
    cpu = {"a": "b", "b": "a", "tie": "tie"}[cpu]  # lower CPU is better: flip
    sse_ahead, ws_ahead = [cap == "a", cpu == "a"], [cap == "b", cpu == "b"]
    why = f"{cap_words}; {cpu_words} ({cs.mean:.1f} vs {cw.mean:.1f} µs)"
    if not any(sse_ahead) and not any(ws_ahead):
        return "tie", why + (
            "; SSE's edge is the protocol (plain HTTP, EventSource), not server cost"
        )
    if any(ws_ahead) and not any(sse_ahead):
        return "refuted", why
    if any(sse_ahead) and not any(ws_ahead):
        return "confirmed", why
    return "nuanced", why


def _memory(mem: dict[str, tuple[int, Interval]]) -> tuple[str, str] | None:
    if "sse" not in mem or "ws" not in mem:
        return None
    (ns, ms_), (nw, mw) = mem["sse"], mem["ws"]
    kib = lambda i: Interval(i.mean / 1024, i.lo / 1024, i.hi / 1024, i.n, i.sd / 1024)  # noqa: E731
    outcome, words = margin("SSE", kib(ms_), "WebSocket", kib(mw), "memory per connection")
    why = (f"{words}: WebSocket {mw.mean / 1024:.1f} KiB ({nw:,} connections), SSE "
           f"{ms_.mean / 1024:.1f} KiB ({ns:,})")  # fmt: skip
    return {"b": "confirmed", "a": "refuted", "tie": "tie"}[outcome], why


def _requests_per_token(k: dict[str, Knee], stack: str) -> tuple[str, str] | None:
    """Rule 4 on one stack: long polling's requests per token over every window of every run
    at its knee; confirmed at 0.5 or more, refuted under 0.1, nuanced between."""
    if "poll" not in k:
        return None
    pk, ref = k["poll"], k.get("sse")
    ratios = [w["requests_per_s"] / w["tokens_per_s"] for st in pk.steps
              if st["clients"] == pk.clients for w in (st.get("windows") or [st])
              if w.get("tokens_per_s")]  # fmt: skip
    per = stats.of(ratios)
    if per is None:
        return "not measured", f"no token was delivered at its knee ({stack})"
    extra = ""
    if stack == "stock" and ref and ref.cpu_us_per_token and pk.cpu_us_per_token:
        _, words = margin("SSE", ref.cpu_us_per_token, "long polling", pk.cpu_us_per_token,
                          "server CPU per token")  # fmt: skip
        extra = f"; {words}"
    p = pk.step
    why = (f"{per.mean:.2f} requests per token at its knee (95 % interval {per.lo:.2f} to "
           f"{per.hi:.2f}; {p['requests_per_s']:,.0f} req/s for {p['tokens_per_s']:,.0f} tok/s)"
           f"{extra}; knee {pk.clients} users per core")  # fmt: skip
    return ("confirmed" if per.lo >= 0.5 else "refuted" if per.hi < 0.1 else "nuanced"), why


def _per_stack(stock: tuple[str, str] | None, lean: tuple[str, str] | None) -> tuple[str, str]:
    """One verdict from the stock libraries' and the lean stacks' (issue 12): the same outcome
    is the protocol's; a different one is the libraries', and the verdict is "nuanced"."""
    if stock is None:
        return "not measured", "needs bench runs for SSE and WebSocket (stock stack)"
    if lean is None:
        return stock[0], f"stock libraries: {stock[1]}; lean stacks not measured"
    why = f"stock libraries: {stock[1]}; lean against lean: {lean[1]}"
    if stock[0] == lean[0]:
        return stock[0], f"{why}; the same on both stacks: the protocol's"
    return "nuanced", (f"{why}; {stock[0]} with the stock libraries, {lean[0]} lean against "
                       f"lean: the libraries' outcome, not the protocol's")  # fmt: skip


def verdicts(
    docs: list[dict[str, Any]], faults: list[dict[str, Any]],
    browser: list[dict[str, Any]] | None = None,
) -> list[dict[str, str]]:  # fmt: skip
    """Every claim's verdict. Faults behind the load balancer have their rules in
    bench/report/behind_lb.py, browsers theirs in bench/report/browsers.py."""
    faults, lb_faults = behind_lb.split(faults)
    k = knees(docs)
    mem = memory(docs)
    out: list[dict[str, str]] = []

    def add(claim: str, verdict: str, why: str) -> None:
        out.append({"claim": claim, "verdict": verdict, "why": why})

    # 1. Rule: see ``_one_way``. Judged on the stock libraries (what a team runs first) and
    # again lean against lean (the protocols); two different outcomes are "nuanced": the stock
    # outcome is then the libraries', not the protocol's (issue 12, "verdicts per stack").
    claim = "One-way traffic fits SSE best"
    add(claim, *_per_stack(_one_way(k), _one_way(knees(docs, Variant("lean")))))

    # 2. Rule: WebSocket's memory per connection above SSE's, beyond both intervals; on the
    # stock libraries and lean against lean, as rule 1.
    claim = "WebSockets cost more memory per connection"
    add(claim, *_per_stack(_memory(mem), _memory(memory(docs, Variant("lean")))))

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

    # 4. Rule: the claim is about the order of magnitude: a request per token, where a stream
    # makes one per answer. Confirmed when long polling's requests per token, over every window
    # of every run at its knee, is at least 0.5 (a poll often returns two due tokens, so the
    # count sits near 0.8, not at 1); refuted when it is under 0.1, nuanced between. A fixed
    # threshold near the measured value would flip between runs: the interval decides. Every
    # stack measured is judged too: a server that batches answers under load changes the count.
    claim = "Long polling costs a request per token"
    stock = _requests_per_token(k, "stock")
    if stock is None:
        add(claim, "not measured", "needs a knee run for long polling")
    else:
        verdict, why = stock
        # the same rule on every other stack measured (a server may batch answers under load)
        others = [(st, _requests_per_token(knees(docs, Variant(st)), st)) for st in STACKS[1:]]
        others = [(st, o) for st, o in others if o is not None]
        for st, (v, w) in others:
            why += f"; {st}: {w} ({v})"
        differ = [st for st, (v, _) in others if v != verdict]
        if differ:
            same = ["stock", *(st for st, (v, _) in others if v == verdict)]
            why += (f"; {verdict} on {' and '.join(same)}, not on {' and '.join(differ)}: the "
                    f"count is the server's, not the protocol's")  # fmt: skip
            verdict = "nuanced"
        add(claim, verdict, why)

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

    # 7. Rule: SSE against WebSocket in users per core, once with the stock libraries and once
    # with the lean stacks. The same outcome with both is the protocol's; a different one (a
    # tie on one side, a margin on the other) is the libraries'.
    claim = "The SSE / WebSocket cost difference is the protocol's, not the library's"
    lean = knees(docs, Variant("lean"))
    if "sse" in k and "ws" in k and "sse" in lean and "ws" in lean:
        stock_out, stock_words = _capacity(k["sse"], k["ws"])
        lean_out, lean_words = _capacity(lean["sse"], lean["ws"])
        why = (f"stock (sse-starlette, FastAPI WebSocket): {stock_words}; lean (raw ASGI): "
               f"{lean_words}")  # fmt: skip
        add(claim, "confirmed" if stock_out == lean_out else "refuted", why)
    else:
        add(claim, "not measured", "needs knee runs of SSE and WebSocket on both stacks")
    return out + browsers.verdicts(browser or []) + behind_lb.verdicts(lb_faults)
