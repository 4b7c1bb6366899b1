"""SSE, floor stack: the read on ``asyncio.Protocol`` (servers/floor.py), paced by the wheel.

Wire: the same as servers/sse.py (WHATWG HTML 9.2; docs/protocol.md), framed by the same
``EventStream``: a 200 head with sse-starlette's headers and a chunked body, then one chunk per
wheel tick carrying every frame due (``retry:``, the events, a heartbeat, the end), and the last
chunk. Drained (SIGTERM), the body ends without ``end`` and the connection closes: the client
resumes from its Last-Event-ID. Errors and the resume from the last token (204) are the stock
app's answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from servers import floor, lean, sse_lean
from servers import metrics as m
from servers import sse as stock
from servers.answers import Answer
from servers.base import Context, ServerConfig
from servers.core import ContractError, Stream, parse_after
from servers.http_app import build_app
from servers.listen import listen_sockets
from servers.wheel import Flow

NAME = "sse"
LOOP = "uvloop"
HEAD = floor.head(200, [*sse_lean.HEAD, (b"transfer-encoding", b"chunked")])


def _params(query: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        out.setdefault(k, v)
    return out


def route(ctx: Context) -> floor.Route:
    metrics = ctx.metrics

    def opened(request: floor.Request) -> tuple[str, Stream, int, dict[str, str]] | None:
        """The stream, cursor and query of a valid read; None: the stock app answers."""
        sid = lean.stream_id(request.path, "sse")
        if sid is None:
            return None
        params = _params(request.query)
        try:
            stream = ctx.open(sid)
            value = request.header(b"last-event-id") or params.get("last_event_id")
            after = parse_after(value, stream, "last_event_id")
        except ContractError:
            return None
        if after == stream.tokens - 1:
            return None  # 204
        return sid, stream, after, params

    def start(conn: floor.Conn, request: floor.Request, feed: Stream | Answer, after: int,
              params: dict[str, str]) -> None:  # fmt: skip
        metrics.add(m.REQUESTS)
        if after >= 0:
            metrics.add(m.RESUMES)
        framing = stock.EventStream(ctx.cfg.retry_ms, stock.wants_ping(params.get("ping")))

        def emit(frames: list[bytes]) -> None:
            conn.write(floor.chunk(b"".join(frames)))

        def on_end(drained: bool) -> None:
            conn.write(floor.LAST_CHUNK)
            conn.done(request.keep_alive and not drained)

        conn.write(HEAD)
        conn.flow = Flow(ctx, conn.server.wheel, feed, after, framing, emit, on_end,
                         idle_s=ctx.cfg.heartbeat)  # fmt: skip
        conn.flow.start()

    def read(conn: floor.Conn, request: floor.Request) -> bool:
        got = opened(request)
        if got is None:
            return False
        sid, stream, after, params = got
        try:
            feed = floor.now(ctx.feed(sid, stream, after))
        except ContractError:
            return False
        start(conn, request, feed, after, params)
        return True

    async def read_waiting(conn: floor.Conn, request: floor.Request) -> bool:
        got = opened(request)
        if got is None:
            return False
        sid, stream, after, params = got
        try:
            feed = await ctx.feed(sid, stream, after)
        except ContractError:
            return False
        start(conn, request, feed, after, params)
        return True

    return read_waiting if floor.waits(ctx) else read  # type: ignore[return-value]


def settings(cfg: ServerConfig) -> dict[str, Any]:
    effective = {"server": "asyncio.Protocol + httptools on uvloop (servers/floor.py)",
                 "loop": LOOP, "pacing": "one timer wheel per process (servers/wheel.py)",
                 "sse": "one chunk per connection per tick", "backlog": cfg.backlog}  # fmt: skip
    return {"effective": effective, "stack_defaults": stock.settings(cfg)["stack_defaults"]}


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    app = build_app(ctx, stock.routes(ctx), stock.PATHS)
    await floor.serve(floor.Server(ctx, route(ctx), app), socks, on_ready)
