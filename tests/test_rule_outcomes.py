"""Every rule, every outcome it names: one synthetic input per (rule, outcome), table-driven.

A verdict is a function of figures (DESIGN.md): each outcome a rule names must be reachable by
some input, and its text must come from the data. The table below is the rule-by-outcome matrix;
``test_every_named_outcome_is_reached`` fails when a rule names an outcome no case reaches, and
``test_the_text_follows_the_data`` when two inputs of one rule read the same.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from bench.report import behind_lb, browsers, ship, verdicts
from tests.test_behind_lb_report import entry as lb_entry
from tests.test_browser_report import SIX
from tests.test_browser_report import entry as tab_entry
from tests.test_verdicts import _complete, _doc, _hardened, _run, _with_lean

Case = Callable[[], tuple[str, str]]  # () -> (verdict, why)

ONE_WAY = "One-way traffic fits SSE best"
MEMORY = "WebSockets cost more memory per connection"
HEARTBEAT = "WebSockets need heartbeats and hand-written resume"
POLL = "Long polling costs a request per token"
INVISIBLE = "SSE reconnects are invisible"
PROTOCOL = "The SSE / WebSocket cost difference is the protocol's, not the library's"
GRPC_WEB = "gRPC needs a proxy for browsers"
EVENTSOURCE = "EventSource reconnects by itself"
SEVENTH = "A seventh tab waits over HTTP/1.1 (six connections per origin), not over HTTP/2"
STICKY = "WebSockets need sticky sessions on the ALB"
LB_INVISIBLE = "SSE reconnects are invisible behind a load balancer"
LB_HEARTBEAT = "WebSockets need heartbeats (against the LB's idle timeout)"
SHIP = "What to ship"

# What each rule names (docs/verdicts.md); gRPC-Web cannot be refuted: a browser cannot speak
# gRPC itself, so the claim's opposite is not measurable.
NAMED = {
    ONE_WAY: {"confirmed", "refuted", "nuanced", "tie", "not measured"},
    MEMORY: {"confirmed", "refuted", "nuanced", "tie", "not measured"},
    HEARTBEAT: {"confirmed", "refuted", "nuanced", "not measured"},
    POLL: {"confirmed", "refuted", "nuanced", "not measured"},
    INVISIBLE: {"confirmed", "refuted", "nuanced", "not measured"},
    PROTOCOL: {"confirmed", "refuted", "nuanced", "tie", "not measured"},
    GRPC_WEB: {"confirmed", "nuanced", "not measured"},
    EVENTSOURCE: {"confirmed", "refuted", "not measured"},
    SEVENTH: {"confirmed", "refuted", "not measured"},
    STICKY: {"confirmed", "refuted", "nuanced", "not measured"},
    LB_INVISIBLE: {"confirmed", "refuted", "nuanced", "not measured"},
    LB_HEARTBEAT: {"confirmed", "refuted", "nuanced", "not measured"},
    SHIP: {"one", "tie", "none", "not enough measured"},
}


def _bench(
    claim: str, docs: list[dict[str, Any]], faults: list[dict[str, Any]] | None = None
) -> Case:
    def run() -> tuple[str, str]:
        v = next(x for x in verdicts.verdicts(docs, faults or []) if x["claim"] == claim)
        return v["verdict"], v["why"]

    return run


def _mem(doc: dict[str, Any], t: str, per_conn: float, scale: int | None = None) -> dict[str, Any]:
    """``doc`` with transport ``t``'s memory per connection (and connections) replaced."""
    for run in doc["runs"]:
        if run["transport"] != t:
            continue
        for st in run["steps"]:
            st["server"]["mem_per_conn_bytes"] = per_conn
            if scale:
                st["server"]["connections"] = st["clients"] * scale
            for w in st["windows"]:
                w["mem_per_conn_bytes"] = per_conn * (1 + 0.01 * (len(str(w)) % 3 - 1))
    return doc


def _poll(doc: dict[str, Any], per_token: float, tokens: float = 1.0) -> dict[str, Any]:
    run = _run("poll", 300, 450, 90.0, 50_000, random.Random(1), 0.01)
    for st in run["steps"]:
        for w in [st, *st["windows"]]:
            w["requests_per_s"] = st["clients"] * 40.0 * per_token
            w["tokens_per_s"] = w["tokens_per_s"] * tokens
    return {**doc, "runs": [*doc["runs"], run]}


def _blackhole(ws_default: int, ws_hardened: int, sse_default: int) -> list[dict[str, Any]]:
    def e(t: str, mode: str, unrecovered: int) -> dict[str, Any]:
        return {"scenario": "blackhole", "transport": t, "mode": mode, "clients": 5,
                "unrecovered": unrecovered, "lost": 10 * unrecovered, "duplicated": 0,
                "_run": "faults"}  # fmt: skip

    return [e("ws", "default", ws_default), e("ws", "hardened", ws_hardened),
            e("sse", "default", sse_default)]  # fmt: skip


