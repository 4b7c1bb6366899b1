"""One browser measurement: N tabs of one profile, each reading one stream with one client.

Rules of this module:
- Tabs are opened 100 ms apart, in order, without waiting for a page to load: a tab whose page
  itself waits for a connection (the six-per-host limit holds documents too) shows that wait in
  its ``first_token_ms``, which counts from the tab's navigation start.
- The run ends when every tab has finished (its stream ended, or its client gave up for good) or
  at ``wait_s``; a tab still reading then is "stalled" (a black hole without a watchdog), one
  whose page never came is "never loaded".
- What a page recorded is checked and summed by bench/browser/records.py. The window ends when
  the wait does: a token due by then (the server's clock is this machine's) and not read is
  unread.
- Renderer cost is the DevTools Performance domain's ``TaskDuration`` (the main thread's CPU
  time, thread ticks) from the first look at which the tab was reading to the end, per token
  received in between: the page load and the prompt POST are not a token's cost.
  ``JSHeapUsedSize`` is read at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.browser import chromium, native
from bench.browser.origins import Origin
from bench.browser.records import Baseline, entry, histogram, tab_record
from bench.load import procstat
from bench.results.hist import Histogram

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
        ended_ns = time.time_ns()  # the window's end: tokens due by then are owed (records.py)
        snaps = await asyncio.gather(*[_eval(p, SNAPSHOT) for p in pages])
        ends = await asyncio.gather(*[m.read() for m in meters])
        cpu1 = procstat.sample(origin.server_pids()).cpu_s
        if screenshot is not None:
            await pages[0].screenshot(path=str(screenshot))
        for nav in navs:
            nav.cancel()
        hists = [histogram(s) for s in snaps]
        tabs = [tab_record(i, s, hists[i], plan.tokens, starts[i], ends[i], ended_ns)
                for i, s in enumerate(snaps)]  # fmt: skip
        hist = Histogram()
        for h in hists:
            hist.merge(h)
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
