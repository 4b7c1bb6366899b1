"""Long polling, lean stack: the stock app (servers/poll/stock.py) with a raw ASGI poll in front
(servers/http/lean.py).

Wire: the same as servers/poll/stock.py (docs/protocol.md), framed by the same ``Answers``: one
``http.response.start`` and one body per answer, with no Request or Response objects. A poll
that must wait watches for the client leaving, as the stock one does. Errors are the stock
app's answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from servers.base import Context, ServerConfig
from servers.http import lean
from servers.http.app import build_app, run_uvicorn, uvicorn_settings
from servers.pacing.loop import Pacer
from servers.poll import stock
from servers.process import metrics as m
from servers.process.listen import listen_sockets
from servers.tokens.core import MAX_BATCH, ContractError, parse_after, parse_timeout

NAME = "poll"
JSON = (b"content-type", b"application/json")


async def _answer(send: lean.Send, body: bytes, close: bool = False) -> None:
    headers = [JSON, (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def handler(ctx: Context) -> lean.Handler:
    metrics = ctx.metrics

    async def poll(scope: lean.Scope, receive: lean.Receive, send: lean.Send, sid: str) -> bool:
        try:
            stream = ctx.open(sid)
            q = lean.query(scope)
            after = parse_after(q.get("after"), stream)
            timeout = parse_timeout(q.get("timeout"))
            feed = await ctx.feed(sid, stream, after)
        except ContractError:
            return False  # the stock app answers it
        metrics.add(m.REQUESTS)
        watcher: list[asyncio.Future[None]] = []

        def watch() -> None:  # only a poll that must wait watches for the client leaving
            watcher.append(lean.watch(receive, "http.disconnect"))

        pacer = Pacer(ctx, feed, after, stock.Answers(), MAX_BATCH, idle_s=timeout,
                      on_wait=watch)  # fmt: skip
        try:
            async with aclosing(pacer.frames()) as frames:
                async for body in frames:
                    await _answer(send, body)
                    return True
            # Drained: answer, and close the connection so the next poll goes elsewhere.
            await _answer(send, stock.EMPTY, close=True)
        except asyncio.CancelledError:
            if not watcher or not watcher[0].done():
                raise  # nobody is there to read an answer
        finally:
            if watcher:
                watcher[0].cancel()
        return True

    return poll


def settings(cfg: ServerConfig) -> dict[str, Any]:
    return uvicorn_settings(cfg, {"poll_timeout_default_s": 25, "poll_max_batch": 1000,
                                  "poll": "raw ASGI"})  # fmt: skip


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    app = lean.front(build_app(ctx, stock.routes(ctx), stock.PATHS), "http", "poll", handler(ctx))
    await run_uvicorn(ctx, app, socks, on_ready)
