"""The floor stack's prompt POST (servers/http/prompt.py): the common case is answered on the
connection, byte for byte as the stock app's body; everything else is declined untouched, for
the stock app to answer. In process, with a recording connection (no sockets, no timing)."""

from __future__ import annotations

import json

import pytest
from fastapi.responses import JSONResponse

from servers.base import Context, ServerConfig
from servers.http import floor
from servers.http import prompt as prompt_floor
from servers.process import metrics as m
from servers.tokens.core import ContractError, ErrorKind


class Conn:
    """What the route may touch on a ``floor.Conn``."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.kept: bool | None = None

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def done(self, keep_alive: bool) -> None:
        self.kept = keep_alive


def post(body: bytes, path: str = "/v1/streams", keep: bool = True, large: bool = False):
    return floor.Request("POST", path, b"", [], body, keep, too_large=large)


@pytest.mark.parametrize("keep", [True, False])
def test_a_prompt_is_created_and_answered_as_the_stock_app_would(keep: bool) -> None:
    ctx = Context(ServerConfig("sse"))
    conn = Conn()
    assert prompt_floor.route(ctx)(conn, post(b'{"prompt":"hi","tokens":7,"rate":20}', keep=keep))
    head, _, body = b"".join(conn.out).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 201 Created"
    assert b"content-type: application/json" in lines
    assert f"content-length: {len(body)}".encode() in lines
    assert (b"connection: close" in lines) is not keep and conn.kept is keep
    doc = json.loads(body)
    assert body == JSONResponse(doc, status_code=201).body  # the stock app's rendering
    assert (doc["tokens"], doc["rate"]) == (7, 20.0)
    stream = ctx.open(doc["id"])  # a real stream, readable by every route
    assert (stream.tokens, stream.created_ns) == (7, doc["created_ns"])
    assert ctx.metrics.get(m.REQUESTS) == ctx.metrics.get(m.CREATED) == 1


@pytest.mark.parametrize(
    ("body", "path", "large"),
    [
        (b"{", "/v1/streams", False),  # not JSON: 422
        (b'{"rate": NaN}', "/v1/streams", False),  # NaN is not JSON: 422
        (b'{"tokens": 0}', "/v1/streams", False),  # out of range: 422
        (b"[]", "/v1/streams", False),  # not an object: 422
        (b"[" * 3000, "/v1/streams", False),  # nested past json's depth: 422
        (b"{}", "/v1/streams", True),  # over 64 KiB: 413
        (b"{}", "/v1/streams/abc/stop", False),  # another route
    ],
)
def test_anything_else_is_declined_untouched(body: bytes, path: str, large: bool) -> None:
    ctx = Context(ServerConfig("sse"))
    conn = Conn()
    assert prompt_floor.route(ctx)(conn, post(body, path, large=large)) is False
    assert conn.out == [] and conn.kept is None
    assert ctx.metrics.get(m.REQUESTS) == ctx.metrics.get(m.CREATED) == 0


def test_the_model_away_is_left_to_the_stock_app(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = Context(ServerConfig("sse"))

    async def away(sid: str, stream: object) -> None:
        raise ContractError(ErrorKind.UNAVAILABLE, "the model is unreachable; retry")

    monkeypatch.setattr(ctx.source, "create", away)
    conn = Conn()
    assert prompt_floor.route(ctx)(conn, post(b"{}")) is False
    assert conn.out == [] and ctx.metrics.get(m.CREATED) == 0
