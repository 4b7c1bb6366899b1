"""What the measurements say about the mission's claims.

Everything here is computed from results.json by the rules written next to each claim, never
typed in: rerun the benchmark and the verdicts follow the new numbers. A claim whose data is
missing says so instead of guessing. A comparison knows its noise (bench.report.stats): when
the two intervals overlap the verdict is a tie, and otherwise it states the margin with its
interval. The figures and their intervals come from bench.report.figures.
"""

from __future__ import annotations

import math
from typing import Any

from bench.report import behind_lb, browsers, proxies, stats, stop
from bench.report.figures import (
    Knee,
    cpu_at_common_load,
    knees,
    memory_at_common_scale,
    memory_points,
)
from bench.report.recovery import invisible, who
from bench.report.stats import Interval
from bench.results.queries import Variant
from transports import stacks


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
    k, klo, khi = (r, lo, hi) if r > 1 else (1 / r, 1 / hi if hi else math.inf, 1 / lo)
    return ("b" if r > 1 else "a"), (f"{what}: {top} {k:.2f}x {low}'s "
                                     f"(95 % interval {klo:.2f} to {khi:.2f})")  # fmt: skip


def _edge(k: Knee) -> str:
    """A knee's bracket with its evidence: "[610, 675): 610 held in 3 of 3, 675 broke in 2 of
    3"; unsettled or bounded by the load generator said so."""
    held, runs = k.held_runs
    out = f"{k.clients} held in {held} of {runs}"
    if k.harness_bound:
        out += " (the load generator saturated: at least that)"
    elif k.broke_at is not None and k.broke_runs is not None:
        h, n = k.broke_runs
        out += f", {k.broke_at} broke in {n - h} of {n}"
    else:
        out += ", nothing above it broke (at least that)"
    if k.passes > 1:
        out += f" over {k.passes} passes (the hull of their brackets)"
    if k.fit is not None:
        hi = "..." if math.isinf(k.fit[2]) else f"{k.fit[2]:,.0f}"
        out += f"; the fit puts 50 % held at {k.fit[0]:,.0f} [{k.fit[1]:,.0f}, {hi}]"
    return out + ("; unsettled: its interval, the bracket widened to the fit's, is wider than "
                  "the search's target"
                  if k.settled is False else "")  # fmt: skip


def capacity(a_name: str, a: Knee, b_name: str, b: Knee) -> tuple[str, str]:
    """Two knees compared as capacity intervals (``stats.compare``): "tie" only when the
    evidence allows either order; otherwise who is ahead, shown by the runs at the edges."""
    out = stats.compare(a.users_per_core, b.users_per_core)
    names = {"a": (a_name, a, b_name, b), "b": (b_name, b, a_name, a)}
    if out == "tie":
        return "tie", (f"users per core: a tie (the intervals overlap; {a_name} {_edge(a)}; "
                       f"{b_name} {_edge(b)})")  # fmt: skip
    top_name, top, low_name, low = names[out]
    at = low.broke_at
    h, n = top.runs_at(top.clients)
    lh, ln = low.runs_at(at) if at is not None else (0, 0)
    where = "there" if at == top.clients else f"at {at}"
    _, lo, hi = stats.ratio(low.users_per_core, top.users_per_core)
    span = f"{lo:.2f}x to {hi:.2f}x" if math.isfinite(hi) else f"at least {lo:.2f}x"
    return out, (f"users per core: {top_name} ahead, {span} {low_name}'s ({top_name} held "
                 f"{top.clients} in {h} of {n} runs; {low_name} broke {where} in {ln - lh} of "
                 f"{ln})")  # fmt: skip


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
    cap, cap_words = capacity("SSE", s, "WebSocket", w)
    cpu, cpu_words = margin("SSE", cs, "WebSocket", cw, f"server CPU per token at {load} users")
    cpu = {"a": "b", "b": "a", "tie": "tie"}[cpu]  # lower CPU is better: flip
    sse_ahead, ws_ahead = [cap == "a", cpu == "a"], [cap == "b", cpu == "b"]
    why = f"{cap_words}; {cpu_words} ({cs.mean:.1f} vs {cw.mean:.1f} µs)"
    if not any(sse_ahead) and not any(ws_ahead):
        return "tie", why
    if any(ws_ahead) and not any(sse_ahead):
        return "refuted", why
    if any(sse_ahead) and not any(ws_ahead):
        return "confirmed", why
    return "nuanced", why


def _memory(pts: dict[str, dict[int, Interval]]) -> tuple[str, str] | None:
    """WebSocket's memory per connection above SSE's beyond both intervals, at a common scale
    (bench.report.figures.memory_at_common_scale)."""
    if "sse" not in pts or "ws" not in pts:
        return None
    common = memory_at_common_scale(pts["sse"], pts["ws"])
    if common is None:
        return "not measured", (
            f"no common scale: SSE measured at {_scales(pts['sse'])}, WebSocket at "
            f"{_scales(pts['ws'])} connections (memory per connection falls with scale)"
        )
    ns, ms_, nw, mw = common
    outcome, words = margin("SSE", ms_.scaled(1 / 1024), "WebSocket", mw.scaled(1 / 1024),
                            "memory per connection")  # fmt: skip
    why = (f"{words}: WebSocket {mw.mean / 1024:.1f} KiB ({nw:,} connections), SSE "
           f"{ms_.mean / 1024:.1f} KiB ({ns:,})")  # fmt: skip
    return {"b": "confirmed", "a": "refuted", "tie": "tie"}[outcome], why


def _scales(pts: dict[int, Interval]) -> str:
    return ", ".join(f"{n:,}" for n in sorted(pts))


def _requests_per_token(k: dict[str, Knee], stack: str) -> tuple[str, str] | None:
    """Rule 4 on one stack: long polling's requests per token over every window of every run
    that held the SLO at its knee (a run that broke is not the knee's); confirmed at 0.5 or
    more, refuted under 0.1, nuanced between."""
    if "poll" not in k:
        return None
    pk, ref = k["poll"], k.get("sse")
    held = [st for st in pk.steps if st["clients"] == pk.clients and st["slo"]["held"]]
    ratios = [w["requests_per_s"] / w["tokens_per_s"] for st in held
              for w in (st.get("windows") or [st]) if w.get("tokens_per_s")]  # fmt: skip
    per = stats.of(ratios)
    if per is None:
        return "not measured", f"no token was delivered in a held run at its knee ({stack})"
    extra = ""
    if stack == "stock" and ref and ref.cpu_us_per_token and pk.cpu_us_per_token:
        _, words = margin("SSE", ref.cpu_us_per_token, "long polling", pk.cpu_us_per_token,
                          "server CPU per token")  # fmt: skip
        extra = f"; {words}"
    p = held[-1]
    why = (f"{per.mean:.2f} requests per token at its knee, {len(held)} held run(s) (95 % "
           f"interval {per.lo:.2f} to {per.hi:.2f}; {p['requests_per_s']:,.0f} req/s for "
           f"{p['tokens_per_s']:,.0f} tok/s){extra}; knee {pk.clients} users")  # fmt: skip
    return ("confirmed" if per.lo >= 0.5 else "refuted" if per.hi < 0.1 else "nuanced"), why


def tuned_stack(docs: list[dict[str, Any]]) -> str:
    """The stack the protocol verdicts compare against stock: the first of ``stacks.TUNED``
    with knees for both SSE and WebSocket (the last of them if none has)."""
    for name in stacks.TUNED:
        k = knees(docs, Variant(name))
        if "sse" in k and "ws" in k:
            return name
    return stacks.TUNED[-1]


def _per_stack(
    stock: tuple[str, str] | None, lean: tuple[str, str] | None, tuned: str
) -> tuple[str, str]:
    """One verdict from the stock libraries' and the lean stacks' (issue 12): the same outcome
    is the protocol's; a different one is the libraries', and the verdict is "nuanced"."""
    if stock is None:
        return "not measured", "needs bench runs for SSE and WebSocket (stock stack)"
    if lean is None:
        return stock[0], f"stock libraries: {stock[1]}; {tuned} stacks not measured"
    why = f"stock libraries: {stock[1]}; {tuned} against {tuned}: {lean[1]}"
    if stock[0] == lean[0]:
        return stock[0], f"{why}; the same on both stacks: the protocol's"
    return "nuanced", (f"{why}; {stock[0]} with the stock libraries, {lean[0]} {tuned} against "
                       f"{tuned}: the libraries' outcome, not the protocol's")  # fmt: skip


def _protocol_or_library(stock: tuple[str, str], lean: tuple[str, str]) -> str:
    """Rule 7 from the two capacity outcomes: the same order on both stacks confirms; a margin
    on one stack that the other does not show, or reverses, refutes; no margin on either is a
    tie (there is no difference to attribute); a margin only lean is nuanced (the protocol
    differs, the stock libraries hide it)."""
    if stock[0] == "tie" and lean[0] == "tie":
        return "tie"
    if stock[0] == lean[0]:
        return "confirmed"
    return "nuanced" if stock[0] == "tie" else "refuted"


