"""Long polling, floor stack: the poll on ``asyncio.Protocol`` (servers/http/floor.py), on the
wheel.

Wire: the same as servers/poll/stock.py (docs/protocol.md), framed by the same ``Answers``: a poll
is
a flow whose first frame is its whole answer (a batch, the end, or empty at the timeout), sent
with a Content-Length in one write with its head; the flow then ends and the connection takes
the next poll. A poll that waits costs no task: a client leaving closes its flow. Drained
(SIGTERM), a waiting poll gets the empty answer and ``connection: close``, so the next poll goes
to a live server. Errors are the stock app's answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from servers.base import Context, ServerConfig
from servers.http import floor, lean
from servers.http import prompt as prompt_floor
from servers.http.app import build_app
from servers.pacing.wheel import Flow
from servers.poll import stock
from servers.process import metrics as m
from servers.process.listen import listen_sockets
from servers.tokens.core import MAX_BATCH, ContractError, parse_after, parse_timeout

NAME = "poll"
LOOP = "uvloop"
JSON = (b"content-type", b"application/json")


def answer(body: bytes, close: bool = False) -> bytes:
    return floor.head(200, [JSON, (b"content-length", b"%d" % len(body))], close) + body


def route(ctx: Context) -> floor.Route:
    metrics = ctx.metrics

    def opener(request: floor.Request) -> floor.Read | None:
        sid = lean.stream_id(request.path, "poll")
        if sid is None:
            return None
        params = lean.params(request.query)
        try:
            stream = ctx.open(sid)
            after = parse_after(params.get("after"), stream)
            parse_timeout(params.get("timeout"))
        except ContractError:
            return None
        return floor.Read(sid, stream, after, params)

    def starter(conn: floor.Conn, request: floor.Request, read: floor.Read) -> None:
        metrics.add(m.REQUESTS)
        flow: Flow[bytes]

        def emit(frames: list[bytes]) -> None:
            flow.close()  # one answer per poll
            conn.write(answer(frames[0], close=not request.keep_alive))
            conn.done(request.keep_alive)

        def on_end(drained: bool) -> None:  # drained while waiting
            conn.write(answer(stock.EMPTY, close=True))
            conn.done(False)

        assert read.feed is not None
        timeout = parse_timeout(read.params.get("timeout"))
        flow = Flow(ctx, conn.server.wheel, read.feed, read.after, stock.Answers(), emit, on_end,
                    limit=MAX_BATCH, idle_s=timeout)  # fmt: skip
        conn.flow = flow
        flow.start()

    return floor.read_route(ctx, opener, starter)


def settings(cfg: ServerConfig) -> dict[str, Any]:
    effective = {"server": "asyncio.Protocol + httptools on uvloop (servers/http/floor.py)",
                 "loop": LOOP, "pacing": "one timer wheel per process (servers/pacing/wheel.py)",
                 "poll_timeout_default_s": 25, "poll_max_batch": MAX_BATCH,
                 "backlog": cfg.backlog}  # fmt: skip
    return {"effective": effective, "stack_defaults": stock.settings(cfg)["stack_defaults"]}


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    app = build_app(ctx, stock.routes(ctx), stock.PATHS)
    server = floor.Server(ctx, route(ctx), app, post=prompt_floor.route(ctx))
    await floor.serve(server, socks, on_ready)
