"""WebSocket on FastAPI/uvicorn: ``GET /v1/streams/{id}/ws`` (upgrade), resume with ``?after=K``.

Wire (RFC 6455; CONTRACT.md): one text message per token, the payload JSON; after the last token
one message ``{"end":true,"tokens":N}``, then close code 1000 (normal closure). A bad request is
refused before the upgrade with a real HTTP answer (404/410/422 and a JSON body), through the
ASGI WebSocket denial-response extension. Keepalive is the protocol's ping (uvicorn sends it
every ``heartbeat`` seconds). On shutdown streams close with 1001 (going away), so the client
resumes elsewhere. Per-message deflate (RFC 7692) is off unless ``--ws-compression``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from servers import metrics as m
from servers.base import Context, ServerConfig
from servers.core import FAIR_SHARE, ContractError, Cursor, parse_after
from servers.http_app import build_app, error_response, run_uvicorn, uvicorn_settings
from servers.hub import Draining
from servers.listen import listen_sockets

NAME = "ws"
CLOSE_NORMAL = 1000  # RFC 6455 section 7.4.1
CLOSE_GOING_AWAY = 1001


async def _watch_disconnect(ws: WebSocket, reader: asyncio.Task[Any]) -> None:
    """Tokens flow one way; this only notices the client leaving and ends its stream at once."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            reader.cancel()
            return


def routes(ctx: Context) -> list[BaseRoute]:
    metrics, hub = ctx.metrics, ctx.hub

    async def read(ws: WebSocket) -> None:
        metrics.add(m.REQUESTS)
        try:
            stream = ctx.open(ws.path_params["sid"])
            after = parse_after(ws.query_params.get("after"), stream)
        except ContractError as exc:
            metrics.add(m.ERRORS)
            await ws.send_denial_response(error_response(exc))
            return
        await ws.accept()
        if after >= 0:
            metrics.add(m.RESUMES)
        metrics.add(m.OPEN)
        me = asyncio.current_task()
        assert me is not None
        watcher = asyncio.ensure_future(_watch_disconnect(ws, me))
        cursor = Cursor(stream, after)
        send = ws.send_text
        try:
            while not cursor.done:
                seqs = cursor.take(time.time_ns(), FAIR_SHARE)
                if seqs:
                    for seq in seqs:
                        await send(stream.payload(seq))
                    metrics.add(m.TOKENS, len(seqs))
                    if len(seqs) > 1:
                        await asyncio.sleep(0)  # a catching-up reader lets the others run
                else:
                    await hub.sleep_until(cursor.next_due_ns())
            await send(f'{{"end":true,"tokens":{stream.tokens}}}')
            await ws.close(CLOSE_NORMAL)
        except Draining:
            await ws.close(CLOSE_GOING_AWAY, "server shutting down")
        except asyncio.CancelledError:
            if not watcher.done():
                raise  # cancelled by the server, not by the client leaving
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the client left while we were writing
        finally:
            watcher.cancel()
            metrics.add(m.OPEN, -1)

    return [WebSocketRoute("/v1/streams/{sid}/ws", read)]


def settings(cfg: ServerConfig) -> dict[str, Any]:
    return uvicorn_settings(cfg, {"ws_message_per_token": True})


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    await run_uvicorn(ctx, build_app(ctx, routes(ctx)), socks, on_ready)
