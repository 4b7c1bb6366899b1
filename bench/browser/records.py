"""What one browser measurement keeps: each tab's record, checked, and the entry results.json
holds (``browser[]``; docs/browsers.md).

Rules of this module:
- It only computes: a page's snapshot (web/src/recorder.js) and the renderer's metrics in, typed
  records out. Nothing here talks to a browser or a server (bench/browser/tabs.py does).
- Seqs and texts are checked against the stream the id names (servers/tokens/core.py): lost below
  the
  highest seq seen, unread above it (owed by the window's end, per the contract's due times,
  and never delivered), duplicated, out of order, wrong text.
- A figure a tab could not give (its page never answered) is None, never 0; an entry's sum of
  it is None when any tab's is.
- Latency is against each token's due time, into the loaders' histogram (bench/results/hist.py,
  microseconds).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypedDict

from bench.results.hist import Histogram
from servers.tokens.core import Codec, ContractError, Stream

if TYPE_CHECKING:
    from bench.browser.tabs import Plan


class Tab(TypedDict):
    tab: int
    outcome: str  # "read all", "stalled", "stopped for good", "never loaded"
    state: str | None  # the page's: done, gave-up, failed, reading, starting; None: no page
    tokens: int | None  # received, duplicates included; None: the page never answered
    time_origin: float | None  # the tab's navigation start, ms since the epoch
    first_token_ms: float | None  # from navigation start; None when no token came
    created_ms: float | None  # when the prompt POST answered
    last_token_ms: float | None
    lost: int | None  # seqs missing below the highest seen
    unread: int | None  # seqs above the highest seen that were due by the window's end
    duplicated: int | None
    out_of_order: int | None
    text_mismatch: int | None
    reconnects: int | None
    protocol: str | None  # Resource Timing's nextHopProtocol of the stream's requests
    latency_ms: dict[str, float]  # p50, p99, max of this tab
    renderer_tokens: int | None  # tokens received while the renderer was metered
    renderer_task_s: float | None
    renderer_script_s: float | None
    js_heap_bytes: int | None
    events: list[dict[str, Any]]
    error: str | None


def check(snapshot: dict[str, Any], expected: int, ended_ns: int | None = None) -> dict[str, Any]:
    """Seqs and texts of one page against its stream. ``ended_ns``: when the window closed
    (wall clock, the server's on this machine): the tokens due by then are owed."""
    seqs: list[int] = snapshot["seqs"]
    stream = _stream(snapshot)
    top = max(seqs, default=-1)
    owed = _owed(snapshot.get("state"), stream, expected, ended_ns)
    out: dict[str, Any] = {"lost": 0, "unread": None if owed is None else max(0, owed - top - 1),
                           "duplicated": 0, "out_of_order": 0, "text_mismatch": 0}  # fmt: skip
    if not seqs:
        return out
    unique = set(seqs)
    out["lost"] = top + 1 - len(unique)
    out["duplicated"] = len(seqs) - len(unique)
    out["out_of_order"] = sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    if stream is None:
        out["text_mismatch"] = len(seqs)
    else:
        out["text_mismatch"] = sum(
            1 for s, t in zip(seqs, snapshot["texts"], strict=True) if stream.text(s) != t
        )
    return out


def _stream(snapshot: dict[str, Any]) -> Stream | None:
    """The stream the page read (its URL ends with the id), or None: no stream was created, or
    the id is not one of ours."""
    try:
        return Codec().decode(str(snapshot["url"]).rsplit("/", 1)[1])
    except (ContractError, IndexError, KeyError, ValueError):
        return None


def _owed(state: str | None, stream: Stream | None, expected: int, ended_ns: int | None
          ) -> int | None:  # fmt: skip
    """Tokens owed to the page by the window's end: every one once its end came (the end follows
    the last token), else those due by then; None when that is not known."""
    if state == "done":
        return stream.tokens if stream is not None else expected
    if stream is None or ended_ns is None:
        return None
    return stream.due_count(ended_ns)


def outcome(state: str | None, unread: int | None, lost: int | None) -> str:
    """A page that ended with tokens owed and not read did not read all (unread None: not
    known to have)."""
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
    start: Baseline | None, m1: dict[str, float], ended_ns: int | None = None,
) -> Tab:  # fmt: skip
    """One tab's record; ``snap`` None: its page never answered, and what only the page could
    tell (tokens, the checks, reconnects) is None."""
    m0, base = start if start else ({}, 0)
    checked = check(snap, expected, ended_ns) if snap else dict.fromkeys(UNKNOWN_CHECKS)
    summary = hist.summary_ms() if hist.count else {}
    events = (snap or {}).get("events", [])
    return Tab(
        tab=i,
        outcome=outcome(snap["state"] if snap else None, checked["unread"], checked["lost"]),
        state=snap["state"] if snap else None,
        tokens=len(snap["seqs"]) if snap else None,
        time_origin=snap["time_origin"] if snap else None,
        first_token_ms=snap["first_token_ms"] if snap else None,
        created_ms=snap["created_ms"] if snap else None,
        last_token_ms=snap["last_token_ms"] if snap else None,
        **checked,
        reconnects=sum(1 for e in events if e["kind"] == "retry") if snap else None,
        protocol=snap["protocol"] if snap else None,
        latency_ms={k: summary[k] for k in ("p50", "p99", "max") if k in summary},
        renderer_tokens=len(snap["seqs"]) - base if start and snap else None,
        renderer_task_s=_delta(m0, m1, "TaskDuration") if start else None,
        renderer_script_s=_delta(m0, m1, "ScriptDuration") if start else None,
        js_heap_bytes=int(m1["JSHeapUsedSize"]) if "JSHeapUsedSize" in m1 else None,
        events=events,
        error=snap["error"] if snap else None,
    )  # type: ignore[typeddict-item]


