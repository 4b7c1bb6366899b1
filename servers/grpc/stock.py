"""gRPC server streaming on grpc.aio: ``TokenStream.StreamTokens`` (proto/tokens.proto).

Wire (docs/protocol.md): ``CreateStream`` is the prompt POST (a field left at 0 takes its default);
``StreamTokens`` yields one ``Token`` per token after ``after`` (unset means from seq 0), then ends
with status OK. Errors use the gRPC status codes (grpc/doc/statuscodes.md): NOT_FOUND for an
unknown or expired stream, INVALID_ARGUMENT for a bad field, UNAVAILABLE when the server drains
on SIGTERM (retryable: the client resumes elsewhere). ``grpc.health.v1.Health`` answers SERVING
for the empty service name. Keepalive: the server pings every ``heartbeat`` seconds and accepts
client pings at that rate (without ``max_ping_strikes`` a client's keepalive would get GOAWAY).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from proto import tokens_pb2 as pb
from proto import tokens_pb2_grpc as pb_grpc
from servers.base import Context, ServerConfig
from servers.grpc.wire import stopped_trailer
from servers.pacing.loop import Pacer
from servers.process import metrics as m
from servers.source.answers import Answer
from servers.tokens.core import (
    DEFAULT_RATE,
    DEFAULT_TOKENS,
    MAX_BODY_BYTES,
    ContractError,
    ErrorKind,
    Stream,
    parse_after,
    validate_create,
)

NAME = "grpc"
SERVICE = "tokenbench.v1.TokenStream"
GRPC_STATUS = {
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.GONE: grpc.StatusCode.NOT_FOUND,
    ErrorKind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}
GRPC_DEFAULTS = {
    "grpc.keepalive_time_ms": 7_200_000,
    "grpc.keepalive_timeout_ms": 20_000,
    "grpc.http2.max_ping_strikes": 2,
    "grpc.http2.min_recv_ping_interval_without_data_ms": 300_000,
    "grpc.http2.ping_timeout_ms": 60_000,
    "grpc.so_reuseport": 1,
    "loop": "asyncio",
}


def _options(cfg: ServerConfig) -> list[tuple[str, int]]:
    ping_ms = int(cfg.heartbeat * 1000)
    return [
        ("grpc.so_reuseport", 1),
        ("grpc.keepalive_time_ms", ping_ms),
        ("grpc.keepalive_timeout_ms", ping_ms),
        ("grpc.http2.ping_timeout_ms", ping_ms),  # else a BDP ping in flight waits 60 s
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", min(ping_ms, 5000)),
    ]


class Messages:
    """gRPC framing: one ``Token`` message per token; the RPC's status OK is the end."""

    def start(self) -> None:
        return None

    def tokens(self, stream: Stream, seqs: range) -> list[pb.Token]:
        due, text, token = stream.due_ns, stream.text, pb.Token
        return [token(seq=s, t=due(s), text=text(s)) for s in seqs]

    def heartbeat(self) -> list[pb.Token]:
        return []  # never asked for: keepalive is HTTP/2 PING (grpc.keepalive_time_ms)

    def end(self, stream: Stream) -> None:
        return None


async def create_stream(ctx: Context, request: pb.CreateStreamRequest) -> pb.CreateStreamResponse:
    """The prompt "POST" (a field left at 0 takes its default); ``ContractError`` if invalid.
    Shared with the gRPC-Web front (servers/grpc/web.py)."""
    ctx.metrics.add(m.REQUESTS)
    body: dict[str, Any] = {
        "tokens": request.tokens or DEFAULT_TOKENS,
        "rate": request.rate or DEFAULT_RATE,
    }
    if request.prompt:
        body["prompt"] = request.prompt
    if request.ByteSize() > MAX_BODY_BYTES:
        raise ContractError(ErrorKind.TOO_LARGE, "request is over 64 KiB", "body")
    tokens, rate = validate_create(body)
    sid, stream = await ctx.create(tokens, rate)
    ctx.metrics.add(m.CREATED)
    return pb.CreateStreamResponse(id=sid, tokens=tokens, rate=rate, created_ns=stream.created_ns)


