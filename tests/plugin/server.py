"""NDJSON over chunked HTTP/1.1: ``GET /v1/streams/{id}/ndjson?after=K``.

One line per token (the payload JSON), an empty line as heartbeat after ``heartbeat`` idle
seconds, ``{"end":true,"tokens":N}`` after the last token. Only the framing is new: pacing,
the prompt POST, errors, health and shutdown are tokenbench's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from servers.base import Context, ServerConfig
from servers.http.app import build_app, run_uvicorn, uvicorn_settings
from servers.pacing.loop import Pacer
from servers.process import metrics as m
from servers.process.listen import listen_sockets
from servers.tokens.core import Stream, parse_after

NAME = "ndjson"


class Lines:
    def start(self) -> None:
        return None

    def tokens(self, stream: Stream, seqs: range) -> bytes:
        return "".join([stream.payload(s) + "\n" for s in seqs]).encode()

    def heartbeat(self) -> bytes:
        return b"\n"

    def end(self, stream: Stream) -> bytes:
        return f'{{"end":true,{stream.end_fields()}}}\n'.encode()


def routes(ctx: Context) -> list[BaseRoute]:
    async def read(request: Request) -> Response:
        ctx.metrics.add(m.REQUESTS)
        stream = ctx.open(request.path_params["sid"])
        after = parse_after(request.query_params.get("after"), stream)
        pacer = Pacer(ctx, stream, after, Lines(), idle_s=ctx.cfg.heartbeat)
        return StreamingResponse(pacer.frames(), media_type="application/x-ndjson")

    return [Route("/v1/streams/{sid}/ndjson", read, methods=["GET"])]


def settings(cfg: ServerConfig) -> dict[str, Any]:
    return uvicorn_settings(cfg, {})


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    await run_uvicorn(ctx, build_app(ctx, routes(ctx)), socks, on_ready)
