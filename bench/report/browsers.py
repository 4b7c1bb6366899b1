"""Browsers in the report: what real Chromium tabs got (``tokenbench browser``), and the claims
about browsers (gRPC needs a proxy, EventSource reconnects by itself, the six-connection limit).

An entry is one measurement of ``browser[]`` in a results.json of kind ``browser``
(bench/browser/tabs.py). Every verdict is a rule over those entries, written next to its claim.
"""

from __future__ import annotations

import statistics
from typing import Any

Entry = dict[str, Any]
WAIT_MS = 1000.0  # a tab "waited" when its first token came this much after the entry's median


def entries(docs: list[dict[str, Any]]) -> list[Entry]:
    return [e for d in docs if d.get("kind") == "browser" for e in d.get("browser", [])]


def waited(e: Entry) -> list[int]:
    """Tabs (1-based) whose first token came ``WAIT_MS`` after the median tab's, or never."""
    firsts = e["first_token_ms"]
    came = [f for f in firsts if f is not None]
    if not came:
        return list(range(1, len(firsts) + 1))
    median = statistics.median(came)
    return [i + 1 for i, f in enumerate(firsts) if f is None or f > median + WAIT_MS]


def _wait_cell(e: Entry) -> str:
    late = waited(e)
    if not late:
        return f"{e['tabs_read_all']}/{e['tabs']} read, none waited"
    firsts = e["first_token_ms"]
    came = [firsts[i - 1] for i in late if firsts[i - 1] is not None]
    never = len(late) - len(came)
    tabs = ",".join(str(i) for i in late)
    extra = f", {never} never got a token" if never else ""
    if not came:
        return f"**tab {tabs} never got a token**"
    return f"**tab {tabs} waited {max(came) / 1000:.1f} s**{extra}"


def limit_md(es: list[Entry]) -> list[str]:
    """Item 2's table: client, HTTP version, page and rate down, tab counts across. A row is one
    kind of measurement, so runs of another page or rate never share (or overwrite) a cell."""
    clean = [e for e in es if e["fault"] == "none"]
    counts = sorted({e["tabs"] for e in clean})
    if len(counts) < 2:
        return []

    def key(e: Entry) -> tuple[str, str, str, float]:
        return e["client"], e["network"], e["page"], e["rate"]

    rows = sorted({key(e) for e in clean})
    at = {(*key(e), e["tabs"]): e for e in clean}
    lines = ["", "### The connection limit: tabs in one browser profile, one origin", "",
             f"A tab waited when its first token came over {WAIT_MS / 1000:g} s after the "
             "median tab's (first token counted from the tab's navigation start; tabs opened "
             "0.1 s apart). HTTP/2 is HAProxy terminating TLS with ALPN h2.", "",
             "| client | HTTP | page | tok/s per tab | "
             + " | ".join(f"{n} tabs" for n in counts) + " |",
             "|---|---|---|---|" + "---|" * len(counts)]  # fmt: skip
    for row in rows:
        cells = [_wait_cell(at[(*row, n)]) if (*row, n) in at else "-" for n in counts]
        client, net, page, rate = row
        lines.append(f"| {client} | {net} | {page} | {rate:g} | " + " | ".join(cells) + " |")
    return lines


