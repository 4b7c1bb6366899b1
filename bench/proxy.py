"""A fault-injecting TCP proxy (asyncio), between clients and a server, on loopback.

Each accepted connection asks ``plan(n)`` (n = 0, 1, 2, ... in accept order) for its fault, if
any. A fault fires once ``after_bytes`` bytes have gone from the server to the client, so it can
land in the middle of a frame:
- ``close``: FIN both ways, as a server or load balancer closing cleanly;
- ``reset``: RST to the client (SO_LINGER 0), as a crashed peer or a NAT dropping state;
- ``blackhole``: both directions go silent, no FIN and no RST, as a phone moving from Wi-Fi to
  LTE; the sockets stay open until the proxy stops, so only the client's own watchdog saves it;
- ``stall``: the proxy stops reading from the server (a reader that stopped reading, at the TCP
  level, whatever its client library buffers); the client side stays open and quiet.
No tc/netem on this kernel: this is how tokenbench injects faults, in user space.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

FAULTS = ("close", "reset", "blackhole", "stall")


@dataclass(frozen=True)
class Fault:
    kind: str
    after_bytes: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULTS:
            raise ValueError(f"unknown fault {self.kind!r}: one of {', '.join(FAULTS)}")


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        plan: Callable[[int], Fault | None],
        host: str = "127.0.0.1",
    ) -> None:
        self.upstream = upstream
        self.plan = plan
        self.host = host
        self.port = 0
        self.accepted = 0
        self.fired: list[tuple[int, str]] = []  # (connection number, fault kind)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        n = self.accepted
        self.accepted += 1
        fault = self.plan(n)
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            c_writer.transport.abort()
            self._tasks.discard(task)
            return
        hole = asyncio.Event()  # set when a black hole swallows this connection
        up = asyncio.ensure_future(self._pump(c_reader, s_writer, None, n, hole))
        try:
            await self._pump(s_reader, c_writer, fault, n, hole)
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            up.cancel()
            for w in (c_writer, s_writer):
                w.transport.abort()
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        fault: Fault | None,
        n: int,
        hole: asyncio.Event,
    ) -> None:
        sent = 0
        while True:
            data = await reader.read(65536)
            if not data:
                if not hole.is_set():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            if hole.is_set():
                continue  # swallowed: nothing crosses a black hole
            if fault is not None and sent + len(data) >= fault.after_bytes:
                cut = max(0, fault.after_bytes - sent)
                if cut:
                    writer.write(data[:cut])
                    await writer.drain()
                self._fire(writer, fault, n)
                if fault.kind in ("blackhole", "stall"):
                    if fault.kind == "blackhole":
                        hole.set()
                    await asyncio.Event().wait()  # hold both sockets open until stop()
                return
            writer.write(data)
            sent += len(data)
            await writer.drain()

    def _fire(self, writer: asyncio.StreamWriter, fault: Fault, n: int) -> None:
        self.fired.append((n, fault.kind))
        if fault.kind == "close":
            writer.close()
        elif fault.kind == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