def verdicts(
    docs: list[dict[str, Any]], faults: list[dict[str, Any]],
    browser: list[dict[str, Any]] | None = None, through: list[dict[str, Any]] | None = None,
    stops: list[dict[str, Any]] | None = None,
) -> list[dict[str, str]]:  # fmt: skip
    """Every claim's verdict. Faults behind the load balancer have their rules in
    bench/report/behind_lb.py, browsers theirs in bench/report/browsers.py, bench runs through
    a proxy (``through``) theirs in bench/report/proxies.py, ``tokenbench stop`` runs
    (``stops``) theirs in bench/report/stop.py."""
    faults, lb_faults = behind_lb.split(faults)
    k = knees(docs)
    out: list[dict[str, str]] = []

    def add(claim: str, verdict: str, why: str) -> None:
        out.append({"claim": claim, "verdict": verdict, "why": why})

    # 1. Rule: see ``_one_way``. Judged on the stock libraries (what a team runs first) and
    # again lean against lean (the protocols); two different outcomes are "nuanced": the stock
    # outcome is then the libraries', not the protocol's (issue 12, "verdicts per stack").
    claim = "One-way traffic fits SSE best"
    tuned = tuned_stack(docs)
    add(claim, *_per_stack(_one_way(k), _one_way(knees(docs, Variant(tuned))), tuned))

    # 2. Rule: WebSocket's memory per connection above SSE's, beyond both intervals, at the
    # largest scale both measured; on the stock libraries and lean against lean, as rule 1.
    claim = "WebSockets cost more memory per connection"
    add(claim, *_per_stack(_memory(memory_points(docs)),
                           _memory(memory_points(docs, Variant(tuned))), tuned))  # fmt: skip

    # 3. Rule, black hole (a connection that goes silent): WebSocket's loop without a watchdog
    # left a stream unrecovered and the hardened one (heartbeat watchdog, ?after= resume)
    # recovered every stream whole, while SSE's reader as it comes recovered: confirmed. The
    # loop without a watchdog recovering every stream refutes. SSE missing it too (both need
    # the watchdog), or the hardened client failing as well, is nuanced.
    claim = "WebSockets need heartbeats and hand-written resume"
    d, h = (
        _fault(faults, "blackhole", "ws", "default"),
        _fault(faults, "blackhole", "ws", "hardened"),
    )
    sd = _fault(faults, "blackhole", "sse", "default")
    if d and h:
        why = (f"black hole: {who(d)} left {d['unrecovered']}/{d['clients']} streams "
               f"unrecovered; {who(h)} (heartbeat watchdog, ?after= resume) "
               f"{h['unrecovered']}/{h['clients']}, {h['lost']} tokens lost")  # fmt: skip
        whole = not h["unrecovered"] and not h["lost"]
        if not d["unrecovered"]:
            add(claim, "refuted", why + ": no watchdog was needed")
        elif sd and sd["unrecovered"]:
            why += (f"; {who(sd)} missed it too ({sd['unrecovered']}/{sd['clients']}): SSE "
                    f"needs the same watchdog")  # fmt: skip
            add(claim, "nuanced", why)
        else:
            add(claim, "confirmed" if whole else "nuanced", why)
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
        others = [
            (st, _requests_per_token(knees(docs, Variant(st)), st))
            for st in stacks.names()
            if st != stacks.STOCK
        ]
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

    # 5. Rule: ``invisible`` over every fault scenario run with SSE's reader as it comes.
    claim = "SSE reconnects are invisible"
    sse_default = [e for e in faults if e["transport"] == "sse" and e["mode"] == "default"]
    if sse_default:
        add(claim, *invisible(sse_default))
    else:
        add(claim, "not measured", "needs tokenbench faults")

    # 7. Rule: SSE against WebSocket in users per core, once with the stock libraries and once
    # with the lean stacks (``_protocol_or_library``).
    claim = "The SSE / WebSocket cost difference is the protocol's, not the library's"
    lean = knees(docs, Variant(tuned))
    if "sse" in k and "ws" in k and "sse" in lean and "ws" in lean:
        stock = capacity("SSE", k["sse"], "WebSocket", k["ws"])
        lean_ = capacity("SSE", lean["sse"], "WebSocket", lean["ws"])
        base, best = stacks.get(stacks.STOCK), stacks.get(tuned)
        why = (f"{base.name} ({base.short}): {stock[1]}; {best.name} ({best.short}): "
               f"{lean_[1]}")  # fmt: skip
        add(claim, _protocol_or_library(stock, lean_), why)
    else:
        add(claim, "not measured", "needs knee runs of SSE and WebSocket on both stacks")
    out += browsers.verdicts(browser or []) + behind_lb.verdicts(lb_faults)
    return out + proxies.verdicts(through or []) + stop.verdicts(stops or [])
