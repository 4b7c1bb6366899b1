"""Headless Chromium (Debian's package), driven by Playwright for Python.

Rules of this module:
- The browser is the system's ``chromium``: Playwright downloads nothing (``executable_path``).
- One browser profile (one Playwright context) per measurement, so every tab shares one
  connection pool, as a user's tabs do: Chromium allows six HTTP/1.1 connections per host and
  proxy-free origin (net/socket/client_socket_pool_manager.cc), and 255 WebSockets.
- Background tabs are not throttled (the flags below): tabs are opened side by side and each must
  read as a foreground tab would, or the six-connection question would mix with timer clamping.
- ``metrics(page)`` reads the DevTools Performance domain: ``TaskDuration`` is the renderer main
  thread's busy time (seconds), ``JSHeapUsedSize`` the page's JS heap.
- Every browser started here is closed on the way out, also on error (``async with``).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

INSTALL = "apt-get install -y chromium"
FLAGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-quic",  # HTTP/1.1 and h2 only: what is measured is what is named
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class BrowserError(RuntimeError):
    """Chromium or Playwright is missing; one line that says how to install it."""


def executable() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise BrowserError(f"Chromium is not installed: run `{INSTALL}`")
    return path


@asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium; closed (with every page and renderer) on the way out."""
    exe = executable()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        raise BrowserError("Playwright is not installed: run `make install`") from None
    async with async_playwright() as pw:
        chrome = await pw.chromium.launch(executable_path=exe, headless=True, args=FLAGS)
        try:
            yield chrome
        finally:
            await chrome.close()


async def profile(chrome: Any) -> Any:
    """A fresh profile: its own connection pool and cache; self-signed TLS accepted."""
    return await chrome.new_context(ignore_https_errors=True)


class Metrics:
    """The DevTools Performance domain of one page."""

    def __init__(self, session: Any) -> None:
        self.session = session

    @classmethod
    async def attach(cls, context: Any, page: Any) -> Metrics:
        session = await context.new_cdp_session(page)
        await session.send("Performance.enable", {"timeDomain": "threadTicks"})
        return cls(session)

    async def read(self) -> dict[str, float]:
        reply = await self.session.send("Performance.getMetrics")
        return {m["name"]: float(m["value"]) for m in reply["metrics"]}
