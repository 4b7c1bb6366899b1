"""Server-Sent Events through sse-starlette: ``GET /v1/streams/{id}/sse``.

Wire (WHATWG HTML, "Server-sent events"; docs/protocol.md): the first bytes are ``retry: <ms>``; one
event per token, ``id: <seq>`` and ``data: <payload>``; a comment line when nothing was written
for ``heartbeat`` seconds; after the last token ``event: end`` with ``data: {"tokens":N}``, then
the response ends. Resume from ``Last-Event-ID`` (header, or ``?last_event_id=``; the header
wins). A resume from the last token answers 204, which stops a browser's EventSource for good.
sse-starlette's own ping task is off (``ping=0``): its ping fires on a fixed period whether or
not tokens flowed, and the contract asks for a heartbeat only after ``heartbeat`` idle seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from servers.base import Context, ServerConfig
from servers.http import openapi
from servers.http.app import build_app, run_uvicorn, uvicorn_settings
from servers.pacing.loop import Pacer
from servers.process import metrics as m
from servers.process.listen import listen_sockets
from servers.source.answers import Answer
from servers.tokens.core import Stream, parse_after

NAME = "sse"
HEARTBEAT = b": keep-alive\n\n"
# ``?ping=1`` (docs/protocol.md, "Browsers"): the idle heartbeat as a named event, which a
# browser's EventSource can see (it hides comments), so a page can run a silence watchdog.
PING_EVENT = b"event: ping\ndata: {}\n\n"


class EventStream:
    """SSE framing (WHATWG HTML 9.2.6): one event per token, several events per write."""

    def __init__(self, retry_ms: int, ping: bool = False) -> None:
        self.retry = b"retry: %d\n\n" % retry_ms
        self.beat = PING_EVENT if ping else HEARTBEAT

    def start(self) -> bytes:
        return self.retry

    def tokens(self, stream: Stream, seqs: range) -> bytes:
        payload = stream.payload
        return "".join([f"id: {s}\ndata: {payload(s)}\n\n" for s in seqs]).encode()

    def heartbeat(self) -> bytes:
        return self.beat

    def end(self, stream: Stream) -> bytes:
        return f"event: end\ndata: {stream.end_payload()}\n\n".encode()


def wants_ping(value: str | None) -> bool:
    """``?ping=1``: heartbeats as ``event: ping`` (docs/protocol.md, "Browsers")."""
    return value == "1"


def _events(ctx: Context, stream: Stream | Answer, after: int, ping: bool) -> AsyncIterator[bytes]:
    """The response body. Drained, it just ends without ``end``: the client resumes from its
    Last-Event-ID."""
    framing = EventStream(ctx.cfg.retry_ms, ping)
    return Pacer(ctx, stream, after, framing, idle_s=ctx.cfg.heartbeat).frames()


def routes(ctx: Context) -> list[BaseRoute]:
    metrics = ctx.metrics

    async def read(request: Request) -> Response:
        metrics.add(m.REQUESTS)
        sid = request.path_params["sid"]
        stream = ctx.open(sid)
        value = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        after = parse_after(value, stream, "last_event_id")
        if after == stream.tokens - 1:
            return Response(status_code=204)
        feed = await ctx.feed(sid, stream, after)
        if after >= 0:
            metrics.add(m.RESUMES)
        ping = wants_ping(request.query_params.get("ping"))
        return EventSourceResponse(_events(ctx, feed, after, ping), ping=0)

    return [
        Route("/v1/streams/{sid}/sse", read, methods=["GET"]),
    ]


PATHS: dict[str, Any] = {
    "/v1/streams/{sid}/sse": {
        "get": {
            "summary": "Read a stream as Server-Sent Events, resuming after Last-Event-ID",
            "parameters": [
                openapi.stream_id(),
                {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                {"name": "last_event_id", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "ping",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["1"]},
                    "description": "1: idle heartbeats as `event: ping` (browsers)",
                },
            ],
            "responses": {
                "200": {"description": "the event stream", "content": {"text/event-stream": {}}},
                "204": {"description": "resumed from the last token: nothing more to read"},
                **openapi.READ_ERRORS,
            },
        }
    },
}


def settings(cfg: ServerConfig) -> dict[str, Any]:
    out = uvicorn_settings(cfg, {"sse_ping": 0, "sse_heartbeat_after_idle_s": cfg.heartbeat})
    out["stack_defaults"] = {**out["stack_defaults"], "sse_ping": 15}
    return out


def app(ctx: Context) -> FastAPI:
    """The stock app, whatever server runs it (uvicorn here; granian: servers/http/granian.py)."""
    return build_app(ctx, routes(ctx), PATHS)


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    await run_uvicorn(ctx, app(ctx), socks, on_ready)
