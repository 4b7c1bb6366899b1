"""A real browser's EventSource reads the SSE route (WHATWG HTML 9.2), through /demo.

Headless Chromium, driven over the DevTools protocol. The page creates a stream, reads it with
its own EventSource, receives `end`, reconnects by itself with Last-Event-ID, gets 204, and
stops for good. Skipped where no Chromium is installed, except under CI (CI=true), where
.ci/run installs it and its absence is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

import pytest
import websockets

from tests.conftest import ServerHandle

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("no Chromium on this machine (.ci/run installs it)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _evaluate(url: str, expressions: list[str], wait: float) -> list[Any]:
    assert CHROMIUM is not None, "CI needs Chromium: .ci/run installs it"
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="tokenbench-chromium-")
    chrome = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        page = None
        deadline = time.monotonic() + 20
        while page is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                    page = next(t for t in json.load(r) if t["type"] == "page")
            except (OSError, StopIteration, ValueError):
                await asyncio.sleep(0.2)
        assert page is not None, "Chromium did not open its DevTools port"
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            counter = 0

            async def call(method: str, **params: Any) -> dict[str, Any]:
                nonlocal counter
                counter += 1
                await ws.send(json.dumps({"id": counter, "method": method, "params": params}))
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("id") == counter:
                        return message

            await call("Page.navigate", url=url)
            await asyncio.sleep(wait)
            out = []
            for expression in expressions:
                reply = await call("Runtime.evaluate", expression=expression)
                out.append(reply["result"]["result"].get("value"))
            return out
    finally:
        chrome.kill()
        chrome.wait()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.timeout(90)
async def test_browser_eventsource_reads_resumes_and_stops(server_factory) -> None:
    srv: ServerHandle = server_factory("sse")
    status, length = await _evaluate(
        f"{srv.url}/demo?tokens=40&rate=40",
        ["document.getElementById('status').textContent",
         "document.getElementById('text').textContent.length"],
        wait=5.0,
    )  # fmt: skip
    assert status == "state=closed tokens=40 opens=1 ordered=true ended=true", status
    assert length > 40 * 4
    counters = srv.counters()
    # POST, the stream, and the browser's own reconnect with Last-Event-ID: 39 (answered 204).
    assert counters["requests_total"] == 3 and counters["tokens_sent_total"] == 40
