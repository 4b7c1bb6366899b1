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

Shaping applies to the server-to-client direction from the first byte, with or without a fault:
``latency_ms`` plus or minus ``jitter_ms`` of one-way delay (a delay line: order is kept, and
delays do not add up), ``bytes_per_s`` (a bandwidth cap), and ``chunk_bytes`` (forward in tiny
pieces, each its own write, so frames arrive split).
No tc/netem on this kernel: this is how tokenbench injects faults, in user space.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

FAULTS = ("none", "close", "reset", "blackhole", "stall")


@dataclass(frozen=True)
class Fault:
    kind: str = "none"
    after_bytes: int = 0
    after_s: float = 0.0  # or: fire on the first chunk that arrives after this many seconds
    mid_chunk: bool = False  # with after_s: cut in the middle of that chunk (mid-frame)
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    bytes_per_s: int = 0  # 0: no cap
    chunk_bytes: int = 0  # 0: forward as read

    def __post_init__(self) -> None:
        if self.kind not in FAULTS:
            raise ValueError(f"unknown fault {self.kind!r}: one of {', '.join(FAULTS)}")
        if min(self.after_bytes, self.after_s, self.latency_ms, self.bytes_per_s,
               self.chunk_bytes) < 0:  # fmt: skip
            raise ValueError("fault sizes and delays must be >= 0")
        if self.jitter_ms < 0 or self.jitter_ms > self.latency_ms:
            raise ValueError("jitter_ms must be 0 .. latency_ms")

    @property
    def shaped(self) -> bool:
        return bool(self.latency_ms or self.bytes_per_s or self.chunk_bytes)


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        plan: Callable[[int], Fault | None],
        host: str = "127.0.0.1",
        unavailable_503: bool = False,
        upstream_rcvbuf: int | None = None,
    ) -> None:
        self.upstream = upstream
        # Like a load balancer with no healthy backend: while the server is down, answer HTTP/1.1
        # requests with 503 (HTTP/2, i.e. gRPC, connections are dropped: UNAVAILABLE).
        self.unavailable_503 = unavailable_503
        self.plan = plan
        self.host = host
        # SO_RCVBUF for the sockets to the server, set before connecting, so the kernel does not
        # autotune it (tcp(7)): what a stalled reader's kernel takes in is then a known amount.
        self.upstream_rcvbuf = upstream_rcvbuf
        self.port = 0
        self.accepted = 0
        self.fired: list[tuple[int, str]] = []  # (connection number, fault kind)
        self.fired_at: list[float] = []  # time.monotonic() of each firing
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

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self.upstream
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setblocking(False)
        if self.upstream_rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.upstream_rcvbuf)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        n = self.accepted
        self.accepted += 1
        fault = self.plan(n)
        try:
            s_reader, s_writer = await self._connect_upstream()
        except OSError:
            if self.unavailable_503:
                await _answer_503(c_reader, c_writer)
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
        line = _Line(writer, fault) if fault is not None and fault.shaped else None
        sent = 0
        opened = time.monotonic()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    if line is not None:
                        await line.flush()
                    if not hole.is_set():
                        with contextlib.suppress(OSError):
                            writer.write_eof()
                    return
                if hole.is_set():
                    continue  # swallowed: nothing crosses a black hole
                if fault is not None and fault.kind != "none" and _due(fault, sent, data, opened):
                    if fault.after_s:
                        cut = len(data) // 2 if fault.mid_chunk else 0
                    else:
                        cut = max(0, fault.after_bytes - sent)
                    if cut:
                        await _send(line, writer, data[:cut])
                    if line is not None:
                        await line.flush()
                    self._fire(writer, fault, n)
                    if fault.kind in ("blackhole", "stall"):
                        if fault.kind == "blackhole":
                            hole.set()
                        await asyncio.Event().wait()  # hold both sockets open until stop()
                    return
                await _send(line, writer, data)
                sent += len(data)
        finally:
            if line is not None:
                line.close()

    def _fire(self, writer: asyncio.StreamWriter, fault: Fault, n: int) -> None:
        self.fired.append((n, fault.kind))
        self.fired_at.append(time.monotonic())
        if fault.kind == "close":
            writer.close()
        elif fault.kind == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


_503_BODY = b'{"error": "no healthy upstream now"}'
_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_503_BODY), _503_BODY)
)


async def _answer_503(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.read(24), 2.0)
    except (TimeoutError, ConnectionError):
        return
    if head and not head.startswith(b"PRI * HTTP/2.0"):
        writer.write(_503)
        with contextlib.suppress(ConnectionError):
            await writer.drain()


def _due(fault: Fault, sent: int, data: bytes, opened: float) -> bool:
    if fault.after_s:
        return time.monotonic() - opened >= fault.after_s
    return sent + len(data) >= fault.after_bytes


async def _send(line: _Line | None, writer: asyncio.StreamWriter, data: bytes) -> None:
    if line is None:
        writer.write(data)
        await writer.drain()
    else:
        await line.send(data)


class _Line:
    """Shaped delivery to the client: a delay line with a bandwidth cap and tiny chunks.

    Bounded: when the line is full the proxy stops reading from the server, so a bandwidth cap
    pushes back on the server through TCP instead of piling up here.
    """

    def __init__(self, writer: asyncio.StreamWriter, fault: Fault) -> None:
        self.writer, self.fault = writer, fault
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=1024)
        self.last_due = 0.0
        self.rng = random.Random()
        self.task = asyncio.ensure_future(self._run())

    async def send(self, data: bytes) -> None:
        f = self.fault
        loop = asyncio.get_running_loop()
        delay = (f.latency_ms + self.rng.uniform(-f.jitter_ms, f.jitter_ms)) / 1000
        due = max(self.last_due, loop.time() + delay)  # order is kept: no overtaking
        self.last_due = due
        size = f.chunk_bytes or len(data)
        for i in range(0, len(data), size):
            await self.queue.put((due, data[i : i + size]))

    async def flush(self) -> None:
        await self.queue.join()

    def close(self) -> None:
        self.task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        f, writer = self.fault, self.writer
        while True:
            due, piece = await self.queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                writer.write(piece)
                await writer.drain()
            except (ConnectionError, RuntimeError):
                pass  # the client went away; keep draining so flush() returns
            if f.bytes_per_s:
                await asyncio.sleep(len(piece) / f.bytes_per_s)
            elif f.chunk_bytes:
                await asyncio.sleep(0.0005)  # tiny pieces leave as separate segments
            self.queue.task_done()
