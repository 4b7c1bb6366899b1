"""Recovery after a fault, as a user sees it: is it invisible, and who recovers fastest.

Read from fault entries (bench/faults/scenarios.py) only. A user notices a stall longer than the
retry the deployment sets (the SSE server's ``retry:``; WHATWG HTML, "reconnection time": the
wait EventSource takes by design) plus the delivery SLO. Detection, reconnect and catch-up times
are compared by their 95 % intervals over every client (bench.report.stats): transports whose
intervals overlap tie.
"""

from __future__ import annotations

from typing import Any

import transports
from bench.report import stats
from bench.report.stats import Interval
from servers.base import ServerConfig

NOTICE_MS = 250.0  # the delivery-latency SLO (bench.load.config): a token later than this is late


def who(e: dict[str, Any]) -> str:
    """Which run measured a fault entry, and with which client."""
    client = transports.get(e["transport"]).label
    run = f", run `{e['_run']}`" if e.get("_run") else ""
    mode = "as it comes" if e["mode"] == "default" else "hardened"
    return f"{client}'s Python reader {mode}{run}"


def stall_limit_ms(entries: list[dict[str, Any]]) -> tuple[float, str]:
    """The stall a user notices after a drop, and why: the retry the deployment set (the SSE
    server's ``retry:``, WHATWG HTML "reconnection time"), which EventSource waits by design,
    plus the latency SLO a token may take."""
    recorded = {e["retry_ms"] for e in entries if e.get("retry_ms") is not None}
    retry = max(recorded) if recorded else ServerConfig.retry_ms
    src = "as the run set it" if recorded else "the server's default"
    return retry + NOTICE_MS, (
        f"a stall over {(retry + NOTICE_MS) / 1000:.2f} s is noticed "
        f"(retry {retry:,.0f} ms, {src}, + the {NOTICE_MS:.0f} ms SLO)"
    )


def invisible(entries: list[dict[str, Any]]) -> tuple[str, str]:
    """Rule 5 (and behind the LB): EventSource's rules as they come, over every fault entry given:
    refuted if a stream never recovered or a token was lost or left unread; confirmed if every
    stall stayed under ``stall_limit_ms``; nuanced if one went over; not measured when a stall
    was not measured (a stream with fewer than two tokens) and nothing refutes."""
    limit, limit_words = stall_limit_ms(entries)
    broken = [e["scenario"] for e in entries if e["unrecovered"]]
    lost = sum(e["lost"] for e in entries)
    unread = [e.get("unread") for e in entries if "unread" in e]
    unread_n = sum(u for u in unread if u)
    stalls = [e.get("max_stall_ms") for e in entries]
    known = [v for v in stalls if v is not None]
    worst = f"{max(known) / 1000:.2f} s" if known else "not measured"
    never = f"never recovered in {', '.join(broken)}" if broken else "recovered in every one"
    why = (f"{who(entries[0])}: {never}; "
           f"{lost} tokens lost, {_unread(unread)}; "
           f"longest stall {worst} (scenarios: {', '.join(e['scenario'] for e in entries)}); "
           f"{limit_words}")  # fmt: skip
    if broken or lost or unread_n:
        return "refuted", why
    if None in stalls or any("unread" in e and e["unread"] is None for e in entries):
        return "not measured", why  # (an older entry has no unread: its lost counted it)
    return ("nuanced" if max(known) > limit else "confirmed"), why


def _unread(unread: list[int | None]) -> str:
    if not unread:
        return "unread counted in lost (an entry from before unread)"
    return f"{sum(u or 0 for u in unread) if None not in unread else 'not measured'} unread"


PHASES = ("detection_ms", "reconnect_ms", "catchup_ms")


def interval(e: dict[str, Any], phase: str) -> Interval | None:
    """The mean of ``phase`` over every client of an entry, with its 95 % interval."""
    return stats.of((e.get(phase) or {}).get("values") or [])


def ranking(entries: list[dict[str, Any]], phase: str) -> list[list[str]]:
    """Transports fastest first for one phase; those whose intervals overlap share a rank.
    Ranks are built greedily: a transport joins the current rank when it ties with its first."""
    ivs = {e["transport"]: iv for e in entries if (iv := interval(e, phase)) is not None}
    ranks: list[list[str]] = []
    for t in sorted(ivs, key=lambda t: ivs[t].mean):
        if ranks and stats.compare(ivs[ranks[-1][0]], ivs[t]) == "tie":
            ranks[-1].append(t)
        else:
            ranks.append([t])
    return ranks


def rankings_md(entries: list[dict[str, Any]]) -> list[str]:
    """One line per scenario and mode: who reconnects fastest, ties inside the intervals."""
    out = []
    keys = sorted({(e["scenario"], e["mode"]) for e in entries}, key=lambda k: (k[1], k[0]))
    for scenario, mode in keys:
        group = [e for e in entries if (e["scenario"], e["mode"]) == (scenario, mode)]
        ranks = ranking(group, "reconnect_ms")
        if sum(map(len, ranks)) < 2:
            continue
        label = lambda t: transports.get(t).label  # noqa: E731
        order = " < ".join(" = ".join(map(label, r)) for r in ranks)
        out.append(f"- {scenario}, {mode}: reconnect {order}")
    if not out:
        return []
    return ["", "Reconnect time, fastest first (mean over clients; `=` where the 95 % intervals "
            "overlap):", "", *out]  # fmt: skip
