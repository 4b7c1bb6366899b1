"""The ``lean`` stacks' common part: a raw ASGI front for the read routes, the stock app behind.

Rules of this module:
- A lean server is the stock FastAPI app (every route, every error, the OpenAPI document) with a
  raw ASGI handler in front of its one hot route: the stream read, where every token of every
  connection passes. So the contract is the stock one by construction, and only the hot path
  differs: no routing, no request objects, no response classes, one ``send`` per frame.
- A lean handler answers only the common case (a valid read). Anything else (a bad id, a bad
  cursor, a resume from the last token) it hands to the stock app, which answers as always.
- Client departure is watched by one task per connection (ASGI ``http.disconnect`` or
  ``websocket.disconnect``), which cancels the handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# A hot-route handler: (scope, receive, send, stream id) -> handled (False: the stock app answers)
Handler = Callable[[Scope, Receive, Send, str], Awaitable[bool]]

PREFIX = "/v1/streams/"


def stream_id(path: str, suffix: str) -> str | None:
    """``sid`` of ``/v1/streams/{sid}/{suffix}``, or None."""
    if not path.startswith(PREFIX) or not path.endswith("/" + suffix):
        return None
    sid = path[len(PREFIX) : -len(suffix) - 1]
    return sid if sid and "/" not in sid else None


def params(raw: bytes) -> dict[str, str]:
    """A query string's parameters (the first value of each), as Starlette reads them."""
    out: dict[str, str] = {}
    for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        out.setdefault(k, v)
    return out


def query(scope: Scope) -> dict[str, str]:
    """An ASGI request's query parameters (``params``)."""
    return params(scope.get("query_string", b""))


def header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


def front(stock: ASGIApp, kind: str, suffix: str, handler: Handler) -> ASGIApp:
    """An ASGI app: ``handler`` for ``GET /v1/streams/{sid}/{suffix}`` (scope type ``kind``),
    the stock app for everything else and for what ``handler`` declines."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == kind and (kind == "websocket" or scope["method"] == "GET"):
            sid = stream_id(scope["path"], suffix)
            if sid is not None and await handler(scope, receive, send, sid):
                return
        await stock(scope, receive, send)

    return app


def watch(receive: Receive, leaving: str) -> asyncio.Future[None]:
    """Cancel the current task when the client leaves (``leaving``: the ASGI message type)."""
    me = asyncio.current_task()
    assert me is not None

    async def watcher() -> None:
        while (await receive())["type"] != leaving:
            pass
        me.cancel()

    return asyncio.ensure_future(watcher())