UNKNOWN_CHECKS = ("lost", "unread", "duplicated", "out_of_order", "text_mismatch")


def _delta(m0: dict[str, float], m1: dict[str, float], key: str) -> float | None:
    """A metric's growth since the baseline; None unless both readings have it."""
    return round(m1[key] - m0[key], 6) if key in m1 and key in m0 else None


def _total(tabs: list[Tab], key: str) -> int | None:
    """A count over the tabs; None when a tab could not give it."""
    values = [t[key] for t in tabs]  # type: ignore[literal-required]
    return None if any(v is None for v in values) else sum(values)


def entry(plan: Plan, tabs: list[Tab], hist: Histogram, elapsed_s: float,
          server_cpu_s: float | None, fired: int) -> dict[str, Any]:  # fmt: skip
    received = _total(tabs, "tokens")
    metered = [t for t in tabs if t["renderer_task_s"] is not None
               and t["renderer_tokens"] is not None and t["renderer_tokens"] > 0]  # fmt: skip
    task_s = sum(t["renderer_task_s"] or 0.0 for t in metered)  # none is None (above)
    task_tokens = sum(t["renderer_tokens"] or 0 for t in metered)
    scripted = [t for t in metered if t["renderer_script_s"] is not None]
    script_s = sum(t["renderer_script_s"] or 0.0 for t in scripted)
    script_tokens = sum(t["renderer_tokens"] or 0 for t in scripted)
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
        "lost": _total(tabs, "lost"),
        "unread": _total(tabs, "unread"),
        "duplicated": _total(tabs, "duplicated"),
        "out_of_order": _total(tabs, "out_of_order"),
        "text_mismatch": _total(tabs, "text_mismatch"),
        "reconnects": _total(tabs, "reconnects"),
        "latency_ms": hist.summary_ms(),
        "latency_hist": hist.to_json(),
        "renderer_us_per_token": round(task_s * 1e6 / task_tokens, 2) if task_tokens else None,
        "renderer_script_us_per_token": (
            round(script_s * 1e6 / script_tokens, 2) if script_tokens else None
        ),
        "js_heap_bytes": max(heaps) if heaps else None,
        "server_cpu_us_per_token": (
            round(server_cpu_s * 1e6 / received, 2)
            if received and server_cpu_s is not None
            else None
        ),
        "per_tab": tabs,
    }
