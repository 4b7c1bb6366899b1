"""SSE, floor stack: the read on ``asyncio.Protocol`` (servers/http/floor.py), paced by the wheel.

Wire: the same as servers/sse/stock.py (WHATWG HTML 9.2; docs/protocol.md), framed by the same
``EventStream``: a 200 head with sse-starlette's headers and a chunked body, then one chunk per
wheel tick carrying every frame due (``retry:``, the events, a heartbeat, the end), and the last
chunk. Drained (SIGTERM), the body ends without ``end`` and the connection closes: the client
resumes from its Last-Event-ID. Errors and the resume from the last token (204) are the stock
app's answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from servers.base import Context, ServerConfig
from servers.http import floor, lean
from servers.http import prompt as prompt_floor
from servers.http.app import build_app
from servers.pacing.wheel import Flow
from servers.process import metrics as m
from servers.process.listen import listen_sockets
from servers.sse import lean as sse_lean
from servers.sse import stock
from servers.tokens.core import ContractError, parse_after

NAME = "sse"
LOOP = "uvloop"
HEAD = floor.head(200, [*sse_lean.HEAD, (b"transfer-encoding", b"chunked")])


def route(ctx: Context) -> floor.Route:
    metrics = ctx.metrics

    def opener(request: floor.Request) -> floor.Read | None:
        sid = lean.stream_id(request.path, "sse")
        if sid is None:
            return None
        params = lean.params(request.query)
        try:
            stream = ctx.open(sid)
            value = request.header(b"last-event-id") or params.get("last_event_id")
            after = parse_after(value, stream, "last_event_id")
        except ContractError:
            return None
        if after == stream.tokens - 1:
            return None  # 204
        return floor.Read(sid, stream, after, params)

    def starter(conn: floor.Conn, request: floor.Request, read: floor.Read) -> None:
        metrics.add(m.REQUESTS)
        if read.after >= 0:
            metrics.add(m.RESUMES)
        framing = stock.EventStream(ctx.cfg.retry_ms, stock.wants_ping(read.params.get("ping")))

        def emit(frames: list[bytes]) -> None:
            conn.write(floor.chunk(b"".join(frames)))

        def on_end(drained: bool) -> None:
            conn.write(floor.LAST_CHUNK)
            conn.done(request.keep_alive and not drained)

        conn.write(HEAD)
        assert read.feed is not None
        conn.flow = Flow(ctx, conn.server.wheel, read.feed, read.after, framing, emit, on_end,
                         idle_s=ctx.cfg.heartbeat)  # fmt: skip
        conn.flow.start()

    return floor.read_route(ctx, opener, starter)


def settings(cfg: ServerConfig) -> dict[str, Any]:
    effective = {"server": "asyncio.Protocol + httptools on uvloop (servers/http/floor.py)",
                 "loop": LOOP, "pacing": "one timer wheel per process (servers/pacing/wheel.py)",
                 "sse": "one chunk per connection per tick", "backlog": cfg.backlog}  # fmt: skip
    return {"effective": effective, "stack_defaults": stock.settings(cfg)["stack_defaults"]}


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    app = build_app(ctx, stock.routes(ctx), stock.PATHS)
    server = floor.Server(ctx, route(ctx), app, post=prompt_floor.route(ctx))
    await floor.serve(server, socks, on_ready)
