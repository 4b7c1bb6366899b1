"""HTTP long polling on FastAPI: ``GET /v1/streams/{id}/poll?after=K&timeout=S``.

Wire (CONTRACT.md): ``200 {"tokens": [payload, ...], "end": bool}`` as soon as at least one token
after K is due (all due ones, in order, at most 1000), or after ``timeout`` seconds (default 25,
at most 60) with an empty list. ``end`` is true once the last token is in this answer or was
before it. There is no connection to resume: the cursor travels with every poll, so polls are
counted in ``requests_total`` and not as resumes. A poll that must wait watches for the client
leaving, so an abandoned poll ends at once instead of at its timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from servers import metrics as m
from servers.base import Context, ServerConfig
from servers.core import Cursor, Stream, parse_after, parse_timeout
from servers.http_app import build_app, run_uvicorn, uvicorn_settings
from servers.hub import Draining
from servers.listen import listen_sockets

NAME = "poll"
_END = b'{"tokens":[],"end":true}'
_EMPTY = b'{"tokens":[],"end":false}'


def _answer(stream: Stream, seqs: range) -> Response:
    end = b"true" if seqs.stop >= stream.tokens else b"false"
    body = ",".join([stream.payload(s) for s in seqs]).encode()
    return Response(b'{"tokens":[' + body + b'],"end":' + end + b"}", media_type="application/json")


async def _watch_disconnect(request: Request, poll: asyncio.Task[Any]) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    poll.cancel()


def routes(ctx: Context) -> list[BaseRoute]:
    metrics, hub = ctx.metrics, ctx.hub

    async def poll(request: Request) -> Response:
        metrics.add(m.REQUESTS)
        stream = ctx.open(request.path_params["sid"])
        query = request.query_params
        cursor = Cursor(stream, parse_after(query.get("after"), stream))
        deadline = time.time_ns() + int(parse_timeout(query.get("timeout")) * 1e9)
        if cursor.done:
            return Response(_END, media_type="application/json")
        seqs = cursor.take(time.time_ns())
        if seqs:
            metrics.add(m.TOKENS, len(seqs))
            return _answer(stream, seqs)
        me = asyncio.current_task()
        assert me is not None
        watcher = asyncio.ensure_future(_watch_disconnect(request, me))
        metrics.add(m.OPEN)
        try:
            while True:
                now = time.time_ns()
                seqs = cursor.take(now)
                if seqs:
                    metrics.add(m.TOKENS, len(seqs))
                    return _answer(stream, seqs)
                if now >= deadline:
                    return Response(_EMPTY, media_type="application/json")
                await hub.sleep_until(min(cursor.next_due_ns(), deadline))
        except Draining:  # answer, and close the connection so the next poll goes elsewhere
            return Response(_EMPTY, media_type="application/json", headers={"Connection": "close"})
        except asyncio.CancelledError:
            if not watcher.done():
                raise
            return Response(b"", status_code=499)  # nobody is there to read it
        finally:
            watcher.cancel()
            metrics.add(m.OPEN, -1)

    return [Route("/v1/streams/{sid}/poll", poll, methods=["GET"])]


def settings(cfg: ServerConfig) -> dict[str, Any]:
    return uvicorn_settings(cfg, {"poll_timeout_default_s": 25, "poll_max_batch": 1000})


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    await run_uvicorn(ctx, build_app(ctx, routes(ctx)), socks, on_ready)
