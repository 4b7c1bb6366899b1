"""What one browser measurement keeps: each tab's record, checked, and the entry results.json
holds (``browser[]``; docs/browsers.md).

Rules of this module:
- It only computes: a page's snapshot (web/src/recorder.js) and the renderer's metrics in, typed
  records out. Nothing here talks to a browser or a server (bench/browser/tabs.py does).
- Seqs and texts are checked against the stream the id names (servers/core.py): lost below the
  highest seq seen, unread after it, duplicated, out of order, wrong text.
- Latency is against each token's due time, into the loaders' histogram (bench/load/hist.py,
  microseconds).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypedDict

from bench.load.hist import Histogram
from servers.core import Codec, ContractError

if TYPE_CHECKING:
    from bench.browser.tabs import Plan


class Tab(TypedDict):
    tab: int
    outcome: str  # "read all", "stalled", "stopped for good", "never loaded"
    state: str | None  # the page's: done, gave-up, failed, reading, starting; None: no page
    tokens: int  # received, duplicates included
    time_origin: float | None  # the tab's navigation start, ms since the epoch
    first_token_ms: float | None  # from navigation start; None when no token came
    created_ms: float | None  # when the prompt POST answered
    last_token_ms: float | None
    lost: int  # seqs missing below the highest seen
    unread: int  # seqs after the highest seen (the stream's end was not reached)
    duplicated: int
    out_of_order: int
    text_mismatch: int
    reconnects: int
    protocol: str | None  # Resource Timing's nextHopProtocol of the stream's requests
    latency_ms: dict[str, float]  # p50, p99, max of this tab
    renderer_tokens: int  # tokens received while the renderer was metered
    renderer_task_s: float | None
    renderer_script_s: float | None
    js_heap_bytes: int | None
    events: list[dict[str, Any]]
    error: str | None


def check(snapshot: dict[str, Any], expected: int) -> dict[str, Any]:
    """Seqs and texts of one page against its stream."""
    seqs: list[int] = snapshot["seqs"]
    out: dict[str, Any] = {"lost": 0, "unread": expected, "duplicated": 0, "out_of_order": 0,
                           "text_mismatch": 0}  # fmt: skip
    if not seqs:
        return out
    unique = set(seqs)
    top = max(seqs)
    out["lost"] = top + 1 - len(unique)
    out["unread"] = expected - 1 - top
    out["duplicated"] = len(seqs) - len(unique)
    out["out_of_order"] = sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    try:
        stream = Codec().decode(str(snapshot["url"]).rsplit("/", 1)[1])
        out["text_mismatch"] = sum(
            1 for s, t in zip(seqs, snapshot["texts"], strict=True) if stream.text(s) != t
        )
    except (ContractError, IndexError, ValueError):
        out["text_mismatch"] = len(seqs)
    return out


def outcome(state: str | None, unread: int, lost: int) -> str:
    if state is None:
        return "never loaded"
    if state == "done" and unread == 0 and lost == 0:
        return "read all"
    if state in ("gave-up", "failed"):
        return "stopped for good"
    return "stalled"


def histogram(snap: dict[str, Any] | None) -> Histogram:
    """A page's latencies (ms, against due times) in microseconds; a timer's coarsening can put
    one a hair below zero."""
    hist = Histogram()
    for v in (snap or {}).get("latency_ms", []):
        hist.record(max(0, int(v * 1000)))
    return hist


Baseline = tuple[dict[str, float], int]  # the renderer's metrics, and tokens read, at its zero


def tab_record(
    i: int, snap: dict[str, Any] | None, hist: Histogram, expected: int,
    start: Baseline | None, m1: dict[str, float],
) -> Tab:  # fmt: skip
    m0, base = start if start else ({}, 0)
    counted = (len(snap["seqs"]) if snap else 0) - base
    checked = check(snap, expected) if snap else check({"seqs": []}, expected)
    summary = hist.summary_ms() if hist.count else {}
    events = (snap or {}).get("events", [])
    return Tab(
        tab=i,
        outcome=outcome(snap["state"] if snap else None, checked["unread"], checked["lost"]),
        state=snap["state"] if snap else None,
        tokens=len(snap["seqs"]) if snap else 0,
        time_origin=snap["time_origin"] if snap else None,
        first_token_ms=snap["first_token_ms"] if snap else None,
        created_ms=snap["created_ms"] if snap else None,
        last_token_ms=snap["last_token_ms"] if snap else None,
        **checked,
        reconnects=sum(1 for e in events if e["kind"] == "retry"),
        protocol=snap["protocol"] if snap else None,
        latency_ms={k: summary[k] for k in ("p50", "p99", "max") if k in summary},
        renderer_tokens=counted if start else 0,
        renderer_task_s=_delta(m0, m1, "TaskDuration") if start else None,
        renderer_script_s=_delta(m0, m1, "ScriptDuration") if start else None,
        js_heap_bytes=int(m1["JSHeapUsedSize"]) if "JSHeapUsedSize" in m1 else None,
        events=events,
        error=snap["error"] if snap else None,
    )  # type: ignore[typeddict-item]


def _delta(m0: dict[str, float], m1: dict[str, float], key: str) -> float | None:
    return round(m1[key] - m0.get(key, 0.0), 6) if key in m1 else None


def entry(plan: Plan, tabs: list[Tab], hist: Histogram, elapsed_s: float,
          server_cpu_s: float | None, fired: int) -> dict[str, Any]:  # fmt: skip
    received = sum(t["tokens"] for t in tabs)
    metered = [t for t in tabs if t["renderer_task_s"] is not None and t["renderer_tokens"] > 0]
    task_s = sum(t["renderer_task_s"] or 0.0 for t in metered)
    script_s = sum(t["renderer_script_s"] or 0.0 for t in metered)
    task_tokens = sum(t["renderer_tokens"] for t in metered)
    heaps = [t["js_heap_bytes"] for t in tabs if t["js_heap_bytes"] is not None]
    firsts = [t["first_token_ms"] for t in tabs]
    return {
        **asdict(plan),
        "elapsed_s": round(elapsed_s, 2),
        "fault_fired": fired,
        "tokens_received": received,
        "tabs_read_all": sum(1 for t in tabs if t["outcome"] == "read all"),
        "tabs_waiting": sum(1 for f in firsts if f is None),
        "first_token_ms": firsts,
        "lost": sum(t["lost"] for t in tabs),
        "duplicated": sum(t["duplicated"] for t in tabs),
        "out_of_order": sum(t["out_of_order"] for t in tabs),
        "text_mismatch": sum(t["text_mismatch"] for t in tabs),
        "reconnects": sum(t["reconnects"] for t in tabs),
        "latency_ms": hist.summary_ms(),
        "latency_hist": hist.to_json(),
        "renderer_us_per_token": round(task_s * 1e6 / task_tokens, 2) if task_tokens else None,
        "renderer_script_us_per_token": (
            round(script_s * 1e6 / task_tokens, 2) if task_tokens else None
        ),
        "js_heap_bytes": max(heaps) if heaps else None,
        "server_cpu_us_per_token": (
            round(server_cpu_s * 1e6 / received, 2)
            if received and server_cpu_s is not None
            else None
        ),
        "per_tab": tabs,
    }
