"""WebSocket, floor stack: the handshake and frames written by hand (RFC 6455), on the wheel.

Wire: the same as servers/ws/stock.py (docs/protocol.md): one text message per token, the end
message, close 1000; close 1001 on shutdown. A request to refuse (unknown stream, bad cursor) is
refused before the upgrade with the stock HTTP status and JSON body. Here:
- the handshake is answered from the parsed request (RFC 6455 §4.2.2); no extension is offered,
  so no permessage-deflate (``--ws-compression`` does not apply);
- each wheel tick's messages go out as unmasked text frames (§5.2) in one write;
- keepalive is the protocol's ping (§5.5.2), one every ``heartbeat`` seconds, riding in a tick's
  write when tokens flow; a ping unanswered for ``heartbeat`` seconds (no frame at all came
  back) fails the connection with 1011, as the stock stack's websockets does, so a vanished or
  stalled client is closed within two heartbeats; a ping from the client gets its pong;
- client frames must be masked (§5.3) and at most 64 KiB; the stop button is the text message
  ``{"stop":true}`` (a 503 from the model is answered in-band); a close is echoed (§5.5.1).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time
from collections.abc import Callable
from typing import Any

from servers.base import Context, ServerConfig
from servers.http import floor, lean
from servers.http import prompt as prompt_floor
from servers.http.app import HTTP_STATUS, build_app
from servers.pacing.wheel import Flow
from servers.process import metrics as m
from servers.process.listen import listen_sockets
from servers.tokens.core import ContractError, parse_after
from servers.ws import stock

NAME = "ws"
LOOP = "uvloop"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 64 * 1024
PING = b"\x89\x00"  # FIN + ping, no payload
CLOSE_WAIT_S = 1.0  # how long a close waits for the client's echo before the TCP close
CLOSE_KEEPALIVE = 1011  # what websockets sends on a ping timeout (RFC 6455 §7.4.1)
TIMER_SLACK_NS = 2_000_000  # uvloop's timers run on a millisecond clock, at times a bit early


def frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked server frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())


class Frames:
    """``pacing.Framing`` for WebSocket: ``ws.Messages`` as wire bytes, with the session's ping
    when one is due."""

    def __init__(self, session: Session) -> None:
        self.messages = stock.Messages()
        self.session = session

    def start(self) -> None:
        return None

    def tokens(self, stream: Any, seqs: range) -> bytes:
        data = b"".join([frame(OP_TEXT, t.encode()) for t in self.messages.tokens(stream, seqs)])
        return data + PING if self.session.ping_due() else data

    def heartbeat(self) -> bytes:
        return PING if self.session.ping_due() else b""

    def end(self, stream: Any) -> bytes:
        return frame(OP_TEXT, stock.end_message(stream).encode()) + close_frame(stock.CLOSE_NORMAL)


class Session:
    """One upgraded connection: the client's frames in, the flow's frames out."""

    def __init__(self, ctx: Context, conn: floor.Conn, sid: str) -> None:
        self.ctx, self.conn, self.sid = ctx, conn, sid
        self.buf = bytearray()
        self.parts: list[bytes] = []  # a fragmented message so far
        self.closing = False  # our close frame went out
        self.stopping: set[asyncio.Future[None]] = set()  # stop presses under way
        self.every_ns = int(ctx.cfg.heartbeat * 1e9)
        self.last_ping = time.monotonic_ns()
        self.unanswered: int | None = None  # when the ping no frame has answered yet went out
        self.timer = asyncio.get_running_loop().call_later(ctx.cfg.heartbeat, self._keepalive)

    def ping_due(self, slack_ns: int = 0) -> bool:
        """Whether a ping goes out now (then it counts as sent)."""
        now = time.monotonic_ns()
        if now - self.last_ping < self.every_ns - slack_ns:
            return False
        self.last_ping = now
        if self.unanswered is None:
            self.unanswered = now
        return True

    def _keepalive(self) -> None:
        """Fail a connection whose ping went unanswered for a heartbeat; ping one that nothing
        pinged for a heartbeat (idle, or paused by a reader that stopped reading)."""
        if self.closing:
            return
        now = time.monotonic_ns()
        if self.unanswered is not None and now - self.unanswered >= self.every_ns - TIMER_SLACK_NS:
            self.ctx.metrics.add(m.ERRORS)
            self._fail(CLOSE_KEEPALIVE, "keepalive ping timeout")
            return
        if self.ping_due(TIMER_SLACK_NS):
            self.conn.write(PING)
        # next: when the one out goes unanswered, else a quarter heartbeat after the next ping
        # falls due (a tick's write takes it first while tokens flow; idle, the silence stays
        # within 1.25 heartbeats, under the client watchdog's two)
        if self.unanswered is not None:
            due = self.unanswered + self.every_ns
        else:
            due = self.last_ping + self.every_ns + self.every_ns // 4
        self.timer = asyncio.get_running_loop().call_later(
            max(due - time.monotonic_ns(), TIMER_SLACK_NS) / 1e9, self._keepalive
        )

    def data_received(self, data: bytes) -> None:
        self.unanswered = None  # any frame from the client shows it is there
        self.buf += data
        while (got := self._frame()) is not None:
            fin, opcode, payload = got
            if opcode == OP_CLOSE:
                self._close_tcp()  # the client's close, or its echo of ours
                return
            if opcode == OP_PING:
                self.conn.write(frame(OP_PONG, payload))
            elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                self.parts.append(payload)
                if fin:
                    message, self.parts = b"".join(self.parts), []
                    if opcode != OP_BINARY and stock.is_stop({"text": _text(message)}):
                        task = asyncio.ensure_future(self._stop())
                        self.stopping.add(task)
                        task.add_done_callback(self.stopping.discard)

    def _frame(self) -> tuple[bool, int, bytes] | None:
        """The next whole client frame from the buffer, or None; a bad one fails the
        connection (1002 protocol error, 1009 too big)."""
        buf = self.buf
        if len(buf) < 2:
            return None
        fin, opcode, masked, n = buf[0] & 0x80, buf[0] & 0x0F, buf[1] & 0x80, buf[1] & 0x7F
        at = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, at = struct.unpack_from("!H", buf, 2)[0], 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, at = struct.unpack_from("!Q", buf, 2)[0], 10
        if not masked or n > MAX_MESSAGE or sum(map(len, self.parts)) + n > MAX_MESSAGE:
            self._fail(1009 if masked else 1002)
            return None
        if len(buf) < at + 4 + n:
            return None
        mask = bytes(buf[at : at + 4])
        data = bytes(buf[at + 4 : at + 4 + n])
        del buf[: at + 4 + n]
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big") if n else 0
        payload = (int.from_bytes(data, "big") ^ key).to_bytes(n, "big") if n else b""
        return bool(fin), opcode, payload

    async def _stop(self) -> None:
        try:
            await self.ctx.stop(self.sid)
        except ContractError as exc:  # the model away: say so; the client may resend
            body = json.dumps({**exc.body(), "status": HTTP_STATUS[exc.kind]})
            self.conn.write(frame(OP_TEXT, body.encode()))

    def _fail(self, code: int, reason: str = "") -> None:
        self.buf.clear()
        self.send_close(close_frame(code, reason))

    def send_close(self, data: bytes) -> None:
        """Our close frame (with what precedes it); the TCP close follows the client's echo."""
        self.timer.cancel()
        if self.conn.flow is not None:
            self.conn.flow.close()
            self.conn.flow = None
        if not self.closing:
            self.closing = True
            self.conn.write(data)
            asyncio.get_running_loop().call_later(CLOSE_WAIT_S, self._close_tcp)

    def _close_tcp(self) -> None:
        self.timer.cancel()
        if self.conn.flow is not None:
            self.conn.flow.close()
            self.conn.flow = None
        if not self.closing:  # the client closed first: echo it
            self.closing = True
            self.conn.write(close_frame(stock.CLOSE_NORMAL))
        if self.conn.transport is not None:
            self.conn.transport.close()

    def connection_lost(self) -> None:
        self.timer.cancel()
        if self.conn.flow is not None:
            self.conn.flow.close()
            self.conn.flow = None


