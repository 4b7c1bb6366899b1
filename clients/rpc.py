"""gRPC client: ``TokenStream.StreamTokens`` on grpc.aio, resuming with ``after``.

Status codes (grpc/doc/statuscodes.md): NOT_FOUND and INVALID_ARGUMENT fail for good; every other
code (UNAVAILABLE on a drop or a draining server, CANCELLED, INTERNAL on a cut stream...) is
resumed. A silent connection is found by HTTP/2 keepalive pings every ``heartbeat`` seconds,
each given ``heartbeat`` seconds to be answered, so within twice the heartbeat. Keepalive alone
is not enough in grpcio: a BDP-probe ping is usually in flight, only one ping may be, and it
waits ``grpc.http2.ping_timeout_ms`` (60 s by default), so that timeout is set to match.

Flow control (RFC 9113 section 5.2) is set by the receiver: grpcio advertises a 4 MiB window
per stream and per connection and grows it with BDP probes, so a server may write that much to
a reader that stopped reading. ``ClientOptions.grpc_window`` fixes the window instead (BDP off,
``grpc.http2.lookahead_bytes``): a stalled reader then pins at most that much of a server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from clients.base import ClientOptions, Reader, Retry, StreamError
from clients.http import split_url
from proto import tokens_pb2 as pb
from proto import tokens_pb2_grpc as pb_grpc

STOPPED = "tokenbench-stopped"  # the trailer of a stream the user stopped (docs/protocol.md)

FINAL = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def target(url: str) -> str:
    host, port, _ = split_url(url)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def channel_options(heartbeat: float) -> list[tuple[str, Any]]:
    ms = int(heartbeat * 1000)
    return [
        ("grpc.keepalive_time_ms", ms),
        ("grpc.keepalive_timeout_ms", ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.ping_timeout_ms", ms),
        ("grpc.http2.min_ping_interval_without_data_ms", ms),
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.max_reconnect_backoff_ms", 5000),
        ("grpc.use_local_subchannel_pool", 1),  # one connection per reader, like a browser tab
    ]


def open_channel(
    url: str, heartbeat: float = 15.0, tuned: bool = True, window: int | None = None
) -> grpc.aio.Channel:
    """A channel with our keepalive settings, or (``tuned=False``) grpcio's defaults; with
    ``window``, a fixed HTTP/2 flow-control window of that many bytes per stream."""
    options = channel_options(heartbeat) if tuned else [("grpc.use_local_subchannel_pool", 1)]
    if window is not None:
        options += [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", window)]
    return grpc.aio.insecure_channel(target(url), options=options)


class GrpcReader(Reader):
    """Reads on ``self.session`` if one is given (a user's channel, reused), else its own."""

    transport = "grpc"
    session: grpc.aio.Channel | None = None

    @classmethod
    def open_session(cls, url: str, options: ClientOptions) -> grpc.aio.Channel:
        return open_channel(url, options.heartbeat, options.grpc_tuned, options.grpc_window)

    @classmethod
    async def close_session(cls, session: grpc.aio.Channel) -> None:
        await session.close()

    async def _attempt(self, after: int) -> bool:
        assert self.session is not None
        stub = pb_grpc.TokenStreamStub(self.session)
        request = pb.StreamRequest(id=self.stream_id)
        if after >= 0:
            request.after = after
        cookie = (("cookie", self.cookie),) if self.cookie else None
        call = stub.StreamTokens(request, metadata=cookie)
        self.stats.requests += 1
        deliver, size, first = self.deliver, 0, True
        try:
            async for token in call:
                if first:
                    self.connected()  # the first message: headers alone are not exposed here
                    first = False
                size += token.ByteSize()
                deliver(token.seq, token.t, token.text)
            trailers = await call.trailing_metadata()
            stopped = next((v for k, v in trailers or () if k == STOPPED), None)
            if isinstance(stopped, str) and stopped.isdigit():
                self.ended(int(stopped))
            return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() in FINAL:
                raise StreamError(exc.code().name, exc.details() or "") from None
            raise Retry(f"grpc {exc.code().name}") from None
        finally:
            self.stats.bytes_received += size
            call.cancel()

    async def _stop(self) -> None:
        """``StopStream`` on this reader's channel (docs/protocol.md, "Stop")."""
        if self.session is None:
            async with open_channel(self.url) as own:
                return await stop_call(own, self.stream_id, self.cookie)
        await stop_call(self.session, self.stream_id, self.cookie)


async def stop_call(channel: grpc.aio.Channel, stream_id: str, cookie: str | None) -> None:
    stub = pb_grpc.TokenStreamStub(channel)
    metadata = (("cookie", cookie),) if cookie else None
    try:
        await stub.StopStream(pb.StopRequest(id=stream_id), metadata=metadata, timeout=10.0)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in FINAL:
            raise StreamError(exc.code().name, exc.details() or "") from None
        raise Retry(f"stop: grpc {exc.code().name}") from None


async def create_stream(
    url: str,
    tokens: int | None = None,
    rate: float | None = None,
    prompt: str | None = None,
    timeout: float = 10.0,
    local_addr: str | None = None,
    rst_close: bool = False,
    session: grpc.aio.Channel | None = None,
) -> dict[str, Any]:
    """``CreateStream``: the same answer as the HTTP prompt POST, on ``session`` (a channel)
    if given.

    ``local_addr`` and ``rst_close`` have no gRPC equivalent (grpcio cannot bind a source
    address); they are accepted so that every transport's create takes the same arguments.
    """
    if session is None:
        async with open_channel(url) as own:
            return await create_stream(url, tokens, rate, prompt, timeout, session=own)
    stub = pb_grpc.TokenStreamStub(session)
    request = pb.CreateStreamRequest(prompt=prompt or "", tokens=tokens or 0, rate=rate or 0.0)
    try:
        call = stub.CreateStream(request, timeout=timeout)
        reply = await call
        head = await call.initial_metadata()
    except grpc.aio.AioRpcError as exc:
        if exc.code() in FINAL:
            raise StreamError(exc.code().name, exc.details() or "") from None
        details = (exc.details() or "").split("\n")[0][:200]
        raise Retry(f"grpc {exc.code().name}" + (f": {details}" if details else "")) from None
    doc = {"id": reply.id, "tokens": reply.tokens, "rate": reply.rate,
           "created_ns": reply.created_ns}  # fmt: skip
    cookie = next((v for k, v in head or () if k == "set-cookie"), None)
    if cookie:
        doc["cookie"] = str(cookie).split(";", 1)[0]
    return doc


async def time_exchange(
    url: str, n: int, clock: Callable[[], int], timeout: float = 5.0, local_addr: str | None = None
) -> list[tuple[int, int, int]]:
    """``n`` unary ``Time`` calls on one channel (docs/protocol.md, "Time"): (sent, server's
    ``t_ns``, answered) each. ``local_addr`` is accepted and unused (see ``create_stream``)."""
    out = []
    async with open_channel(url) as channel:
        stub = pb_grpc.TokenStreamStub(channel)
        await channel.channel_ready()  # the connection's set-up is not a round trip to time
        for _ in range(n):
            a = clock()
            reply = await stub.Time(pb.TimeRequest(), timeout=timeout)
            b = clock()
            out.append((a, reply.t_ns, b))
    return out
