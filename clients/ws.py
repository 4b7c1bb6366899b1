"""WebSocket client: ``GET /v1/streams/{id}/ws?after=K`` (RFC 6455), hand-written and small.

- handshake per RFC 6455 section 4.1, checking ``Sec-WebSocket-Accept``; a refused handshake
  (404/410/422 with a JSON body) fails for good, a 5xx is retried;
- frames per section 5: server frames must not be masked (a masked one fails the connection),
  client frames are masked; fragmented messages are reassembled; a ping is answered with a pong
  carrying the same data (5.5.2); a close is echoed (5.5.1);
- the stream is complete after ``{"end":true,...}``; a close without it (1001 going away, 1012
  restart, or any drop) is resumed with ``?after=<last seq seen>``;
- permessage-deflate (RFC 7692) is offered only with ``ClientOptions.ws_compression``;
- nothing received (server pings included) for twice the heartbeat: reconnect.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from urllib.parse import quote

from clients.base import Reader, Retry
from clients.http import HttpConnection, connect, error_from

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
STOP = b'{"stop":true}'  # the stop button, in-band (docs/protocol.md, "Stop")


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def mask_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame (control frames: payload up to 125 bytes)."""
    mask = os.urandom(4)
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big") if n else 0
    body = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
    return bytes((0x80 | opcode, 0x80 | n)) + mask + body


class _Session:
    """Frame state of one WebSocket connection."""

    def __init__(self, reader: WSReader, conn: HttpConnection, inflate: str | None) -> None:
        self.reader, self.conn = reader, conn
        self.buf = b""
        self.parts: list[bytes] = []
        self.compressed = False
        self.inflate_mode = inflate  # None, "takeover" or "no_takeover"
        self.inflater = zlib.decompressobj(-15) if inflate else None
        self.ended = False
        self.close_code: int | None = None
        self.deliver = reader.deliver if reader.tap is None else reader.tap_deliver

    def feed(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, head = b1 & 0x7F, 2
            if n == 126:
                if size - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if size - pos < head + n:
                break
            if b1 & 0x80:
                self.fail("masked frame from server")  # RFC 6455 5.1
                return
            payload = buf[pos + head : pos + head + n]
            pos += head + n
            self.frame(b0, payload)
        self.buf = buf[pos:]

    def frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        if opcode in (OP_TEXT, OP_BINARY):
            self.compressed = bool(b0 & 0x40)
            if b0 & 0x80:
                self.message(payload)
            else:
                self.parts = [payload]
        elif opcode == OP_CONT:
            self.parts.append(payload)
            if b0 & 0x80:
                self.message(b"".join(self.parts))
                self.parts = []
        elif opcode == OP_PING:
            self.write(mask_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.write(mask_frame(OP_CLOSE, payload[:2]))
            self.close()

    def message(self, data: bytes) -> None:
        if self.compressed and self.inflater is not None:
            data = self.inflater.decompress(data + b"\x00\x00\xff\xff")
            if self.inflate_mode == "no_takeover":
                self.inflater = zlib.decompressobj(-15)
        try:
            doc = json.loads(data)
            if "seq" in doc:
                self.deliver(doc["seq"], doc["t"], doc["text"])
            elif doc.get("end"):
                self.ended = True
                self.reader.ended(doc.get("stopped"))
        except (ValueError, KeyError, TypeError, AttributeError):
            self.fail("malformed token message")

    def write(self, frame: bytes) -> None:
        transport = self.conn.transport
        if transport is not None and not transport.is_closing():
            transport.write(frame)

    def fail(self, why: str) -> None:
        self.close_code = 1002
        self.write(mask_frame(OP_CLOSE, (1002).to_bytes(2, "big")))
        self.close()

    def close(self) -> None:
        """Flush what was written (the close frame), then close the TCP connection."""
        if self.conn.transport is not None:
            self.conn.transport.close()


class WSReader(Reader):
    transport = "ws"
    live: _Session | None = None  # the connection being read, for the stop message

    async def _stop(self) -> None:
        """In-band on the connection being read: ``{"stop":true}``; between connections, the
        HTTP route as the other transports (docs/protocol.md, "Stop")."""
        live = self.live
        if live is None or live.conn.transport is None or live.conn.transport.is_closing():
            return await super()._stop()
        live.write(mask_frame(OP_TEXT, STOP))

    async def _attempt(self, after: int) -> bool:
        opts = self.options
        conn, hostport, prefix = await connect(self)
        key = base64.b64encode(os.urandom(16)).decode()
        headers = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
            **self.cookie_headers(),
        }
        if opts.ws_compression:
            headers["Sec-WebSocket-Extensions"] = "permessage-deflate; client_max_window_bits"
        pending: list[bytes] = []
        conn.raw_sink = pending.append  # frames that come with the 101 answer
        query = f"?after={after}" if after >= 0 else ""
        target = f"{prefix}/v1/streams/{quote(self.stream_id, safe='')}/ws{query}"
        tap, fast_session = self.tap, None
        try:
            conn.send("GET", target, hostport, headers)
            if tap is not None:  # the load generator's compiled path (clients.fast)
                self.tap_begin()

                def accept() -> bool:  # frames without compression: C reads them from here
                    nonlocal fast_session
                    h = conn.headers
                    if (
                        conn.status != 101
                        or h.get("sec-websocket-accept") != accept_key(key)
                        or "permessage-deflate" in h.get("sec-websocket-extensions", "")
                    ):
                        return False
                    fast_session = _Session(self, conn, None)
                    return True

                conn.go_fast(
                    tap, lambda b0, payload: fast_session.frame(b0, payload),  # type: ignore[union-attr]
                    lambda why: fast_session.fail(why), accept,  # type: ignore[union-attr]
                )  # fmt: skip
            status = await conn.head(opts.connect_timeout)
            if status != 101:
                body = await conn.body()
                if 400 <= status < 500 or not opts.retry_server_errors:
                    raise error_from(status, body)
                raise Retry(f"HTTP {status}")
            if conn.headers.get("sec-websocket-accept") != accept_key(key):
                raise Retry("bad Sec-WebSocket-Accept")
            ext = conn.headers.get("sec-websocket-extensions", "")
            inflate = None
            if "permessage-deflate" in ext:
                inflate = "no_takeover" if "server_no_context_takeover" in ext else "takeover"
            self.connected()
            if fast_session is not None:
                session = fast_session
            else:
                session = _Session(self, conn, inflate)
                conn.raw_sink = session.feed
                for chunk in pending:
                    session.feed(chunk)
            if opts.watchdog:
                conn.watch_silence(opts.silence)
            self.live = session
            await conn.lost
            if session.ended:
                return True
            if conn.silent:
                raise Retry("silent connection")
            code = session.close_code
            raise Retry("connection lost" if code is None else f"close {code}")
        finally:
            self.live = None
            if tap is not None:
                self.tap_end(conn)
            self.stats.bytes_received += conn.rx_state()[1]
            conn.abort()
