"""gRPC, lean stack: the same RPCs on a small HTTP/2 server of our own (h2 on uvloop).

Wire: as servers/grpc/stock.py (proto/tokens.proto, gRPC PROTOCOL-HTTP2.md, docs/protocol.md); the
contract and resilience suites hold both stacks to it with grpcio's client.

Rules of this module:
- h2 (RFC 9113) keeps every connection's state: preface, SETTINGS, HPACK, PING, flow control,
  RST_STREAM, GOAWAY. Requests, unary answers, headers and trailers go through it.
- Token messages do not: each batch the pacing loop yields is framed by servers/grpc/wire.py
  (one DATA frame per length-prefixed ``Token``) and written at once, after h2's flow-control
  windows are charged for it, so h2's books stay right. With ``--flush-ms`` a write carries
  several messages, which grpc.aio cannot do. A batch waits for window (RFC 9113 section
  6.9) and for the socket's write buffer to drain (a stalled reader pins at most its window).
- Errors are trailers-only answers with servers/grpc/stock.py's status codes. Keepalive: a PING
  every
  ``heartbeat`` seconds; a connection that answers none by the next one is closed. SIGTERM:
  health turns NOT_SERVING, open streams end UNAVAILABLE (drain), then GOAWAY.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from contextlib import aclosing, suppress
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

from proto import tokens_pb2 as pb
from servers.base import Context, ServerConfig
from servers.grpc import stock
from servers.grpc.h2settings import compact
from servers.grpc.wire import (
    EXHAUSTED,
    INTERNAL,
    NOT_FOUND,
    OK,
    UNAVAILABLE,
    UNIMPLEMENTED,
    Messages,
    status,
    stopped_trailer,
)
from servers.pacing.loop import Pacer
from servers.pacing.wheel import get_wheel
from servers.process import metrics as m
from servers.process.listen import listen_sockets
from servers.source.answers import Answer
from servers.tokens.core import ContractError, Stream

NAME = "grpc"
LOOP = "uvloop"  # the worker's event loop (grpc.aio's stock stack needs asyncio's)
SERVICE = "/tokenbench.v1.TokenStream/"
MAX_REQUEST = 4 << 20  # grpcio's default max_receive_message_length
HEALTH = "/grpc.health.v1.Health/Check"


class Conn(asyncio.Protocol):
    """One client connection: its streams, its keepalive, its flow control."""

    def __init__(self, ctx: Context, live: set[Conn], serving: list[bool]) -> None:
        self.ctx, self.live, self.serving = ctx, live, serving
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config)
        compact(self.h2)  # h2's SETTINGS books in less memory (servers/grpc/h2settings.py)
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.window = asyncio.Event()  # set when a WINDOW_UPDATE or SETTINGS may have freed room
        self.writable: asyncio.Future[None] | None = None  # pending while the socket is full
        self.pinged = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.live.add(self)
        self.h2.initiate_connection()
        self.flush()
        asyncio.get_running_loop().call_later(self.ctx.cfg.heartbeat, self._keepalive)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()  # h2's GOAWAY
            self.abort()
            return
        for ev in events:
            self._event(ev)
        self.flush()

    def busy(self) -> bool:
        """Something still answering on it (SIGTERM waits for that, up to ``grace``)."""
        return bool(self.tasks)

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        for task in self.tasks.values():
            task.cancel()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def _event(self, ev: Any) -> None:
        sid = getattr(ev, "stream_id", 0)
        if isinstance(ev, h2.events.RequestReceived):
            self.requests[sid] = (dict(ev.headers), bytearray())
        elif isinstance(ev, h2.events.DataReceived):
            self.h2.acknowledge_received_data(ev.flow_controlled_length, sid)
            if sid in self.requests:
                body = self.requests[sid][1]
                body += ev.data
                if len(body) > MAX_REQUEST + 5:
                    self.requests.pop(sid)
                    self.trailers_only(sid, EXHAUSTED, "request larger than 4 MiB")
        elif isinstance(ev, h2.events.StreamEnded) and sid in self.requests:
            headers, body = self.requests.pop(sid)
            self.tasks[sid] = asyncio.ensure_future(self._guarded(sid, headers, bytes(body)))
            self.tasks[sid].add_done_callback(lambda _, s=sid: self.tasks.pop(s, None))
        elif isinstance(ev, h2.events.StreamReset):
            self.requests.pop(sid, None)
            if sid in self.tasks:
                self.tasks[sid].cancel()
        elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self.window.set()
        elif isinstance(ev, h2.events.PingAckReceived):
            self.pinged = False
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.abort()

    # writing
    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def trailers_only(self, sid: int, code: int, message: str) -> None:
        headers = [(":status", "200"), ("content-type", "application/grpc")]
        with suppress(h2.exceptions.H2Error):  # the client may have reset it already
            self.h2.send_headers(sid, headers + status(code, message), end_stream=True)
        self.flush()

    def unary(self, sid: int, message: bytes) -> None:
        self.h2.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        self.h2.send_data(sid, b"\0" + len(message).to_bytes(4, "big") + message)
        self.h2.send_headers(sid, status(OK), end_stream=True)
        self.flush()

    async def send_tokens(self, sid: int, frames: bytes, payload: int) -> None:
        """Write DATA frames carrying ``payload`` flow-controlled bytes, once window allows."""
        h2c = self.h2
        while h2c.local_flow_control_window(sid) < payload:
            self.window.clear()
            await self.window.wait()
        h2c.outbound_flow_control_window -= payload  # h2's books, as send_data would keep them
        h2c._get_stream_by_id(sid).outbound_flow_control_window -= payload
        if self.writable is not None:
            await self.writable
        assert self.transport is not None
        self.transport.write(frames)

    # the RPCs
    async def _guarded(self, sid: int, headers: dict[str, str], body: bytes) -> None:
        with suppress(h2.exceptions.H2Error):  # the client reset the stream, or the connection
            await self._call(sid, headers, body)  # is closing: nothing left to answer on

    async def _call(self, sid: int, headers: dict[str, str], body: bytes) -> None:
        path, ctx = headers.get(":path", ""), self.ctx
        if not headers.get("content-type", "").startswith("application/grpc"):
            self.h2.send_headers(sid, [(":status", "415")], end_stream=True)
            return self.flush()
        if len(body) < 5 or body[0] != 0 or int.from_bytes(body[1:5], "big") != len(body) - 5:
            return self.trailers_only(sid, INTERNAL, "one uncompressed request message expected")
        message = body[5:]
        try:
            if path == SERVICE + "StreamTokens":
                return await self._stream_tokens(sid, pb.StreamRequest.FromString(message))
            if path == SERVICE + "CreateStream":
                request = pb.CreateStreamRequest.FromString(message)
                reply = await stock.create_stream(ctx, request)
            elif path == SERVICE + "StopStream":
                reply = await stock.stop_stream(ctx, pb.StopRequest.FromString(message))
            elif path == SERVICE + "Time":
                reply = pb.TimeResponse(t_ns=time.time_ns())
            elif path == HEALTH:
                service = health_pb2.HealthCheckRequest.FromString(message).service
                if service not in ("", SERVICE.strip("/")):
                    return self.trailers_only(sid, NOT_FOUND, "")
                status = health_pb2.HealthCheckResponse
                reply = status(status=status.SERVING if self.serving[0] else status.NOT_SERVING)
            else:
                return self.trailers_only(sid, UNIMPLEMENTED, f"unknown method {path}")
        except DecodeError:
            return self.trailers_only(sid, INTERNAL, "could not parse the request")
        except ContractError as exc:
            ctx.metrics.add(m.ERRORS)
            return self.trailers_only(sid, stock.GRPC_STATUS[exc.kind].value[0], exc.message)
        self.unary(sid, reply.SerializeToString())

    async def open_stream(
        self, sid: int, request: pb.StreamRequest
    ) -> tuple[Stream | Answer, int] | None:
        """``StreamTokens``' opening: what to read after which seq, the response headers sent;
        None once a refusal went out as trailers-only."""
        try:
            feed, after = await stock.open_read(self.ctx, request)
        except ContractError as exc:
            self.ctx.metrics.add(m.ERRORS)
            self.trailers_only(sid, stock.GRPC_STATUS[exc.kind].value[0], exc.message)
            return None
        self.h2.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        self.flush()
        return feed, after

    async def _stream_tokens(self, sid: int, request: pb.StreamRequest) -> None:
        ctx = self.ctx
        if (opened := await self.open_stream(sid, request)) is None:
            return
        feed, after = opened
        pacer = Pacer(ctx, feed, after, Messages(sid))
        async with aclosing(pacer.frames()) as frames:
            async for data, payload in frames:
                if data:
                    await self.send_tokens(sid, data, payload)
        code, why = (UNAVAILABLE, "server shutting down; resume") if pacer.drained else (OK, "")
        extra = [] if pacer.drained else stopped_trailer(pacer.stream)
        self.h2.send_headers(sid, status(code, why) + extra, end_stream=True)
        self.flush()

    def _keepalive(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.pinged:  # the last PING went unanswered for a heartbeat
            return self.abort()
        self.pinged = True
        self.h2.ping(b"tbserver")
        self.flush()
        asyncio.get_running_loop().call_later(self.ctx.cfg.heartbeat, self._keepalive)


def settings(cfg: ServerConfig) -> dict[str, Any]:
    return {
        "effective": {"server": "h2 on uvloop (servers/grpc/lean.py)", "loop": LOOP,
                      "keepalive_s": cfg.heartbeat, "messages_per_write": "a batch"},
        "stack_defaults": stock.GRPC_DEFAULTS,
    }  # fmt: skip


async def serve(ctx: Context, on_ready: Callable[[], None], conn: type[Conn] = Conn) -> None:
    """Serve until SIGTERM (module rules); ``conn``: the connection class (servers/grpc/floor.py
    runs its streams on the wheel)."""
    cfg, loop = ctx.cfg, asyncio.get_running_loop()
    live: set[Conn] = set()
    serving = [True]
    socks = listen_sockets(cfg.hosts, cfg.port, cfg.backlog)
    servers = [await loop.create_server(lambda: conn(ctx, live, serving), sock=s,
                                        backlog=cfg.backlog) for s in socks]  # fmt: skip
    from servers.grpc import web as grpcweb

    web = await grpcweb.start(ctx) if cfg.web_port is not None else None
    if web is not None and not web.server.started:
        raise OSError(f"gRPC-Web could not listen on {cfg.web_port}")
    on_ready()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor sends SIGTERM
    await stop.wait()
    if web is not None:
        web.server.handle_exit(signal.SIGTERM, None)
    serving[0] = False
    for server in servers:
        server.close()
    ctx.hub.drain()  # every stream ends UNAVAILABLE; its client resumes elsewhere
    get_wheel().drain()
    deadline = loop.time() + cfg.grace
    while any(c.busy() for c in live) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for c in list(live):
        with suppress(h2.exceptions.H2Error):
            c.h2.close_connection()
        c.flush()
        if c.transport is not None:
            c.transport.close()
    if web is not None:
        web.server.should_exit = True
        await web.task
