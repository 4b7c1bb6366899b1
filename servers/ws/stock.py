"""WebSocket on FastAPI/uvicorn: ``GET /v1/streams/{id}/ws`` (upgrade), resume: ``?after=K``.

Wire (RFC 6455; docs/protocol.md): one text message per token, the payload JSON; after the last
token one message ``{"end":true,"tokens":N}``, then close code 1000 (normal closure). A bad
request is refused before the upgrade with a real HTTP answer (404/410/422 and a JSON body),
through the ASGI WebSocket denial-response extension. Keepalive is the protocol's ping (uvicorn
sends it every ``heartbeat`` seconds). On shutdown streams close with 1001 (going away), so the
client resumes elsewhere. Per-message deflate (RFC 7692) is off unless ``--ws-compression``.
The one message a client sends is the stop button, in-band: ``{"stop":true}`` (docs/protocol.md,
"Stop"); the stream then ends with ``{"end":true,"tokens":N,"stopped":ns}`` and close 1000.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from servers.base import Context, ServerConfig
from servers.http.app import (
    HTTP_STATUS,
    build_app,
    error_response,
    run_uvicorn,
    uvicorn_settings,
)
from servers.pacing.loop import Pacer
from servers.process import metrics as m
from servers.process.listen import listen_sockets
from servers.tokens.core import ContractError, Stream, parse_after

NAME = "ws"
CLOSE_NORMAL = 1000  # RFC 6455 section 7.4.1
CLOSE_GOING_AWAY = 1001


def is_stop(message: Any) -> bool:
    """Is this ASGI ``websocket.receive`` the stop button, ``{"stop":true}``?"""
    text = message.get("text")
    if text is None or len(text) > 64:
        return False
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return doc == {"stop": True} and doc["stop"] is True  # not {"stop": 1}


async def watch_client(
    ctx: Context, sid: str, receive: Callable[[], Awaitable[Any]], reader: asyncio.Task[Any],
    say: Callable[[str], Awaitable[None]],
) -> None:  # fmt: skip
    """Notice the client leaving (end its stream at once) and its stop; ignore anything else.
    A stop that fails (503: the model away) is answered in-band, ``{"error":...,"status":503}``,
    and the stream goes on."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            reader.cancel()
            return
        if message["type"] == "websocket.receive" and is_stop(message):
            try:
                await ctx.stop(sid)
            except ContractError as exc:  # the model away: say so; the client may resend
                with contextlib.suppress(Exception):  # the client left meanwhile
                    await say(json.dumps({**exc.body(), "status": HTTP_STATUS[exc.kind]}))


class Messages:
    """WebSocket framing (RFC 6455): one text message per token; the end message, then close."""

    def start(self) -> None:
        return None

    def tokens(self, stream: Stream, seqs: range) -> list[str]:
        payload = stream.payload
        return [payload(s) for s in seqs]

    def heartbeat(self) -> list[str]:
        return []  # never asked for: keepalive is the protocol's ping (uvicorn's ws_ping_interval)

    def end(self, stream: Stream) -> list[str]:
        return [end_message(stream)]


def end_message(stream: Stream) -> str:
    """``{"end":true,"tokens":N}`` (docs/protocol.md)."""
    return f'{{"end":true,{stream.end_fields()}}}'


def routes(ctx: Context) -> list[BaseRoute]:
    metrics = ctx.metrics

    async def read(ws: WebSocket) -> None:
        metrics.add(m.REQUESTS)
        try:
            sid = ws.path_params["sid"]
            stream = ctx.open(sid)
            after = parse_after(ws.query_params.get("after"), stream)
            feed = await ctx.feed(sid, stream, after)
        except ContractError as exc:
            metrics.add(m.ERRORS)
            await ws.send_denial_response(error_response(exc))
            return
        await ws.accept()
        if after >= 0:
            metrics.add(m.RESUMES)
        me = asyncio.current_task()
        assert me is not None
        watcher = asyncio.ensure_future(watch_client(ctx, sid, ws.receive, me, ws.send_text))
        pacer = Pacer(ctx, feed, after, Messages())
        send = ws.send_text
        try:
            async with aclosing(pacer.frames()) as frames:
                async for messages in frames:
                    for text in messages:
                        await send(text)
            if pacer.drained:
                await ws.close(CLOSE_GOING_AWAY, "server shutting down")
            else:
                await ws.close(CLOSE_NORMAL)
        except asyncio.CancelledError:
            if not watcher.done():
                raise  # cancelled by the server, not by the client leaving
        except (WebSocketDisconnect, OSError, RuntimeError):  # uvicorn: ClientDisconnected
            pass  # the client left while we were writing (or while we closed)
        finally:
            watcher.cancel()

    return [WebSocketRoute("/v1/streams/{sid}/ws", read)]


def settings(cfg: ServerConfig) -> dict[str, Any]:
    return uvicorn_settings(cfg, {"ws_message_per_token": True})


def app(ctx: Context) -> FastAPI:
    """The stock app, whatever server runs it (uvicorn here; granian: servers/http/granian.py)."""
    return build_app(ctx, routes(ctx))


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    await run_uvicorn(ctx, app(ctx), socks, on_ready)
