"""The load generator's gRPC client: ``StreamTokens`` on clients/h2conn.py, not grpcio.

grpcio's client cost the load generator about as much CPU per token as the gRPC server, so every
gRPC knee was a lower bound (``LIMITED BY LOADGEN``). This reader sends the same RPCs over its
own HTTP/2 connection and, when the load generator gives it a tap, lets the compiled path
(clients/_fastpath.c, mode ``grpc``) read the DATA frames: frames -> messages -> Token -> the
accounting, with no Python frame per token.

Behaviour is clients/rpc.py's, so results compare: NOT_FOUND and INVALID_ARGUMENT fail for
good (``StreamError``), every other status is resumed from the cursor with ``after``, a silent
connection is found within two heartbeats, one connection per user (the loader's session),
streams one after another on it. tests/test_h2grpc.py holds both paths to grpcio's client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf.message import DecodeError

from clients.base import ClientOptions, Reader, Retry, StreamError, within
from clients.grpccall import Call
from clients.h2conn import Session
from clients.http import open_connection, split_url
from proto import tokens_pb2 as pb

FINAL = ("NOT_FOUND", "INVALID_ARGUMENT")
SERVICE = "/tokenbench.v1.TokenStream/"
DEFAULT_WINDOW = 4 << 20  # grpcio's per-stream lookahead


class Channel:
    """A user's connection, opened on first use and again after it is lost or drained."""

    def __init__(self, url: str, options: ClientOptions) -> None:
        self.host, self.port, _ = split_url(url)
        self.options = options
        self.conn: Session | None = None

    async def connect(self, timeout: float | None = None) -> Session:
        if self.conn is not None and not self.conn.closing:
            return self.conn
        if self.conn is not None and not self.conn.calls:
            self.conn.abort()  # drained (GOAWAY) and idle
        o = self.options
        authority = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        window = o.grpc_window or DEFAULT_WINDOW
        self.conn = await open_connection(
            self.host, self.port, timeout or o.connect_timeout, o.local_addr, o.rst_close,
            protocol=lambda loop: Session(loop, authority, window, o.heartbeat),
        )  # fmt: skip
        return self.conn

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.abort()
            self.conn = None


def _status(code: str, message: str) -> Exception:
    if code in FINAL:
        return StreamError(code, message)
    return Retry(f"grpc {code}")


class H2GrpcReader(Reader):
    """Reads on ``self.session`` (a user's ``Channel``) if one is given, else on its own."""

    transport = "grpc"
    session: Channel | None = None

    @classmethod
    def open_session(cls, url: str, options: ClientOptions) -> Channel:
        return Channel(url, options)

    @classmethod
    async def close_session(cls, session: Channel) -> None:
        await session.close()

    def _on_message(self, call: Call, conn: Session, fast: bool) -> Any:
        def on_message(flag: int, message: bytes) -> None:
            if flag != 0:  # compressed, though we never asked for it
                return conn.end(call, "INTERNAL", "compressed message without grpc-encoding")
            try:
                token = pb.Token.FromString(message)
            except DecodeError:
                return conn.end(call, "INTERNAL", "could not parse a Token")
            (self.tap_deliver if fast else self.deliver)(token.seq, token.t, token.text)

        return on_message

    async def _attempt(self, after: int) -> bool:
        assert self.session is not None
        conn = await self.session.connect()
        request = pb.StreamRequest(id=self.stream_id)
        if after >= 0:
            request.after = after
        cookie = (("cookie", self.cookie),) if self.cookie else ()
        call = conn.start(SERVICE + "StreamTokens", request.SerializeToString(), cookie)
        call.on_message = self._on_message(call, conn, False)
        self.stats.requests += 1
        before = conn.rx_state()[1]
        fast = False
        try:
            await call.head
            if not call.done.done():
                self.connected()
                if self.tap is not None:  # the compiled path reads the DATA from here on
                    self.tap_begin()
                    conn.go_fast(call, self.tap, self._on_message(call, conn, True))
                    fast = True
            code, message = await call.done
        finally:
            if fast:
                conn.end_fast()
                self.tap_end(conn)
            if not call.done.done():
                conn.end(call, "CANCELLED", "the reader stopped")  # RST_STREAM CANCEL
            self.stats.bytes_received += conn.rx_state()[1] - before
            # its closure holds the call: a cycle that a frozen collector would keep for good
            call.on_message = lambda flag, message: None
        if code == "OK":
            return True
        raise _status(code, message)


async def create_stream(
    url: str,
    tokens: int | None = None,
    rate: float | None = None,
    prompt: str | None = None,
    timeout: float = 10.0,
    local_addr: str | None = None,
    rst_close: bool = False,
    session: Channel | None = None,
) -> dict[str, Any]:
    """``CreateStream`` on ``session`` (a ``Channel``) if given: clients/rpc.py's answer."""
    own = session is None
    channel = session or Channel(url, ClientOptions(local_addr=local_addr, rst_close=rst_close))
    request = pb.CreateStreamRequest(prompt=prompt or "", tokens=tokens or 0, rate=rate or 0.0)
    replies: list[bytes] = []
    try:
        conn = await channel.connect(timeout)
        call = conn.start(SERVICE + "CreateStream", request.SerializeToString())
        call.on_message = lambda flag, message: replies.append(message)
        try:
            code, message = await within(asyncio.shield(call.done), timeout)
        except TimeoutError:
            conn.end(call, "DEADLINE_EXCEEDED", "")
            raise Retry("grpc DEADLINE_EXCEEDED") from None
    finally:
        if own:
            await channel.close()
    if code != "OK":
        if code in FINAL:
            raise StreamError(code, message)
        raise Retry(f"grpc {code}" + (f": {message[:200]}" if message else ""))
    try:
        reply = pb.CreateStreamResponse.FromString(replies[0])
    except (IndexError, DecodeError):
        raise Retry("grpc INTERNAL: no CreateStreamResponse") from None
    doc = {"id": reply.id, "tokens": reply.tokens, "rate": reply.rate,
           "created_ns": reply.created_ns}  # fmt: skip
    if cookie := call.headers.get("set-cookie"):
        doc["cookie"] = cookie.split(";", 1)[0]
    return doc
