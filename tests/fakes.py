"""Test doubles shared by the compiled-path parity tests."""

from __future__ import annotations

from typing import Any


class FakeTransport:
    """Records writes; ``protocol`` is whoever reads the connection now (a tap, or not)."""

    def __init__(self, protocol: Any) -> None:
        self.protocol, self.written, self.closed = protocol, bytearray(), False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol
