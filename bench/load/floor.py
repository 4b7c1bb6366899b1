"""``tokenbench floor``: what the load generator's per-token cost is made of, on this machine.

Two measurements, the yardsticks for the load generator's CPU per token:

- **event-loop floor.** A child process sends one small SSE event per connection 40 times a
  second over N loopback connections. This process (uvloop, or the stock asyncio loop) receives
  them into an empty ``data_received``. The figure is CPU (user and system) per message: the
  least any Python client can pay per token that arrives alone.
- **parse path in a hot loop.** The SSE client's path from bytes to a checked token
  (httptools, the WHATWG parser, JSON, the seq check, two histogram records, the text check),
  fed pre-built chunks with no sockets: its cost when every cache is warm. Inside a loaded
  load generator the same code runs cold, and costs more.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any

import uvloop

from bench.results.hist import Histogram
from clients.base import Reader
from clients.http import HttpConnection
from clients.sse_parser import SSEParser
from servers.tokens.core import Codec

EVENT = b'id: 1\ndata: {"seq":1,"t":1795633324208943340,"text":" hello"}\n\n'


def _send(port: int, connections: int, rate: float, seconds: float) -> None:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    start, tick = time.time(), 0
    while time.time() - start < seconds:
        for s in socks:
            s.send(EVENT)
        tick += 1
        time.sleep(max(0.0, start + tick / rate - time.time()))
    for s in socks:
        s.close()


async def _receive(connections: int, rate: float, seconds: float) -> dict[str, float]:
    count = [0]

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            count[0] += 1

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pid = os.fork()
    if pid == 0:  # the sender: a separate process, as a server would be
        try:
            _send(port, connections, rate, seconds)
        finally:
            os._exit(0)
    await asyncio.sleep(1.0)  # connections up, steady state
    t0, n0, w0 = os.times(), count[0], time.monotonic()
    await asyncio.sleep(max(1.0, seconds - 2.0))
    t1, n, window = os.times(), count[0] - n0, time.monotonic() - w0
    await loop.run_in_executor(None, os.waitpid, pid, 0)
    server.close()
    return {
        "messages": n,
        "window_s": window,
        "cpu_s": (t1.user - t0.user) + (t1.system - t0.system),
        "user_us": (t1.user - t0.user) / n * 1e6 if n else float("nan"),
        "system_us": (t1.system - t0.system) / n * 1e6 if n else float("nan"),
    }


def event_loop_floor(loop: str, connections: int = 500, rate: float = 40.0,
                     seconds: float = 8.0) -> dict[str, float]:  # fmt: skip
    runner = uvloop.run if loop == "uvloop" else asyncio.run
    return runner(_receive(connections, rate, seconds))


def parse_path(tokens: int = 20_000) -> float:
    """Microseconds per token for the SSE client's path, fed from memory (no syscalls)."""
    sid, stream = Codec().new_stream(100_000, 40.0, time.time_ns())
    chunks = []
    for seq in range(tokens):
        event = f"id: {seq}\ndata: {stream.payload(seq)}\n\n".encode()
        chunks.append(b"%x\r\n" % len(event) + event + b"\r\n")

    async def run() -> float:
        conn = HttpConnection(asyncio.get_running_loop())
        latency, gap, prev, wrong = Histogram(), Histogram(), [0], [0]

        def on_token(seq: int, t: int, text: str) -> None:
            now = time.time_ns()
            latency.record((now - t) // 1000)
            if prev[0]:
                gap.record((now - prev[0]) // 1000)
            prev[0] = now
            if stream.text(seq) != text:
                wrong[0] += 1

        reader = Reader("http://x", sid, on_token)

        def on_event(kind: str, data: str, last_id: str) -> None:
            doc: dict[str, Any] = json.loads(data)
            reader.deliver(doc["seq"], doc["t"], doc["text"])

        conn.body_sink = SSEParser(on_event).feed
        conn._head, conn._done = conn.loop.create_future(), conn.loop.create_future()
        conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                           b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip
        start = time.perf_counter()
        for chunk in chunks:
            conn.data_received(chunk)
        took = (time.perf_counter() - start) / tokens * 1e6
        # Checked here, not in the callbacks, where the HTTP parser would swallow an error.
        if reader.delivered != tokens or wrong[0]:
            raise RuntimeError(f"parse path delivered {reader.delivered} of {tokens} tokens, "
                               f"{wrong[0]} with a wrong text")  # fmt: skip
        return took

    return asyncio.run(run())
