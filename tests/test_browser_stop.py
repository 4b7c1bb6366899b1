"""The React page's Stop button in headless Chromium, on every browser client: clicked mid-answer,
the answer ends where the model was, says "stopped", and its tokens are whole and in order
(docs/protocol.md, "Stop"). Skipped without Chromium or the bundle, except under CI."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

import transports
from bench.browser import chromium
from bench.browser.origins import Origin
from servers.http import web

MISSING = [why for why, gone in (
    ("no Chromium (apt-get install -y chromium)", shutil.which("chromium") is None),
    ("no browser bundle (make web)", not web.built()),
) if gone]  # fmt: skip
if MISSING and os.environ.get("CI") != "true":
    pytest.skip("; ".join(MISSING), allow_module_level=True)

CLIENTS = [(t.name, c) for t in transports.all_transports() for c in t.browser]
TOKENS = 400  # 10 s at 40 tok/s: the click comes long before the end


async def press_stop(transport: str, client: str, workdir: Path) -> dict[str, Any]:
    origin = Origin(transport, workdir=workdir)
    try:
        url = await origin.start()
        async with chromium.browser() as chrome:
            context = await chromium.profile(chrome)
            page = await context.new_page()
            await page.goto(f"{url}/web/app.html?client={client}&tokens={TOKENS}&rate=40")
            await page.wait_for_function("window.tb && window.tb.result.seqs.length >= 5",
                                         timeout=20_000)  # fmt: skip
            clicked = time.monotonic()
            await page.click("button.stop")
            await page.wait_for_function("window.tb.result.state === 'done'", timeout=20_000)
            took = time.monotonic() - clicked
            result = await page.evaluate("window.tb.snapshot()")
            status = await page.get_attribute("p.status", "data-status")
            await context.close()
            return {**result, "took_s": took, "status": status}
    finally:
        await origin.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("transport", "client"), CLIENTS)
def test_the_stop_button_ends_the_answer_in_the_browser(
    transport: str, client: str, tmp_path: Path
) -> None:
    assert not MISSING, f"CI needs these: {MISSING}"
    r = asyncio.run(press_stop(transport, client, tmp_path))
    seqs = r["seqs"]
    assert seqs == list(range(len(seqs))) and 5 <= len(seqs) < TOKENS, seqs[-3:]
    assert r["pressed_ms"] is not None and r["seqs_at_press"] <= len(seqs)
    ends = [e for e in r["events"] if e["kind"] == "end"]
    assert ends and ends[-1]["detail"] == "stopped", r["events"]
    assert r["status"] == "stopped"
    assert r["took_s"] < 8  # the answer had 10 s to go: the stop ended it, not its last token