async def stop_stream(ctx: Context, request: pb.StopRequest) -> pb.StopResponse:
    """The stop button (docs/protocol.md, "Stop"). Shared with rpc_lean and the gRPC-Web front.
    Cancelling a call is not a stop: RST_STREAM CANCEL does not tell a stop from a deadline or
    a client going away, and a reader that leaves must be able to resume."""
    ctx.metrics.add(m.REQUESTS)
    await ctx.stop(request.id)
    return pb.StopResponse()


async def open_read(ctx: Context, request: pb.StreamRequest) -> tuple[Stream | Answer, int]:
    """``StreamTokens``' opening, counted: what to read and after which seq; ``ContractError``
    (NOT_FOUND, INVALID_ARGUMENT) if nothing. Shared with servers/grpc/lean.py."""
    ctx.metrics.add(m.REQUESTS)
    stream = ctx.open(request.id)
    after = parse_after(request.after if request.HasField("after") else None, stream)
    feed = await ctx.feed(request.id, stream, after)
    if after >= 0:
        ctx.metrics.add(m.RESUMES)
    return feed, after


class TokenStreamServicer(pb_grpc.TokenStreamServicer):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def _fail(self, context: grpc.aio.ServicerContext, exc: ContractError) -> None:
        self.ctx.metrics.add(m.ERRORS)
        await context.abort(GRPC_STATUS[exc.kind], exc.message)

    async def CreateStream(
        self, request: pb.CreateStreamRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateStreamResponse:
        try:
            return await create_stream(self.ctx, request)
        except ContractError as exc:
            await self._fail(context, exc)
            raise  # not reached: abort raises

    async def Time(
        self, request: pb.TimeRequest, context: grpc.aio.ServicerContext
    ) -> pb.TimeResponse:
        return pb.TimeResponse(t_ns=time.time_ns())

    async def StreamTokens(
        self, request: pb.StreamRequest, context: grpc.aio.ServicerContext
    ) -> None:
        ctx = self.ctx
        try:
            feed, after = await open_read(ctx, request)
        except ContractError as exc:
            await self._fail(context, exc)
            raise  # not reached: abort raises
        pacer, write = Pacer(ctx, feed, after, Messages()), context.write
        async with aclosing(pacer.frames()) as frames:
            async for messages in frames:
                for message in messages:
                    await write(message)
        if pacer.drained:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server shutting down; resume")
        elif trailer := stopped_trailer(pacer.stream):
            context.set_trailing_metadata(tuple(trailer))

    async def StopStream(
        self, request: pb.StopRequest, context: grpc.aio.ServicerContext
    ) -> pb.StopResponse:
        try:
            await stop_stream(self.ctx, request)
        except ContractError as exc:
            await self._fail(context, exc)
            raise  # not reached: abort raises
        return pb.StopResponse()


def settings(cfg: ServerConfig) -> dict[str, Any]:
    return {
        "effective": {**dict(_options(cfg)), "loop": "asyncio"},
        "stack_defaults": GRPC_DEFAULTS,
    }


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    cfg = ctx.cfg
    server = grpc.aio.server(options=_options(cfg))
    pb_grpc.add_TokenStreamServicer_to_server(TokenStreamServicer(ctx), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    for name in cfg.hosts:
        host = f"[{name}]" if ":" in name else name
        if server.add_insecure_port(f"{host}:{cfg.port}") == 0:
            raise OSError(f"gRPC could not bind {host}:{cfg.port}")
    await server.start()
    from servers.grpc import web as grpcweb  # it builds on this module

    web = await grpcweb.start(ctx) if cfg.web_port is not None else None  # before our handlers
    if web is not None and not web.server.started:
        raise OSError(f"gRPC-Web could not listen on {cfg.web_port}")
    on_ready()

    stopping: list[asyncio.Task[None]] = []

    async def stop() -> None:
        if web is not None:  # first: it closes its listener, drains, then exits
            web.server.handle_exit(signal.SIGTERM, None)
        ctx.hub.drain()
        await health_servicer.enter_graceful_shutdown()
        await server.stop(cfg.grace)

    def on_sigterm() -> None:
        if not stopping:
            stopping.append(asyncio.ensure_future(stop()))

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor sends SIGTERM
    await server.wait_for_termination()
    if web is not None:
        web.server.should_exit = True
        await web.task
