"""One gRPC call's side of the wire (gRPC PROTOCOL-HTTP2.md), apart from the connection.

Rules of this module: no I/O. A ``Call`` collects its response headers, splits DATA into
length-prefixed messages for ``on_message`` and ends with one status, a (code name, message)
pair; the tables map HTTP statuses and RST_STREAM codes to gRPC codes as
grpc/doc/http-grpc-status-mapping.md and PROTOCOL-HTTP2.md ("Errors") say.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from urllib.parse import unquote

# grpc/doc/statuscodes.md, in number order
CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
         "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
         "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
         "UNAUTHENTICATED")  # fmt: skip
HTTP_CODES = {400: "INTERNAL", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
              404: "UNIMPLEMENTED", 429: "UNAVAILABLE", 502: "UNAVAILABLE",
              503: "UNAVAILABLE", 504: "UNAVAILABLE"}  # fmt: skip
RST_CODES = {7: "UNAVAILABLE", 8: "CANCELLED", 11: "RESOURCE_EXHAUSTED", 12: "PERMISSION_DENIED"}
MAX_MESSAGE = 4 << 20  # grpcio's default max_receive_message_length
CANCEL = 8  # RST_STREAM error code (RFC 9113 section 7)


class Call:
    """One RPC: its response headers, its messages (to ``on_message``) and its status."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stream_id: int) -> None:
        self.stream_id = stream_id
        self.headers: dict[str, str] = {}
        self.trailers: dict[str, str] | None = None  # trailers-only headers, until the end
        self.head: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[tuple[str, str]] = loop.create_future()  # (code, message)
        self.on_message: Callable[[int, bytes], None] = lambda flag, message: None
        self.buffer = bytearray()

    def data(self, data: bytes) -> tuple[str, str] | None:
        """DATA on the Python path; a status if a message broke the call."""
        buf = self.buffer
        buf += data
        while len(buf) >= 5 and not self.done.done():
            n = int.from_bytes(buf[1:5])
            if n > MAX_MESSAGE:
                return "RESOURCE_EXHAUSTED", "message larger than 4 MiB"
            if len(buf) < 5 + n:
                break
            flag, message = buf[0], bytes(buf[5 : 5 + n])
            del buf[: 5 + n]
            self.on_message(flag, message)
        return None

    def finish(self, code: str, message: str = "") -> None:
        if not self.head.done():
            self.head.set_result(None)
        if not self.done.done():
            self.done.set_result((code, message))


def status_of(headers: dict[str, str]) -> tuple[str, str]:
    raw = headers.get("grpc-status", "")
    code = CODES[int(raw)] if raw.isdigit() and int(raw) < len(CODES) else "UNKNOWN"
    return code, unquote(headers.get("grpc-message", ""))


def window_update(stream_id: int, n: int) -> bytes:
    """A WINDOW_UPDATE frame (RFC 9113 section 6.9): length 4, type 8, no flags."""
    return struct.pack(">IBII", 4 << 8 | 8, 0, stream_id, n)
