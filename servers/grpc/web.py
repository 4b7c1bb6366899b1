"""gRPC-Web for browsers, served by the gRPC server's own process (no Envoy): ``--web-port``.

Wire: the gRPC-Web protocol (grpc/grpc doc/PROTOCOL-WEB.md) over HTTP/1.1 or h2, for the same
``TokenStream`` service (proto/tokens.proto) and the same streams as native gRPC:
- ``POST /tokenbench.v1.TokenStream/{CreateStream,StreamTokens,Time}`` with content type
  ``application/grpc-web`` or ``application/grpc-web+proto`` (binary), or
  ``application/grpc-web-text`` (base64, what a browser without binary streaming may use);
- the request is one length-prefixed message; the answer is 200, one data frame (flag 0x00)
  per message, then one trailer frame (flag 0x80) carrying ``grpc-status`` / ``grpc-message`` as
  HTTP/1 header lines. An error before the first message is "trailers-only": the status goes in
  the response headers and the body is empty.
- Server streaming only: gRPC-Web has no client or bidirectional streaming (PROTOCOL-WEB.md).
Errors use the codes of servers/grpc/stock.py; a drain on SIGTERM ends a stream with UNAVAILABLE.
Everything else (pages, health, the JSON prompt POST) is the shared HTTP app behind it.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

import grpc
from google.protobuf.message import DecodeError

from proto import tokens_pb2 as pb
from servers.base import Context
from servers.grpc import stock as rpc
from servers.grpc.wire import stopped_trailer
from servers.http import lean
from servers.http.app import WebServer, build_app, start_uvicorn
from servers.pacing.loop import Pacer
from servers.process import metrics as m
from servers.process.listen import listen_sockets
from servers.tokens.core import MAX_BODY_BYTES, ContractError, parse_after

PREFIX = f"/{rpc.SERVICE}/"
BINARY = (b"application/grpc-web", b"application/grpc-web+proto")
TEXT = (b"application/grpc-web-text", b"application/grpc-web-text+proto")


class RpcError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def frame(message: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(message)) + message


def trailer(code: grpc.StatusCode, message: str = "", extra: Any = ()) -> bytes:
    lines = f"grpc-status: {code.value[0]}\r\ngrpc-message: {quote(message)}\r\n"
    lines += "".join(f"{k}: {v}\r\n" for k, v in extra)
    return frame(lines.encode(), 0x80)


async def _read_request(receive: lean.Receive, text: bool) -> bytes:
    """The request body; over 64 KiB of message (a third more in base64) is refused while
    reading, as the HTTP servers do (docs/protocol.md)."""
    limit = 5 + MAX_BODY_BYTES
    limit = (limit + 2) // 3 * 4 if text else limit
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RpcError(grpc.StatusCode.CANCELLED, "client left")
        body += message.get("body", b"")
        if len(body) > limit:
            raise RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "request is over 64 KiB")
        if not message.get("more_body"):
            return bytes(body)


def _unframe(body: bytes) -> bytes:
    """The one message of a unary or server-streaming request (flag 0, not compressed)."""
    if len(body) < 5:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "request is not one gRPC-Web frame")
    flag, size = struct.unpack(">BI", body[:5])
    if flag != 0 or len(body) != 5 + size:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "request is not one gRPC-Web frame")
    return body[5:]


class Call:
    """One gRPC-Web call: the response head once, then frames (base64 in text mode)."""

    def __init__(self, send: lean.Send, text: bool, ctype: bytes) -> None:
        self.send, self.text, self.ctype, self.started = send, text, ctype, False

    def _head(self, extra: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        headers = [(b"content-type", self.ctype), (b"cache-control", b"no-store"), *extra]
        return {"type": "http.response.start", "status": 200, "headers": headers}

    async def write(self, data: bytes, more: bool = True) -> None:
        if not self.started:
            self.started = True
            await self.send(self._head([]))
        body = base64.b64encode(data) if self.text else data
        await self.send({"type": "http.response.body", "body": body, "more_body": more})

    async def fail(self, code: grpc.StatusCode, message: str) -> None:
        if self.started:  # mid-stream: a trailer frame
            await self.write(trailer(code, message), more=False)
            return
        status = [(b"grpc-status", str(code.value[0]).encode()),
                  (b"grpc-message", quote(message).encode())]  # fmt: skip
        await self.send(self._head(status))  # trailers-only
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


def handler(ctx: Context) -> Callable[[lean.Scope, lean.Receive, lean.Send], Any]:
    metrics = ctx.metrics

    async def stream_tokens(request: pb.StreamRequest, call: Call, receive: lean.Receive) -> None:
        metrics.add(m.REQUESTS)
        stream = ctx.open(request.id)
        after = parse_after(request.after if request.HasField("after") else None, stream)
        feed = await ctx.feed(request.id, stream, after)
        if after >= 0:
            metrics.add(m.RESUMES)
        watcher = lean.watch(receive, "http.disconnect")
        pacer = Pacer(ctx, feed, after, rpc.Messages())
        try:
            await call.write(b"")  # the head at once, as grpc.aio sends its headers
            async with aclosing(pacer.frames()) as frames:
                async for messages in frames:
                    await call.write(b"".join([frame(t.SerializeToString()) for t in messages]))
            if pacer.drained:
                raise RpcError(grpc.StatusCode.UNAVAILABLE, "server shutting down; resume")
            done = trailer(grpc.StatusCode.OK, extra=stopped_trailer(pacer.stream))
            await call.write(done, more=False)
        except asyncio.CancelledError:
            if not watcher.done():
                raise
        except OSError:
            pass  # the client left mid-write
        finally:
            watcher.cancel()

    async def unary(method: str, payload: bytes) -> bytes:
        if method == "CreateStream":
            created = await rpc.create_stream(ctx, pb.CreateStreamRequest.FromString(payload))
            return created.SerializeToString()
        if method == "StopStream":
            await rpc.stop_stream(ctx, pb.StopRequest.FromString(payload))
            return b""
        return pb.TimeResponse(t_ns=time.time_ns()).SerializeToString()

    async def app(scope: lean.Scope, receive: lean.Receive, send: lean.Send) -> None:
        method = scope["path"][len(PREFIX) :]
        ctype = (lean.header(scope, b"content-type") or "").split(";")[0].strip().encode()
        text = ctype in TEXT
        call = Call(send, text, TEXT[0] if text else BINARY[1])
        try:
            if scope["method"] != "POST" or (ctype not in BINARY and not text):
                why = "gRPC-Web needs POST with content-type application/grpc-web"
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, why)
            body = await _read_request(receive, text)
            payload = _unframe(base64.b64decode(body) if text else body)
            if method == "StreamTokens":
                await stream_tokens(pb.StreamRequest.FromString(payload), call, receive)
            elif method in ("CreateStream", "StopStream", "Time"):
                answer = await unary(method, payload)
                await call.write(frame(answer))
                await call.write(trailer(grpc.StatusCode.OK), more=False)
            else:
                raise RpcError(grpc.StatusCode.UNIMPLEMENTED, f"no method {method}")
        except ContractError as exc:
            metrics.add(m.ERRORS)
            await call.fail(rpc.GRPC_STATUS[exc.kind], exc.message)
        except RpcError as exc:
            if exc.code != grpc.StatusCode.CANCELLED:
                metrics.add(m.ERRORS)
                await call.fail(exc.code, exc.message)
        except (DecodeError, ValueError):  # a malformed message, or base64 (binascii.Error)
            metrics.add(m.ERRORS)
            await call.fail(grpc.StatusCode.INVALID_ARGUMENT, "request does not decode")

    return app


def front(ctx: Context) -> lean.ASGIApp:
    """gRPC-Web at ``/tokenbench.v1.TokenStream/*``, the shared HTTP app for the rest."""
    shared, grpc_web = build_app(ctx, []), handler(ctx)

    async def app(scope: lean.Scope, receive: lean.Receive, send: lean.Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await grpc_web(scope, receive, send)
        else:
            await shared(scope, receive, send)

    return app


async def start(ctx: Context) -> WebServer:
    """Listen on ``ctx.cfg.web_port`` (SO_REUSEPORT, like the gRPC port) and serve there."""
    assert ctx.cfg.web_port is not None
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.web_port, ctx.cfg.backlog)
    return await start_uvicorn(ctx, front(ctx), socks)
