"""The HTTP half every HTTP transport shares: the prompt POST, health, metrics, errors, uvicorn.

SSE, WebSocket and long polling each add one read route to the app built here
(``build_app(ctx, routes)``) and run it with ``run_uvicorn``. Every 4xx answer carries a JSON body
with ``error`` (and ``field`` for a bad parameter), as docs/protocol.md says.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute

from servers.base import Context
from servers.http import openapi, web
from servers.process import metrics as m
from servers.tokens.core import MAX_BODY_BYTES, ContractError, ErrorKind, validate_create

HTTP_STATUS = {
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.GONE: 410,
    ErrorKind.INVALID: 422,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNAVAILABLE: 503,
}

UVICORN_DEFAULTS = {
    "http": "auto (httptools when installed)",
    "loop": "auto (uvloop when installed)",
    "ws": "auto (websockets-sansio)",
    "ws_per_message_deflate": True,
    "ws_ping_interval": 20.0,
    "ws_ping_timeout": 20.0,
    "access_log": True,
    "backlog": 2048,
    "timeout_keep_alive": 5,
}


def error_response(exc: ContractError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=HTTP_STATUS[exc.kind])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(body: bytes) -> Any:
    """A request body as JSON: an empty one is ``{}``; 422 if malformed (NaN is not JSON)."""
    if not body.strip():
        return {}
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except ValueError:
        raise ContractError(ErrorKind.INVALID, "body is not valid JSON", "body") from None
    except RecursionError:  # nested past the parser's depth: a 422, not a 500 and a traceback
        raise ContractError(ErrorKind.INVALID, "body nests too deeply", "body") from None


async def read_json_body(request: Request) -> Any:
    """The request body as JSON: 413 past 64 KiB (checked while reading), 422 if malformed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ContractError(ErrorKind.TOO_LARGE, "body is over 64 KiB", "body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ContractError(ErrorKind.TOO_LARGE, "body is over 64 KiB", "body")
        chunks.append(chunk)
    return decode_json(b"".join(chunks))


def build_app(
    ctx: Context, routes: Sequence[BaseRoute], paths: dict[str, Any] | None = None
) -> FastAPI:
    """The app: shared routes plus ``routes``; ``paths`` documents them
    (servers/http/openapi.py)."""
    title = f"tokenbench {ctx.cfg.transport}"
    app = FastAPI(title=title, docs_url=None, redoc_url=None)
    app.router.routes.extend([*routes, *web.routes()])
    document = openapi.document(title, {**(paths or {}), **web.PATHS})
    app.openapi = lambda: document  # type: ignore[method-assign]
    metrics = ctx.metrics

    @app.post("/v1/streams", status_code=201)
    async def create_stream(request: Request) -> Response:
        metrics.add(m.REQUESTS)
        tokens, rate = validate_create(await read_json_body(request))
        sid, stream = await ctx.create(tokens, rate)
        metrics.add(m.CREATED)
        body = {"id": sid, "tokens": tokens, "rate": rate, "created_ns": stream.created_ns}
        return JSONResponse(body, status_code=201)

    @app.post("/v1/streams/{sid}/stop", status_code=202)
    async def stop_stream(sid: str) -> Response:
        metrics.add(m.REQUESTS)
        await ctx.stop(sid)
        return JSONResponse({"id": sid}, status_code=202)

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok", "transport": ctx.cfg.transport})

    @app.get("/v1/time")
    async def server_time() -> Response:
        return JSONResponse({"t_ns": time.time_ns()})  # for a loader's clock (bench/load/clock.py)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.exception_handler(ContractError)
    async def on_contract_error(_: Request, exc: ContractError) -> Response:
        metrics.add(m.ERRORS)
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> Response:
        metrics.add(m.ERRORS)
        return JSONResponse({"error": str(exc.detail).lower()}, exc.status_code, exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def on_client_left(_: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=499)  # left mid-request: a normal event, nobody reads this

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> Response:
        metrics.add(m.ERRORS)
        loc = exc.errors()[0].get("loc", ("", "request")) if exc.errors() else ("request",)
        return JSONResponse({"error": "invalid request", "field": str(loc[-1])}, 422)

    return app


class _Server(uvicorn.Server):
    """uvicorn, but SIGTERM first drains our streams (so WebSockets close with 1001, not 1012)."""

    def __init__(self, config: uvicorn.Config, ctx: Context) -> None:
        super().__init__(config)
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGINT:
            return  # Ctrl-C reaches the whole process group; the supervisor sends SIGTERM
        if self._ctx.hub.draining:
            self.force_exit = True  # a second signal: stop waiting
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        for server in getattr(self, "servers", []):
            server.close()  # stop accepting at once: new connections go to a live server
        self._ctx.hub.drain()
        # Let the woken handlers write their close frames before uvicorn closes connections
        # (none open: nothing to wait for).
        wait = 0.3 if self._ctx.metrics.get(m.OPEN) else 0.0
        self._loop.call_later(wait, setattr, self, "should_exit", True)


@dataclass
class WebServer:
    """A started uvicorn: ``server.should_exit = True`` stops it; ``task`` ends then."""

    server: uvicorn.Server
    task: asyncio.Future[None]


async def start_uvicorn(ctx: Context, app: Any, socks: list[socket.socket]) -> WebServer:
    """uvicorn serving ``app`` on ``socks``, returned once it accepts (or has failed)."""
    cfg = ctx.cfg
    config = uvicorn.Config(
        app,
        http="httptools",
        ws="websockets-sansio",
        backlog=cfg.backlog,  # else uvicorn listens again at its own 2048
        lifespan="off",
        log_level="warning",
        access_log=cfg.access_log,
        ws_per_message_deflate=cfg.ws_compression,
        ws_ping_interval=cfg.heartbeat,
        ws_ping_timeout=cfg.heartbeat,
        timeout_graceful_shutdown=int(cfg.grace) or None,
        timeout_keep_alive=max(5, int(cfg.heartbeat)),
    )
    server = _Server(config, ctx)
    task = asyncio.ensure_future(server.serve(sockets=socks))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    return WebServer(server, task)


async def run_uvicorn(
    ctx: Context, app: Any, socks: list[socket.socket], on_ready: Callable[[], None]
) -> None:
    web = await start_uvicorn(ctx, app, socks)
    if web.server.started:
        on_ready()
    await web.task


def uvicorn_settings(cfg: Any, extra: dict[str, Any]) -> dict[str, Any]:
    effective = {
        "http": "httptools",
        "loop": "uvloop",
        "ws": "websockets-sansio",
        "ws_per_message_deflate": cfg.ws_compression,
        "ws_ping_interval": cfg.heartbeat,
        "ws_ping_timeout": cfg.heartbeat,
        "access_log": cfg.access_log,
        "backlog": cfg.backlog,
        "timeout_keep_alive": max(5, int(cfg.heartbeat)),
        **extra,
    }
    return {"effective": effective, "stack_defaults": UVICORN_DEFAULTS}
