"""The prompt POST on the floor stack: ``POST /v1/streams`` answered on the connection, with no
task and no ASGI (tokenbench issue 26: users arrive and churn at thousands a second).

Rules of this module:
- It answers only the common case, exactly as the stock app would (servers/http/app.py's
  ``create_stream``: 201, ``application/json``, the same body). Anything else it declines,
  before any side effect, and the stock app answers: a body too large or not JSON, a bad field
  (``validate_create``), the model away (503), another path.
- A source that may wait (a shared log in Redis) makes the route awaitable, as the read's.
"""

from __future__ import annotations

import json

from servers.base import Context
from servers.http import floor
from servers.http.app import decode_json
from servers.process import metrics as m
from servers.tokens.core import ContractError, validate_create

PATH = "/v1/streams"


def route(ctx: Context) -> floor.Route:
    metrics = ctx.metrics

    def parsed(request: floor.Request) -> tuple[int, float] | None:
        if request.path != PATH or request.too_large:
            return None
        try:
            return validate_create(decode_json(request.body))
        except ContractError:
            return None

    def answer(conn: floor.Conn, request: floor.Request, sid: str, created_ns: int,
               tokens: int, rate: float) -> None:  # fmt: skip
        metrics.add(m.REQUESTS)
        metrics.add(m.CREATED)
        body = json.dumps(
            {"id": sid, "tokens": tokens, "rate": rate, "created_ns": created_ns},
            ensure_ascii=False, separators=(",", ":"),
        ).encode()  # fmt: skip
        headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
        conn.write(floor.head(201, headers, close=not request.keep_alive) + body)
        conn.done(request.keep_alive)

    def create(conn: floor.Conn, request: floor.Request) -> bool:
        got = parsed(request)
        if got is None:
            return False
        try:
            sid, stream = floor.now(ctx.create(*got))
        except ContractError:
            return False
        answer(conn, request, sid, stream.created_ns, *got)
        return True

    async def create_waiting(conn: floor.Conn, request: floor.Request) -> bool:
        got = parsed(request)
        if got is None:
            return False
        try:
            sid, stream = await ctx.create(*got)
        except ContractError:
            return False
        if conn.transport is not None:  # else the client left while the answer was started
            answer(conn, request, sid, stream.created_ns, *got)
        return True

    return create_waiting if floor.waits(ctx) else create  # type: ignore[return-value]
