"""The browser verdicts' rules (bench/report/browsers.py) on entries shaped like
``tokenbench browser``'s: each rule must be able to confirm, refute and say "not measured"."""

from __future__ import annotations

from typing import Any

from bench.report import browsers


def tab(outcome: str = "read all", first: float | None = 200.0, tokens: int = 100,
        stall_ms: float = 40.0) -> dict[str, Any]:  # fmt: skip
    return {"outcome": outcome, "first_token_ms": first, "tokens": tokens, "reconnects": 1,
            "latency_ms": {"max": stall_ms}}  # fmt: skip


def entry(client: str, network: str = "1.1", fault: str = "none", firsts: list[float | None]
          | None = None, outcome: str = "read all") -> dict[str, Any]:  # fmt: skip
    firsts = firsts or [200.0]
    return {
        "client": client, "network": network, "fault": fault, "tabs": len(firsts),
        "tabs_read_all": sum(1 for f in firsts if f is not None), "first_token_ms": firsts,
        "lost": 0, "renderer_us_per_token": 900.0, "per_tab": [tab(outcome, f) for f in firsts],
    }  # fmt: skip


def verdict(es: list[dict[str, Any]], claim: str) -> tuple[str, str]:
    got = {v["claim"]: (v["verdict"], v["why"]) for v in browsers.verdicts(es)}
    return got[claim]


SEVENTH = "A seventh tab waits over HTTP/1.1 (six connections per origin), not over HTTP/2"
SIX = [200.0] * 6


def test_the_seventh_tab_rule() -> None:
    waits = entry("eventsource", "1.1", firsts=[*SIX, 3100.0])
    fine = [entry("eventsource", "2", firsts=[*SIX, 250.0]),
            entry("websocket", "1.1", firsts=[*SIX, 240.0])]  # fmt: skip
    assert browsers.waited(waits) == [7] and browsers.waited(fine[0]) == []
    assert verdict([waits, *fine], SEVENTH)[0] == "confirmed"
    no_wait = entry("eventsource", "1.1", firsts=[*SIX, 300.0])
    assert verdict([no_wait, *fine], SEVENTH)[0] == "refuted"
    never = entry("eventsource", "1.1", firsts=[*SIX, None])
    assert browsers.waited(never) == [7] and verdict([never, *fine], SEVENTH)[0] == "confirmed"
    assert verdict([waits], SEVENTH)[0] == "not measured"


def test_the_eventsource_reconnect_rule() -> None:
    claim = "EventSource reconnects by itself"
    ok = [entry("eventsource", fault="close"), entry("eventsource", fault="lb-restart")]
    assert verdict(ok, claim)[0] == "confirmed"
    stalled = [*ok, entry("eventsource", fault="blackhole", outcome="stalled")]
    out, why = verdict(stalled, claim)
    assert out == "refuted" and "blackhole: stalled" in why
    assert verdict([entry("eventsource")], claim)[0] == "not measured"


def test_the_grpc_web_rule() -> None:
    claim = "gRPC needs a proxy for browsers"
    read = [entry("grpc-web"), entry("eventsource")]
    out, why = verdict(read, claim)
    assert out == "nuanced" and "not a proxy" in why and "natively" not in why
    read[0] |= {"server_cpu_us_per_token": 80.0, "tokens_received": 9000,
                "native": {"server_cpu_us_per_token": 120.0}}  # fmt: skip
    assert "80 µs per token over gRPC-Web against 120 natively (0.67x" in verdict(read, claim)[1]
    broken = [entry("grpc-web", firsts=[None])]  # a tab that never read: no proxy was not enough
    out, why = verdict(broken, claim)
    assert out == "confirmed" and "1 of 1 tabs did not read every token" in why
    assert verdict([entry("eventsource")], claim)[0] == "not measured"


def test_the_report_sections_render_from_entries() -> None:
    es = [{**e, "page": "bench", "rate": 40.0, "duplicated": 0, "out_of_order": 0,
           "reconnects": 0, "latency_ms": {"count": 0}, "js_heap_bytes": None,
           "server_cpu_us_per_token": None}
          for e in [entry("eventsource", firsts=[200.0]),
                    entry("eventsource", firsts=[*SIX, 3100.0])]]  # fmt: skip
    react = {**es[1], "page": "app", "first_token_ms": [*SIX, 250.0]}  # another page, no wait
    text = "\n".join(browsers.markdown([{"kind": "browser", "browser": [*es, react]}]))
    assert "**tab 7 waited 3.1 s**" in text and "| eventsource | 1.1 | bench | 40 |" in text
    assert "| eventsource | 1.1 | app | 40 | - | 7/7 read, none waited |" in text  # its own row


def test_what_to_ship_asks_for_http2_only_when_the_seventh_tab_waited() -> None:
    from bench.report import ship

    def wide(network: str, last: float) -> dict[str, Any]:
        return {**entry("eventsource", network, firsts=[*SIX, last]), "transport": "sse"}

    assert "HTTP/2" in ship._browser("sse", [wide("1.1", 3100.0), wide("2", 210.0)])[0]
    assert ship._browser("sse", [wide("1.1", 210.0), wide("2", 210.0)]) == []
    assert ship._browser("sse", [wide("1.1", 3100.0)]) == []  # HTTP/2 not measured
