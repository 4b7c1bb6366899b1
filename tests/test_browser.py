"""Real browsers (tokenbench browser, bench/browser/): every browser client in headless Chromium.

Each test starts the servers (and HAProxy, and the fault proxy) on free ports through
bench/browser/origins.py and ends them; the browser is closed by bench/browser/chromium.py, also
on failure. Skipped where Chromium or the browser bundle is missing, except under CI (CI=true),
where .ci/run installs them and their absence is a failure. Assertions are about order and
counts, never about speed: a tab "waits" when its first token came after another tab's stream
ended, which no machine's slowness can fake.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import transports
from bench.browser import chromium
from bench.browser.tabs import Plan, measure
from servers.http import web

MISSING = [why for why, gone in (
    ("no Chromium (apt-get install -y chromium)", shutil.which("chromium") is None),
    ("no browser bundle (make web)", not web.built()),
) if gone]  # fmt: skip
if MISSING and os.environ.get("CI") != "true":
    pytest.skip("; ".join(MISSING), allow_module_level=True)

CLIENTS = [(t.name, c) for t in transports.all_transports() for c in t.browser]


def run(plan: Plan, tmp_path: Path) -> dict[str, Any]:
    assert not MISSING, f"CI needs these: {MISSING}"

    async def go() -> dict[str, Any]:
        async with chromium.browser() as chrome:
            return await measure(chrome, plan, tmp_path)

    return asyncio.run(go())


def absolute(tab: dict[str, Any], key: str) -> float:
    return tab["time_origin"] + tab[key]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("transport", "client"), CLIENTS)
def test_every_browser_client_reads_a_stream_exactly_once_in_order(
    transport: str, client: str, tmp_path: Path
) -> None:
    e = run(Plan(transport, client, tabs=1, tokens=60, rate=60.0, wait_s=40), tmp_path)
    tab = e["per_tab"][0]
    assert tab["outcome"] == "read all", tab
    assert tab["tokens"] == 60 and tab["lost"] == tab["duplicated"] == tab["out_of_order"] == 0
    assert tab["text_mismatch"] == 0 and tab["unread"] == 0
    assert e["latency_ms"]["count"] == 60 and e["renderer_us_per_token"] is not None


@pytest.mark.timeout(120)
def test_the_react_page_renders_the_answer_through_its_hook(tmp_path: Path) -> None:
    e = run(Plan("ws", "websocket", 1, 40, 80.0, page="app", wait_s=40), tmp_path)
    assert e["per_tab"][0]["outcome"] == "read all" and e["lost"] == 0


@pytest.mark.timeout(150)
def test_the_seventh_http11_eventsource_waits_while_the_first_six_read(tmp_path: Path) -> None:
    e = run(Plan("sse", "eventsource", 7, 120, 40.0, wait_s=60), tmp_path)
    tabs = e["per_tab"]
    assert all(t["outcome"] == "read all" for t in tabs), [t["outcome"] for t in tabs]
    assert all(t["protocol"] == "http/1.1" for t in tabs)
    # Whichever tab's stream opened last (on a busy machine not always the seventh opened: a
    # page that loads late takes its slot later) got a connection only when one of the six
    # others' streams ended.
    *six, last = sorted(tabs, key=lambda t: absolute(t, "first_token_ms"))
    first_end = min(absolute(t, "last_token_ms") for t in six)
    assert absolute(last, "first_token_ms") >= first_end - 50
    assert all(absolute(t, "first_token_ms") < first_end for t in six)


@pytest.mark.timeout(150)
def test_over_http2_the_seventh_eventsource_reads_with_the_others(tmp_path: Path) -> None:
    e = run(Plan("sse", "eventsource", 7, 120, 40.0, network="2", wait_s=60), tmp_path)
    tabs = e["per_tab"]
    assert all(t["outcome"] == "read all" for t in tabs)
    assert all(t["protocol"] == "h2" for t in tabs)
    first_end = min(absolute(t, "last_token_ms") for t in tabs[:6])
    assert absolute(tabs[6], "first_token_ms") < first_end


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("transport", "client"), CLIENTS)
def test_a_browser_client_resumes_after_a_close_with_nothing_lost(
    transport: str, client: str, tmp_path: Path
) -> None:
    e = run(Plan(transport, client, 1, 200, 40.0, fault="close", wait_s=40), tmp_path)
    tab = e["per_tab"][0]
    assert e["fault_fired"] >= 1
    assert tab["outcome"] == "read all", tab
    assert tab["lost"] == tab["duplicated"] == tab["out_of_order"] == tab["text_mismatch"] == 0


@pytest.mark.timeout(120)
def test_eventsource_as_it_comes_stalls_in_a_black_hole_and_the_hardened_one_resumes(
    tmp_path: Path,
) -> None:
    asis = run(Plan("sse", "eventsource", 1, 240, 40.0, fault="blackhole", wait_s=12), tmp_path)
    hard = run(Plan("sse", "eventsource-hardened", 1, 240, 40.0, fault="blackhole", wait_s=30),
               tmp_path)  # fmt: skip
    assert asis["per_tab"][0]["outcome"] == "stalled" and asis["per_tab"][0]["unread"] > 0
    assert hard["per_tab"][0]["outcome"] == "read all" and hard["reconnects"] >= 1
    assert hard["lost"] == hard["duplicated"] == 0
