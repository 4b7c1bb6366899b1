"""One browser measurement: N tabs of one profile, each reading one stream with one client.

Rules of this module:
- Tabs are opened 100 ms apart, in order, without waiting for a page to load: a tab whose page
  itself waits for a connection (the six-per-host limit holds documents too) shows that wait in
  its ``first_token_ms``, which counts from the tab's navigation start.
- The run ends when every tab has finished (its stream ended, or its client gave up for good) or
  at ``wait_s``; a tab still reading then is "stalled" (a black hole without a watchdog), one
  whose page never came is "never loaded".
- What a page recorded is checked here, against the stream its id names (servers/core.py): seqs
  (lost below the highest seen, duplicated, out of order) and texts. Latency is against each
  token's due time ``t``, into the loaders' histogram (bench/load/hist.py, microseconds).
- Renderer cost is the DevTools Performance domain's ``TaskDuration`` (the main thread's CPU
  time, thread ticks) from the first look at which the tab was reading to the end, per token
  received in between: the page load and the prompt POST are not a token's cost.
  ``JSHeapUsedSize`` is read at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

from bench.browser import chromium, native
from bench.browser.origins import Origin
from bench.load import procstat
from bench.load.hist import Histogram
from servers.core import Codec, ContractError

OPEN_GAP_S = 0.1
POLL_S = 0.25
FINAL = ("done", "gave-up", "failed")


@dataclass(frozen=True)
class Plan:
    transport: str
    client: str
    tabs: int
    tokens: int
    rate: float
    network: str = "1.1"  # "1.1", or "2" (HAProxy, TLS, ALPN h2)
    fault: str = "none"  # origins.FAULTS
    page: str = "bench"  # "bench" (plain) or "app" (React)
    wait_s: float = 30.0
    watchdog_ms: int = 3000
    poll_timeout_s: float = 25.0
    stack: str = "stock"

    def query(self, tab: int) -> str:
        return (
            f"client={self.client}&tokens={self.tokens}&rate={self.rate:g}&tab={tab}"
            f"&watchdog_ms={self.watchdog_ms}&poll_timeout_s={self.poll_timeout_s:g}"
        )


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
    i: int, snap: dict[str, Any] | None, expected: int, start: Baseline | None,
    m1: dict[str, float],
) -> Tab:  # fmt: skip
    hist = histogram(snap)
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


SNAPSHOT = "window.tb ? window.tb.snapshot() : null"
STATE = "window.tb ? [window.tb.result.state, window.tb.result.seqs.length] : null"


async def measure(
    chrome: Any, plan: Plan, workdir: Path, screenshot: Path | None = None
) -> dict[str, Any]:
    """Run ``plan``; the entry results.json keeps (``browser[]``, docs/results-schema.md).
    ``screenshot``: save the first tab as it ended, as a PNG."""
    origin = Origin(plan.transport, plan.network, plan.fault, stack=plan.stack, workdir=workdir)
    context = None
    try:
        url = await origin.start()
        context = await chromium.profile(chrome)
        cpu0 = procstat.sample(origin.server_pids()).cpu_s
        pages: list[Any] = []
        meters: list[chromium.Metrics] = []
        navs: list[asyncio.Future[None]] = []
        starts: list[Baseline | None] = [None] * plan.tabs
        for i in range(plan.tabs):
            page = await context.new_page()
            meter = await chromium.Metrics.attach(context, page)
            target = f"{url}/web/{plan.page}.html?{plan.query(i)}"
            navs.append(asyncio.ensure_future(_goto(page, target, plan.wait_s)))
            pages.append(page)
            meters.append(meter)
            await asyncio.sleep(OPEN_GAP_S)
        origin.begin()
        began = time.monotonic()
        while time.monotonic() - began < plan.wait_s:
            states = await asyncio.gather(*[_eval(p, STATE) for p in pages])
            for i, got in enumerate(states):
                if got and got[1] > 0 and starts[i] is None:  # reading: the renderer's zero
                    starts[i] = (await meters[i].read(), got[1])
            if all(s and s[0] in FINAL for s in states):
                break
            await asyncio.sleep(POLL_S)
        elapsed = time.monotonic() - began
        snaps = await asyncio.gather(*[_eval(p, SNAPSHOT) for p in pages])
        ends = await asyncio.gather(*[m.read() for m in meters])
        cpu1 = procstat.sample(origin.server_pids()).cpu_s
        if screenshot is not None:
            await pages[0].screenshot(path=str(screenshot))
        for nav in navs:
            nav.cancel()
        tabs = [tab_record(i, s, plan.tokens, starts[i], ends[i])
                for i, s in enumerate(snaps)]  # fmt: skip
        hist = Histogram()
        for snap in snaps:
            hist.merge(histogram(snap))
        beside = None
        if native.wanted(plan.transport, plan.fault) and origin.server is not None:
            beside = await native.measure(plan.transport, origin.server.url, origin.server_pids(),
                                          plan.tabs, plan.tokens, plan.rate)  # fmt: skip
    finally:
        if context is not None:
            await context.close()
        await origin.stop()
    # A restarted server's new processes are not the ones first sampled: its CPU is not known.
    server_cpu = None if origin.restarted else cpu1 - cpu0
    return {**entry(plan, tabs, hist, elapsed, server_cpu, origin.fired), "native": beside}


async def _goto(page: Any, url: str, wait_s: float) -> None:
    with contextlib.suppress(Exception):  # a page that never loads is measured, not an error
        await page.goto(url, wait_until="commit", timeout=wait_s * 1000)


async def _eval(page: Any, expression: str) -> Any:
    try:
        return await asyncio.wait_for(page.evaluate(expression), 5.0)
    except Exception:  # a page mid-navigation, or closed, has no result yet
        return None


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