def _text(message: bytes) -> str | None:
    try:
        return message.decode()
    except UnicodeDecodeError:
        return None


def accept_key(key: str) -> bytes:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())  # RFC 6455 §4.2.2


def refuse(conn: floor.Conn, exc: ContractError, metrics: Any) -> None:
    """The stock answer to a bad read, before the upgrade: its status and JSON body."""
    metrics.add(m.ERRORS)
    body = json.dumps(exc.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    conn.write(floor.head(HTTP_STATUS[exc.kind], headers, close=True) + body)
    conn.done(False)


def route(ctx: Context) -> floor.Route:
    metrics = ctx.metrics

    def opener(request: floor.Request) -> floor.Read | None:
        sid = lean.stream_id(request.path, "ws")
        key = request.header(b"sec-websocket-key")
        if sid is None or not request.upgrade or key is None:
            return None  # not a WebSocket handshake: the stock app answers
        params = lean.params(request.query)
        stream = ctx.open(sid)  # ContractError: refused below
        after = parse_after(params.get("after"), stream)
        return floor.Read(sid, stream, after, {**params, "key": key})

    def starter(conn: floor.Conn, request: floor.Request, read: floor.Read) -> None:
        metrics.add(m.REQUESTS)
        if read.after >= 0:
            metrics.add(m.RESUMES)
        conn.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                   b"connection: Upgrade\r\nsec-websocket-accept: %s\r\n\r\n"
                   % accept_key(read.params["key"]))  # fmt: skip
        session = Session(ctx, conn, read.sid)
        conn.upgraded = session

        def emit(frames: list[bytes]) -> None:
            conn.write(b"".join(frames))

        def on_end(drained: bool) -> None:
            conn.flow = None
            if drained:
                session.send_close(close_frame(stock.CLOSE_GOING_AWAY, "server shutting down"))
            else:  # the end frame and close 1000 went out with the last tokens
                session.closing = True
                session.timer.cancel()
                asyncio.get_running_loop().call_later(CLOSE_WAIT_S, session._close_tcp)

        assert read.feed is not None
        # no idle heartbeat from the flow: the session's timer pings (see Session._keepalive)
        conn.flow = Flow(ctx, conn.server.wheel, read.feed, read.after, Frames(session), emit,
                         on_end)  # fmt: skip
        conn.flow.start()

    return floor.read_route(ctx, opener, starter, refuse=lambda c, e: refuse(c, e, metrics))


def settings(cfg: ServerConfig) -> dict[str, Any]:
    effective = {"server": "asyncio.Protocol + httptools on uvloop (servers/http/floor.py)",
                 "loop": LOOP, "pacing": "one timer wheel per process (servers/pacing/wheel.py)",
                 "ws": "RFC 6455 frames written by hand (servers/ws/floor.py)",
                 "ws_per_message_deflate": False, "ws_ping_interval": cfg.heartbeat,
                 "ws_ping_timeout": cfg.heartbeat,
                 "backlog": cfg.backlog}  # fmt: skip
    return {"effective": effective, "stack_defaults": stock.settings(cfg)["stack_defaults"]}


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    socks = listen_sockets(ctx.cfg.hosts, ctx.cfg.port, ctx.cfg.backlog)
    app = build_app(ctx, stock.routes(ctx))
    server = floor.Server(ctx, route(ctx), app, post=prompt_floor.route(ctx))
    await floor.serve(server, socks, on_ready)
