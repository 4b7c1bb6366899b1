"""SSE, lean stack: the stock app (servers/sse/stock.py) with a raw ASGI read in front
(servers/http/lean.py).

Wire: the same as servers/sse/stock.py (WHATWG HTML 9.2; docs/protocol.md), framed by the same
``EventStream``: the response head, then one ``http.response.body`` per frame the pacing loop
hands out (with ``--flush-ms``, every token due in that window in one frame). Where
sse-starlette runs four tasks and an anyio task group per connection, this runs the handler and
one task that watches for the client leaving. Errors and the resume from the last token (204)
are the stock app's answers.
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
from servers.process import metrics as m
from servers.process.listen import listen_sockets
from servers.sse import stock
from servers.tokens.core import ContractError, parse_after

NAME = "sse"
HEAD = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
]  # sse-starlette's, so a client sees one response either way


def handler(ctx: Context) -> lean.Handler:
    metrics = ctx.metrics

    async def read(scope: lean.Scope, receive: lean.Receive, send: lean.Send, sid: str) -> bool:
        try:
            stream = ctx.open(sid)
            params = lean.query(scope)
            value = lean.header(scope, b"last-event-id") or params.get("last_event_id")
            after = parse_after(value, stream, "last_event_id")
            if after < stream.tokens - 1:
                feed = await ctx.feed(sid, stream, after)
        except ContractError:
            return False  # the stock app answers it
        if after == stream.tokens - 1:
            return False  # 204
        metrics.add(m.REQUESTS)
        if after >= 0:
            metrics.add(m.RESUMES)
        watcher = lean.watch(receive, "http.disconnect")
        framing = stock.EventStream(ctx.cfg.retry_ms, stock.wants_ping(params.get("ping")))
        pacer = Pacer(ctx, feed, after, framing, idle_s=ctx.cfg.heartbeat)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEAD})
            async with aclosing(pacer.frames()) as frames:
                async for frame in frames:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watcher.done():
                raise  # cancelled by the server, not by the client leaving
        except OSError:
            pass  # the client left mid-write
        finally:
            watcher.cancel()
        return True

    return read


def settings(cfg: ServerConfig) -> dict[str, Any]:
    out = uvicorn_settings(cfg, {"sse": "raw ASGI, one send per frame"})
    out["stack_defaults"] = stock.settings(cfg)["stack_defaults"]
    return out


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    app = lean.front(build_app(ctx, stock.routes(ctx), stock.PATHS), "http", "sse", handler(ctx))
    await run_uvicorn(ctx, app, socks, on_ready)
