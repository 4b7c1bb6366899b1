"""WebSocket, lean stack: the stock app (servers/ws/stock.py) with a raw ASGI read in front
(servers/http/lean.py).

Wire: the same as servers/ws/stock.py (RFC 6455; docs/protocol.md): one text message per token, the
end message, close 1000; 1001 on shutdown. Here the handler speaks ASGI's WebSocket messages
directly (no Starlette ``WebSocket``, no route matching). A request to refuse (unknown stream,
bad cursor) is decided before the handshake and handed to the stock app, which refuses it with a
real HTTP answer. uvicorn frames each message and writes it: one write per message either way.
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
from servers.tokens.core import ContractError, parse_after
from servers.ws import stock

NAME = "ws"


def handler(ctx: Context) -> lean.Handler:
    metrics = ctx.metrics

    async def read(scope: lean.Scope, receive: lean.Receive, send: lean.Send, sid: str) -> bool:
        try:
            stream = ctx.open(sid)
            after = parse_after(lean.query(scope).get("after"), stream)
            feed = await ctx.feed(sid, stream, after)
        except ContractError:
            return False  # the stock app refuses the handshake with its HTTP answer
        if (await receive())["type"] != "websocket.connect":
            return True  # the client left before the handshake
        metrics.add(m.REQUESTS)
        await send({"type": "websocket.accept"})
        if after >= 0:
            metrics.add(m.RESUMES)
        me = asyncio.current_task()
        assert me is not None

        async def say(text: str) -> None:
            await send({"type": "websocket.send", "text": text})

        watcher = asyncio.ensure_future(stock.watch_client(ctx, sid, receive, me, say))
        pacer = Pacer(ctx, feed, after, stock.Messages())
        try:
            async with aclosing(pacer.frames()) as frames:
                async for messages in frames:
                    for text in messages:
                        await send({"type": "websocket.send", "text": text})
            code = stock.CLOSE_GOING_AWAY if pacer.drained else stock.CLOSE_NORMAL
            reason = "server shutting down" if pacer.drained else ""
            await send({"type": "websocket.close", "code": code, "reason": reason})
        except asyncio.CancelledError:
            if not watcher.done():
                raise  # cancelled by the server, not by the client leaving
        except (OSError, RuntimeError):  # uvicorn's ClientDisconnected: the client left
            pass
        finally:
            watcher.cancel()
        return True

    return read


def settings(cfg: ServerConfig) -> dict[str, Any]:
    return uvicorn_settings(cfg, {"ws_message_per_token": True, "ws": "raw ASGI"})


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    app = lean.front(build_app(ctx, stock.routes(ctx)), "websocket", "ws", handler(ctx))
    await run_uvicorn(ctx, app, socks, on_ready)
