"""gRPC calls on one HTTP/2 connection of our own, on the h2 library (RFC 9113).

Rules of this module:
- h2 owns the connection's state (preface, SETTINGS, HPACK, PING, GOAWAY, RST_STREAM, stream
  states) and is fed whole frames only. So the compiled path (clients/_fastpath.c, mode
  ``grpc``) can take the connection over between two frames once a call's response headers
  are in (``go_fast``), hand every frame it does not read back to ``frame``, and give the
  connection back (``end_fast``) with the bytes it had not framed.
- A call (clients/grpccall.py) ends with its status, from trailers, trailers-only headers, an
  HTTP status, RST_STREAM, GOAWAY or the connection's loss.
- Flow control (RFC 9113 section 6.9): ``window`` bytes per stream and for the connection;
  credit goes back once half of it was read (h2's own rule on the Python path).
- Keepalive: a PING after ``heartbeat`` seconds of silence; after two, the connection is
  aborted (clients/rpc.py sets grpcio to the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from clients.base import Retry
from clients.grpccall import CANCEL, HTTP_CODES, RST_CODES, Call, status_of, window_update


class Session(asyncio.Protocol):
    """One HTTP/2 connection to a gRPC server, carrying calls one after another or at once."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, authority: str, window: int, heartbeat: float
    ) -> None:
        self.loop, self.authority, self.window, self.heartbeat = loop, authority, window, heartbeat
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config)
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, Call] = {}
        self.buffer = bytearray()
        self.tap: Any = None  # the compiled path, while it reads the connection
        self.last_rx = time.monotonic()
        self.bytes_received = 0
        self.closing = False  # GOAWAY came or the connection is gone: no new calls on it
        self.lost: asyncio.Future[None] = loop.create_future()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.window,
                            h2.settings.SettingCodes.ENABLE_PUSH: 0},
        )  # fmt: skip
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(self.window - 65_535)
        self.flush()
        self.loop.call_later(self.heartbeat, self._keepalive)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.bytes_received += len(data)
        buf = self.buffer
        buf += data
        pos = 0
        while len(buf) - pos >= 9:
            end = pos + 9 + int.from_bytes(buf[pos : pos + 3])
            if end > len(buf):
                break
            self.frame(bytes(buf[pos:end]))
            pos = end
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        for call in list(self.calls.values()):
            call.finish("UNAVAILABLE", "connection lost")
        self.calls.clear()
        if self.tap is not None:
            self.tap.stream = 0
        if not self.lost.done():
            self.lost.set_result(None)

    # h2
    def frame(self, data: bytes) -> None:
        """One whole frame (the compiled path's ``on_other`` too)."""
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.closing = True
            for call in list(self.calls.values()):
                self.end(call, "INTERNAL", f"HTTP/2 protocol error: {type(exc).__name__}")
            self.abort()
            return
        for event in events:
            self._event(event)
        self.flush()

    def _event(self, ev: Any) -> None:
        call = self.calls.get(getattr(ev, "stream_id", 0) or 0)
        if isinstance(ev, h2.events.ResponseReceived) and call is not None:
            call.headers = headers = dict(ev.headers)
            status = int(headers.get(":status", "0"))
            if "grpc-status" in headers:
                call.trailers = headers  # trailers-only: the status comes with the end
            elif status != 200:
                self.end(call, HTTP_CODES.get(status, "UNKNOWN"), f"HTTP status {status}")
            elif not headers.get("content-type", "").startswith("application/grpc"):
                self.end(call, "UNKNOWN", "not a gRPC answer")
            elif not call.head.done():
                call.head.set_result(None)
        elif isinstance(ev, h2.events.DataReceived):
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if call is not None and (broke := call.data(ev.data)) is not None:
                self.end(call, *broke)
        elif isinstance(ev, h2.events.TrailersReceived) and call is not None:
            call.trailers = dict(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded) and call is not None:
            if call.trailers is None:
                self.end(call, "INTERNAL", "stream ended without trailers", reset=False)
            else:
                self.end(call, *status_of(call.trailers), reset=False)
        elif isinstance(ev, h2.events.StreamReset) and call is not None:
            self.end(call, RST_CODES.get(ev.error_code, "INTERNAL"), "RST_STREAM", reset=False)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closing = True  # calls up to last_stream_id may still finish (RFC 9113 6.8)
            for c in [c for c in self.calls.values() if c.stream_id > (ev.last_stream_id or 0)]:
                self.end(c, "UNAVAILABLE", "GOAWAY", reset=False)

    def end(self, call: Call, code: str, message: str, reset: bool = True) -> None:
        """The call is over: its status, and RST_STREAM if the stream may still be open."""
        if self.calls.pop(call.stream_id, None) is not None and reset and not self.closing:
            with contextlib.suppress(h2.exceptions.H2Error):  # already closed on h2's side
                self.h2.reset_stream(call.stream_id, CANCEL)
        if self.tap is not None and self.tap.stream == call.stream_id:
            self.tap.stream = 0  # the compiled path hands the rest of the bytes back
        call.finish(code, message)
        self.flush()

    def start(self, path: str, message: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> Call:
        """Send one request message on a new stream (a unary or server-streaming call);
        ``Retry`` if the connection takes no new calls."""
        if self.closing or self.transport is None or self.transport.is_closing():
            raise Retry("grpc UNAVAILABLE")
        headers = [(":method", "POST"), (":scheme", "http"), (":path", path),
                   (":authority", self.authority), ("content-type", "application/grpc"),
                   ("te", "trailers"), *metadata]  # fmt: skip
        try:
            sid = self.h2.get_next_available_stream_id()
            self.h2.send_headers(sid, headers)
            self.h2.send_data(sid, b"\0" + len(message).to_bytes(4) + message, end_stream=True)
        except h2.exceptions.H2Error:  # h2 closed the connection (it sent GOAWAY itself)
            self.closing = True
            raise Retry("grpc UNAVAILABLE") from None
        self.calls[sid] = call = Call(self.loop, sid)
        self.flush()
        return call

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # the compiled path
    def go_fast(self, call: Call, tap: Any, on_message: Callable[[int, bytes], None]) -> None:
        """From the next frame on, ``tap`` reads the connection; ``call``'s DATA stays there."""

        def on_error(why: str) -> None:
            code, _, message = why.partition(": ")
            self.end(call, code, message)

        assert self.transport is not None
        tap.start(self, on_message, self.frame, on_error)
        tap.stream, tap.credit_at, self.tap = call.stream_id, self.window // 2, tap
        self.transport.set_protocol(tap)
        tap.attach(self.transport)  # the process's pump reads it, if it has one
        rest = bytes(self.buffer)
        self.buffer.clear()
        self.bytes_received -= len(rest)  # counted again by the tap
        if call.buffer:  # a message begun on this path: its start, as one DATA frame
            head = len(call.buffer).to_bytes(3, "big") + b"\0\0" + call.stream_id.to_bytes(4, "big")
            rest = head + bytes(call.buffer) + rest
            tap.unacked -= len(call.buffer)  # h2 credits those bytes already
            self.bytes_received += 9 + len(call.buffer)
            call.buffer.clear()
        if rest:
            tap.data_received(rest)

    def credit(self, n: int) -> None:
        """The compiled path read ``n`` bytes of DATA: return them to the sender (6.9.1)."""
        tap = self.tap
        frames = window_update(0, n)
        if tap is not None and tap.stream in self.calls:
            frames += window_update(tap.stream, n)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frames)

    def end_fast(self) -> None:
        """The compiled path stops reading; the connection, and what it had not framed, are
        this protocol's again."""
        tap, self.tap = self.tap, None
        rest = tap.release()
        if tap.unacked:
            self.credit(tap.unacked)
            tap.unacked = 0
        self.bytes_received += tap.bytes_received
        if self.transport is not None:
            self.transport.set_protocol(self)
        if rest:
            self.data_received(rest)

    # keepalive
    def rx_state(self) -> tuple[float, int]:
        tap = self.tap
        if tap is None:
            return self.last_rx, self.bytes_received
        return max(self.last_rx, tap.last_rx), self.bytes_received + tap.bytes_received

    def _keepalive(self) -> None:
        if self.lost.done():
            return
        idle = time.monotonic() - self.rx_state()[0]
        if idle >= 2 * self.heartbeat:
            self.abort()  # a silent connection (connection_lost ends its calls)
            return
        if idle >= self.heartbeat:
            self.h2.ping(b"keepaliv")
            self.flush()
        self.loop.call_later(self.heartbeat / 2, self._keepalive)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
