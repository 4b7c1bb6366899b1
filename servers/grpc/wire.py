"""The lean gRPC server's wire (gRPC PROTOCOL-HTTP2.md, RFC 9113): status codes, trailers,
and the DATA frames of ``Token`` messages framed by hand. No I/O.
"""

from __future__ import annotations

import struct
from urllib.parse import quote

from proto import tokens_pb2 as pb
from servers.tokens.core import Stream

OK, NOT_FOUND, EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 0, 5, 8, 12, 13, 14
# A DATA frame's 9-byte header (3-byte length, type, flags, stream) and the message's 5-byte
# prefix (compressed flag, length), packed at once: length >> 16, length & 0xFFFF, the rest.
_HEAD = struct.Struct(">BH6sBI")


class Messages:
    """gRPC framing as bytes: one DATA frame (RFC 9113 6.1) per length-prefixed ``Token``."""

    def __init__(self, stream_id: int) -> None:
        # after the 3-byte length: type 0 (DATA), no flags, the stream
        self.header = b"\0\0" + stream_id.to_bytes(4, "big")

    def start(self) -> None:
        return None

    def tokens(self, stream: Stream, seqs: range) -> tuple[bytes, int]:
        """The frames, and the bytes flow control counts (each frame's payload)."""
        due, text, token, head, pack = stream.due_ns, stream.text, pb.Token, self.header, _HEAD.pack
        out = []
        for s in seqs:
            msg = token(seq=s, t=due(s), text=text(s)).SerializeToString()
            n = len(msg)
            out.append(pack((n + 5) >> 16, (n + 5) & 0xFFFF, head, 0, n) + msg)
        data = b"".join(out)
        return data, len(data) - 9 * len(seqs)

    def heartbeat(self) -> tuple[bytes, int]:
        return b"", 0  # never asked for: keepalive is HTTP/2 PING

    def end(self, stream: Stream) -> None:
        return None


def status(code: int, message: str = "") -> list[tuple[str, str]]:
    out = [("grpc-status", str(code))]
    return [*out, ("grpc-message", quote(message, safe=" "))] if message else out


STOPPED = "tokenbench-stopped"  # trailer of a stream the user stopped: when, ns (docs/protocol.md)


def stopped_trailer(feed: object) -> list[tuple[str, str]]:
    """``[(STOPPED, ns)]`` if the answer read was stopped, else nothing."""
    ns = getattr(feed, "stopped_ns", 0)
    return [(STOPPED, str(ns))] if ns else []
