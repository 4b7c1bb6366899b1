"""HTTP long polling on FastAPI: ``GET /v1/streams/{id}/poll?after=K&timeout=S``.

Wire (docs/protocol.md): ``200 {"tokens": [payload, ...], "end": bool}`` as soon as at least one
token after K is due (all due ones, in order, at most 1000), or after ``timeout`` seconds
(default 25, at most 60) with an empty list. ``end`` is true once the last token is in this
answer or was before it. There is no connection to resume: the cursor travels with every poll,
so polls are counted in ``requests_total`` and not as resumes. A poll that must wait watches for
the client leaving, so an abandoned poll ends at once instead of at its timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from servers.base import Context, ServerConfig
from servers.http import openapi
from servers.http.app import build_app, run_uvicorn, uvicorn_settings
from servers.pacing.loop import Pacer
from servers.process import metrics as m
from servers.process.listen import listen_sockets
from servers.tokens.core import MAX_BATCH, Stream, parse_after, parse_timeout

NAME = "poll"
_END = b'{"tokens":[],"end":true}'
EMPTY = b'{"tokens":[],"end":false}'


class Answers:
    """Long-poll framing: the first frame is the whole answer (a batch, the end, or empty)."""

    def start(self) -> None:
        return None

    def tokens(self, stream: Stream, seqs: range) -> bytes:
        end = b"false"
        if seqs.stop >= stream.tokens:
            end = b'true,"stopped":%d' % stream.stopped_ns if stream.stopped_ns else b"true"
        body = ",".join([stream.payload(s) for s in seqs]).encode()
        return b'{"tokens":[' + body + b'],"end":' + end + b"}"

    def heartbeat(self) -> bytes:
        return EMPTY  # the poll's timeout passed with nothing due

    def end(self, stream: Stream) -> bytes:
        if stream.stopped_ns:  # the user stopped it (docs/protocol.md, "Stop")
            return b'{"tokens":[],"end":true,"stopped":%d}' % stream.stopped_ns
        return _END


async def _watch_disconnect(request: Request, poll: asyncio.Task[Any]) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    poll.cancel()


def routes(ctx: Context) -> list[BaseRoute]:
    metrics = ctx.metrics

    async def poll(request: Request) -> Response:
        metrics.add(m.REQUESTS)
        sid = request.path_params["sid"]
        stream = ctx.open(sid)
        query = request.query_params
        after = parse_after(query.get("after"), stream)
        timeout = parse_timeout(query.get("timeout"))
        feed = await ctx.feed(sid, stream, after)
        me = asyncio.current_task()
        assert me is not None
        watcher: list[asyncio.Future[None]] = []

        def watch() -> None:  # only a poll that must wait watches for the client leaving
            watcher.append(asyncio.ensure_future(_watch_disconnect(request, me)))

        pacer = Pacer(ctx, feed, after, Answers(), MAX_BATCH, idle_s=timeout, on_wait=watch)
        try:
            async with aclosing(pacer.frames()) as frames:
                async for body in frames:
                    return Response(body, media_type="application/json")
            # Drained: answer, and close the connection so the next poll goes elsewhere.
            return Response(EMPTY, media_type="application/json", headers={"Connection": "close"})
        except asyncio.CancelledError:
            if not watcher or not watcher[0].done():
                raise
            return Response(b"", status_code=499)  # nobody is there to read it
        finally:
            if watcher:
                watcher[0].cancel()

    return [Route("/v1/streams/{sid}/poll", poll, methods=["GET"])]


PATHS: dict[str, Any] = {
    "/v1/streams/{sid}/poll": {
        "get": {
            "summary": "Long-poll a stream: every due token after `after`, or an empty answer",
            "parameters": [
                openapi.stream_id(),
                {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": -1}},
                {
                    "name": "timeout",
                    "in": "query",
                    "schema": {"type": "number", "minimum": 0, "maximum": 60},
                },
            ],
            "responses": {
                "200": {
                    "description": "an answer",
                    "content": {"application/json": {"schema": openapi.POLL_ANSWER}},
                },
                "499": {"description": "the client left while its poll waited (never read)"},
                **openapi.READ_ERRORS,
            },
        }
    }
}


def settings(cfg: ServerConfig) -> dict[str, Any]:
    return uvicorn_settings(cfg, {"poll_timeout_default_s": 25, "poll_max_batch": 1000})


def app(ctx: Context) -> FastAPI:
    """The stock app, whatever server runs it (uvicorn here; granian: servers/http/granian.py)."""
    return build_app(ctx, routes(ctx), PATHS)


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    await run_uvicorn(ctx, app(ctx), socks, on_ready)