def _f(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def rows_md(es: list[Entry]) -> list[str]:
    lines = ["", "### Every browser measurement", "",
             "Latency against each token's due time, over all tabs. Renderer: the DevTools "
             "Performance domain's main-thread time (TaskDuration, thread ticks) while the tab "
             "read, per token (its ScriptDuration misses work in promise callbacks, such as a "
             "fetch stream's reads, so it stays in results.json). Server CPU per token is coarse "
             "(10 ms clock ticks over the tokens of the run). Native beside: the same server "
             "read afterwards by as many native clients (gRPC: grpcio), same tokens and rate: "
             "what the web front's translation costs.", "",
             "| client | page | HTTP | fault | tabs | tok/s per tab | read all | lost | unread "
             "| dup | out of order | p50 ms | p99 ms | reconnects | renderer µs / tok "
             "| JS heap MiB | server µs / tok | native beside: server µs / tok |",
             "|---" * 18 + "|"]  # fmt: skip
    for e in es:
        lat = e["latency_ms"]
        has = bool(lat.get("count"))
        heap = e["js_heap_bytes"] / 2**20 if e["js_heap_bytes"] else None
        cells = [e["client"], e["page"], e["network"], e["fault"], str(e["tabs"]),
                 f"{e['rate']:g}", f"{e['tabs_read_all']}/{e['tabs']}", _f(e["lost"]),
                 _f(e.get("unread")), _f(e["duplicated"]), _f(e["out_of_order"]),
                 _f(lat.get("p50") if has else None, 1), _f(lat.get("p99") if has else None, 1),
                 _f(e["reconnects"]), _f(e["renderer_us_per_token"]), _f(heap, 1),
                 _f(e["server_cpu_us_per_token"]),
                 _f((e.get("native") or {}).get("server_cpu_us_per_token"))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _saw(e: Entry) -> str:
    """What the user of one faulted tab saw."""
    tab = e["per_tab"][0]
    stall = tab["latency_ms"].get("max")
    if tab["outcome"] == "read all":
        n = tab["reconnects"]
        return f"read all, stall {stall / 1000:.1f} s, {n} reconnect{'' if n == 1 else 's'}"
    if tab["outcome"] == "stopped for good":
        return f"**stopped for good** after {tab['tokens']} tokens"
    if tab["outcome"] == "never loaded":
        return "**never loaded**"
    return f"**stalled** after {tab['tokens']} tokens"


def faults_md(es: list[Entry]) -> list[str]:
    faulted = [e for e in es if e["fault"] != "none"]
    if not faulted:
        return []
    faults = list(dict.fromkeys(e["fault"] for e in faulted))
    clients = list(dict.fromkeys(e["client"] for e in faulted))
    at = {(e["client"], e["fault"]): e for e in faulted}
    lines = ["", "### Reconnects in the browser", "",
             "What the user saw when the connection was closed, black-holed (the fault proxy), "
             "or the server restarted behind HAProxy (503 while it was down). A stall is the "
             "largest latency against due time.", "",
             "| client | " + " | ".join(faults) + " |", "|---|" + "---|" * len(faults)]  # fmt: skip
    for c in clients:
        lines.append(f"| {c} | " + " | ".join(_saw(at[(c, f)]) if (c, f) in at else "-"
                                             for f in faults) + " |")  # fmt: skip
    return lines


def markdown(docs: list[dict[str, Any]]) -> list[str]:
    es = entries(docs)
    if not es:
        return []
    return ["", "## Browsers", "",
            "Headless Chromium (Debian's), one profile per measurement; each tab reads one "
            "stream with its transport's browser client (web/src/clients.js): EventSource as it "
            "comes and hardened, WebSocket with a resume loop, gRPC-Web "
            "(@connectrpc/connect-web) served by the gRPC server's own process, fetch for long "
            "polling. `tokenbench browser`, docs/browsers.md.",
            *limit_md(es), *faults_md(es), *rows_md(es)]  # fmt: skip


def verdicts(es: list[Entry]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def add(claim: str, verdict: str, why: str) -> None:
        out.append({"claim": claim, "verdict": verdict, "why": why})

    # 1. Rule: a browser cannot speak gRPC itself (fetch cannot read HTTP/2 trailers,
    # PROTOCOL-WEB.md), so "refuted" is not an outcome here. When every clean gRPC-Web
    # measurement, served by the gRPC server's own process, read every tab whole, a browser
    # needed gRPC-Web but no proxy: nuanced. When one left a tab short (lost or unread tokens),
    # no proxy was not enough in that run: confirmed. None run: not measured.
    claim = "gRPC needs a proxy for browsers"
    grpc_web = [e for e in es if e["client"] == "grpc-web" and e["fault"] == "none"]
    sse = [e for e in es if e["client"] == "eventsource" and e["fault"] == "none"]
    short = [e for e in grpc_web if e["tabs_read_all"] < e["tabs"] or e["lost"]
             or e.get("unread")]  # fmt: skip
    if short:
        add(claim, "confirmed",
            "without a proxy, gRPC-Web from the gRPC server's own process (servers/grpc/web.py) "
            "left tabs short: " + "; ".join(
                f"{e['tabs'] - e['tabs_read_all']} of {e['tabs']} tabs did not read every token "
                f"({_f(e['lost']).replace('-', 'not measured')} lost, "
                f"{_f(e.get('unread')).replace('-', 'not measured')} "
                f"unread, network {e['network']})"
                for e in short))  # fmt: skip
    elif grpc_web:
        rend = [e["renderer_us_per_token"] for e in grpc_web if e["renderer_us_per_token"]]
        base = [e["renderer_us_per_token"] for e in sse if e["renderer_us_per_token"]]
        cost = (f"; renderer {statistics.median(rend):.0f} µs per token against EventSource's "
                f"{statistics.median(base):.0f}" if rend and base else "")  # fmt: skip
        beside = [e for e in grpc_web if e.get("server_cpu_us_per_token")
                  and (e.get("native") or {}).get("server_cpu_us_per_token")]  # fmt: skip
        if beside:  # the run with the most tokens: 10 ms ticks are finest there
            top = max(beside, key=lambda e: e["tokens_received"])
            web, nat = top["server_cpu_us_per_token"], top["native"]["server_cpu_us_per_token"]
            cost += (
                f"; server CPU {web:.0f} µs per token over gRPC-Web against {nat:.0f} "
                f"natively ({web / nat:.2f}x, {top['tokens_received']:,} tokens each)"
            )
        add(claim, "nuanced",
            f"a browser needs gRPC-Web, not a proxy: the gRPC server's own process served it "
            f"(servers/grpc/web.py) and {sum(e['tabs'] for e in grpc_web)} Chromium tabs read "
            f"every token{cost}. gRPC-Web has server streaming only: no client or bidirectional "
            f"streams (PROTOCOL-WEB.md)")  # fmt: skip
    else:
        add(claim, "not measured",
            "needs tokenbench browser runs of grpc-web that read every tab")  # fmt: skip

    # 2. Rule: EventSource as it comes, under each browser fault: read all in every one confirms;
    # stopped for good or stalled in any refutes (the hardened client's outcome is given).
    claim = "EventSource reconnects by itself"
    asis = {e["fault"]: e for e in es if e["client"] == "eventsource" and e["fault"] != "none"}
    hard = {e["fault"]: e for e in es
            if e["client"] == "eventsource-hardened" and e["fault"] != "none"}  # fmt: skip
    if asis:
        said = "; ".join(f"{f}: {_saw(e)}" for f, e in asis.items())
        fixed = "; ".join(f"{f}: {_saw(e)}" for f, e in hard.items())
        bad = [f for f, e in asis.items() if any(t["outcome"] != "read all" for t in e["per_tab"])]
        why = f"as it comes: {said}" + (f". Hardened: {fixed}" if fixed else "")
        add(claim, "refuted" if bad else "confirmed", why.replace("**", ""))
    else:
        add(claim, "not measured", "needs tokenbench browser --fault runs of eventsource")

    # 3. Rule: with more than six tabs and no fault, EventSource over HTTP/1.1 has a tab that
    # waited, EventSource over HTTP/2 has none, WebSocket over HTTP/1.1 has none: confirmed.
    # Any of the three the other way refutes; a part not run leaves it not measured.
    claim = "A seventh tab waits over HTTP/1.1 (six connections per origin), not over HTTP/2"
    wide = [e for e in es if e["fault"] == "none" and e["tabs"] > 6]

    def late(client: str, net: str) -> bool | None:
        got = [e for e in wide if e["client"] == client and e["network"] == net]
        return any(waited(e) for e in got) if got else None

    sse1, sse2, ws1 = late("eventsource", "1.1"), late("eventsource", "2"), late("websocket", "1.1")
    others = sorted({(e["client"], e["network"]) for e in wide if waited(e)} -
                    {("eventsource", "1.1")})  # fmt: skip
    if None in (sse1, sse2, ws1):
        add(claim, "not measured", "needs 7+ tabs of eventsource over 1.1 and 2, websocket on 1.1")
    else:
        why = (f"EventSource over HTTP/1.1: {'a tab waited' if sse1 else 'no tab waited'}; over "
               f"HTTP/2: {'a tab waited' if sse2 else 'none waited'}; WebSocket over HTTP/1.1: "
               f"{'a tab waited' if ws1 else 'none waited'}. Also waiting: "
               f"{', '.join(f'{c} over {n}' for c, n in others) or 'nothing else'}")  # fmt: skip
        add(claim, "confirmed" if sse1 and not sse2 and not ws1 else "refuted", why)
    return out