def _sse_faults(stall: float | None, unrecovered: int = 0) -> list[dict[str, Any]]:
    return [{"scenario": s, "transport": "sse", "mode": "default", "clients": 5, "lost": 0,
             "unread": 0, "unrecovered": unrecovered if s == "close" else 0, "duplicated": 0,
             "max_stall_ms": stall} for s in ("close", "restart")]  # fmt: skip


def _lean(stock_knees: tuple[int, ...], lean_knees: tuple[int, ...]) -> list[dict[str, Any]]:
    return [_with_lean(_doc(1, knees=stock_knees), _doc(2, knees=lean_knees))]  # type: ignore[arg-type]


AHEAD_WS, AHEAD_SSE, TIE = (600, 675, 914, 1012), (914, 1012, 600, 675), (826, 1012, 914, 1012)


def _browser(claim: str, es: list[dict[str, Any]]) -> Case:
    def run() -> tuple[str, str]:
        v = next(x for x in browsers.verdicts(es) if x["claim"] == claim)
        return v["verdict"], v["why"]

    return run


def _es_fault(outcome: str, fault: str = "close") -> dict[str, Any]:
    return tab_entry("eventsource", fault=fault, outcome=outcome)


def _tabs(sse1: float, sse2: float, ws1: float) -> list[dict[str, Any]]:
    """Seven tabs each: the seventh's first token at these ms."""
    return [tab_entry("eventsource", "1.1", firsts=[*SIX, sse1]),
            tab_entry("eventsource", "2", firsts=[*SIX, sse2]),
            tab_entry("websocket", "1.1", firsts=[*SIX, ws1])]  # fmt: skip


def _lb(claim: str, es: list[dict[str, Any]]) -> Case:
    def run() -> tuple[str, str]:
        v = next(x for x in behind_lb.verdicts(es) if x["claim"] == claim)
        return v["verdict"], v["why"]

    return run


def _kill(t: str, replay: str, lost: int = 0, mode: str = "hardened", **kw: Any) -> dict[str, Any]:
    return {**lb_entry("backend-kill", t, replay, mode=mode, lost=lost), **kw}


def _idle(cuts: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """Idle-timeout runs with heartbeats on and off: (reconnects on, off) per transport."""
    return [lb_entry(s, t, "redis", reconnects=n) for t, (on, off) in cuts.items()
            for s, n in (("idle-timeout", on), ("idle-timeout-silent", off))]  # fmt: skip


def _ship(docs: list[dict[str, Any]], faults: list[dict[str, Any]]) -> Case:
    def run() -> tuple[str, str]:
        got = ship.recommend(docs, faults)
        kind = ("not enough measured" if got["text"].startswith("**Not enough") else "none"
                if got["pick"] is None else "tie" if len(got["group"]) > 1 else "one")  # fmt: skip
        return kind, got["text"]

    return run


CASES: list[tuple[str, str, Case]] = [
    (ONE_WAY, "tie", _bench(ONE_WAY, [_doc(1)])),
    (ONE_WAY, "refuted", _bench(ONE_WAY, [_doc(1, ws_cpu=18.0, knees=AHEAD_WS)])),
    (ONE_WAY, "confirmed", _bench(ONE_WAY, [_doc(1, ws_cpu=40.0, knees=AHEAD_SSE)])),
    (ONE_WAY, "nuanced", _bench(ONE_WAY, [_doc(1, ws_cpu=18.0, knees=AHEAD_SSE)])),
    (ONE_WAY, "not measured", _bench(ONE_WAY, [{**_doc(1), "runs": _doc(1)["runs"][:1]}])),
    (MEMORY, "refuted", _bench(MEMORY, [_doc(1)])),  # WebSocket 29 KB, SSE 38 KB
    (MEMORY, "confirmed", _bench(MEMORY, [_mem(_doc(1), "ws", 60_000)])),
    (MEMORY, "tie", _bench(MEMORY, [_mem(_doc(1), "ws", 38_000)])),
    (MEMORY, "not measured", _bench(MEMORY, [_mem(_doc(1), "ws", 60_000, scale=10)])),
    (MEMORY, "nuanced", _bench(MEMORY, [_with_lean(_mem(_doc(1), "ws", 60_000), _doc(2))])),
    (HEARTBEAT, "confirmed", _bench(HEARTBEAT, [], _blackhole(5, 0, 0))),
    (HEARTBEAT, "refuted", _bench(HEARTBEAT, [], _blackhole(0, 0, 0))),
    (HEARTBEAT, "nuanced", _bench(HEARTBEAT, [], _blackhole(5, 0, 4))),
    (HEARTBEAT, "not measured", _bench(HEARTBEAT, [], [])),
    (POLL, "confirmed", _bench(POLL, [_poll(_doc(1), 0.83)])),
    (POLL, "refuted", _bench(POLL, [_poll(_doc(1), 0.05)])),
    (POLL, "nuanced", _bench(POLL, [_poll(_doc(1), 0.3)])),
    (POLL, "not measured", _bench(POLL, [_poll(_doc(1), 0.8, tokens=0.0)])),
    (INVISIBLE, "confirmed", _bench(INVISIBLE, [], _sse_faults(1_100.0))),
    (INVISIBLE, "nuanced", _bench(INVISIBLE, [], _sse_faults(3_000.0))),
    (INVISIBLE, "refuted", _bench(INVISIBLE, [], _sse_faults(1_100.0, unrecovered=1))),
    (INVISIBLE, "not measured", _bench(INVISIBLE, [], _sse_faults(None))),
    (PROTOCOL, "confirmed", _bench(PROTOCOL, _lean(AHEAD_WS, AHEAD_WS))),
    (PROTOCOL, "refuted", _bench(PROTOCOL, _lean(AHEAD_WS, TIE))),
    (PROTOCOL, "nuanced", _bench(PROTOCOL, _lean(TIE, AHEAD_WS))),
    (PROTOCOL, "tie", _bench(PROTOCOL, _lean(TIE, TIE))),
    (PROTOCOL, "not measured", _bench(PROTOCOL, [_doc(1)])),
    (GRPC_WEB, "nuanced", _browser(GRPC_WEB, [tab_entry("grpc-web")])),
    (GRPC_WEB, "confirmed", _browser(GRPC_WEB, [tab_entry("grpc-web", firsts=[200.0, None])])),
    (GRPC_WEB, "not measured", _browser(GRPC_WEB, [tab_entry("eventsource")])),
    (EVENTSOURCE, "confirmed", _browser(EVENTSOURCE, [_es_fault("read all")])),
    (EVENTSOURCE, "refuted", _browser(EVENTSOURCE, [_es_fault("stopped")])),
    (EVENTSOURCE, "not measured", _browser(EVENTSOURCE, [tab_entry("eventsource")])),
    (SEVENTH, "confirmed", _browser(SEVENTH, _tabs(3_100.0, 210.0, 220.0))),
    (SEVENTH, "refuted", _browser(SEVENTH, _tabs(230.0, 210.0, 220.0))),
    (SEVENTH, "not measured", _browser(SEVENTH, _tabs(3_100.0, 210.0, 220.0)[:2])),
    (STICKY, "confirmed", _lb(STICKY, [_kill("ws", "pod", 9), _kill("ws", "redis", 3)])),
    (STICKY, "refuted", _lb(STICKY, [_kill("ws", "pod"), _kill("ws", "redis")])),
    (STICKY, "nuanced", _lb(STICKY, [_kill("ws", "pod", 9), _kill("ws", "redis")])),
    (STICKY, "not measured", _lb(STICKY, [])),
    (LB_INVISIBLE, "confirmed", _lb(LB_INVISIBLE, [_kill("sse", "redis", mode="default")])),
    (
        LB_INVISIBLE,
        "nuanced",
        _lb(LB_INVISIBLE, [_kill("sse", "redis", mode="default", max_stall_ms=4_000.0)]),
    ),
    (LB_INVISIBLE, "refuted", _lb(LB_INVISIBLE, [_kill("sse", "redis", 40, mode="default")])),
    (
        LB_INVISIBLE,
        "not measured",
        _lb(LB_INVISIBLE, [_kill("sse", "redis", mode="default", max_stall_ms=None)]),
    ),
    (LB_HEARTBEAT, "confirmed", _lb(LB_HEARTBEAT, _idle({"sse": (0, 0), "ws": (0, 5)}))),
    (LB_HEARTBEAT, "refuted", _lb(LB_HEARTBEAT, _idle({"sse": (0, 0), "ws": (0, 0)}))),
    (
        LB_HEARTBEAT,
        "nuanced",
        _lb(LB_HEARTBEAT, _idle({"sse": (0, 5), "ws": (0, 5), "grpc": (20, 20)})),
    ),
    (LB_HEARTBEAT, "not measured", _lb(LB_HEARTBEAT, _idle({"sse": (0, 5)}))),
    (SHIP, "one", _ship([_complete(_doc(1, knees=AHEAD_WS))], _hardened())),
    (SHIP, "one", _ship([_complete(_doc(1, ws_cpu=40.0))], _hardened())),  # knees tie, CPU not
    (SHIP, "tie", _ship([_complete(_doc(1))], _hardened())),
    (
        SHIP,
        "none",
        _ship([_complete(_doc(1))], _hardened({t: 1 for t in ("sse", "ws", "grpc", "poll")})),
    ),
    (SHIP, "not enough measured", _ship([_doc(1)], _hardened())),
]


@pytest.mark.parametrize(
    ("claim", "want", "case"), CASES, ids=[f"{c[:30]}-{w}" for c, w, _ in CASES]
)
def test_each_case_reaches_its_outcome(claim: str, want: str, case: Case) -> None:
    got, why = case()
    assert got == want, why
    assert why and "None" not in why and "nan" not in why  # a missing figure is said, not printed


def test_every_named_outcome_is_reached() -> None:
    reached: dict[str, set[str]] = {}
    for claim, want, _ in CASES:
        reached.setdefault(claim, set()).add(want)
    assert reached == NAMED


def test_the_text_follows_the_data() -> None:
    """Within one rule, different inputs read differently: the text is built from figures."""
    for claim in NAMED:
        texts = [case()[1] for c, _, case in CASES if c == claim]
        assert len(set(texts)) == len(texts), claim
