"""bench.faults.proxy: every fault and every shaping, observed on the wire with raw sockets."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.faults.proxy import Fault, FaultProxy

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes, every byte position recognisable


class Upstream:
    """A server that writes PAYLOAD in 512-byte pieces every 5 ms and notes what it saw."""

    def __init__(self) -> None:
        self.port = 0
        self.client_eof = asyncio.Event()
        self.write_blocked = asyncio.Event()
        self.received = b""
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def read_side() -> None:
            while data := await reader.read(4096):
                self.received += data
            self.client_eof.set()

        task = asyncio.ensure_future(read_side())
        try:
            for i in range(0, len(PAYLOAD), 512):
                writer.write(PAYLOAD[i : i + 512])
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except TimeoutError:
                    self.write_blocked.set()
                    await asyncio.sleep(30)
                await asyncio.sleep(0.005)
            await asyncio.sleep(30)  # keep the connection open; the test ends it
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            task.cancel()
            writer.transport.abort()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()


async def _through(fault: Fault | None):  # type: ignore[no-untyped-def]
    upstream = Upstream()
    await upstream.start()
    proxy = FaultProxy(("127.0.0.1", upstream.port), lambda n: fault)
    port = await proxy.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return upstream, proxy, reader, writer


async def _read_until_quiet(reader: asyncio.StreamReader, quiet: float) -> tuple[bytes, str]:
    """Read until EOF, reset, or ``quiet`` seconds without a byte."""
    data = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), quiet)
        except TimeoutError:
            return data, "quiet"
        except ConnectionResetError:
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk


async def _cleanup(upstream: Upstream, proxy: FaultProxy, writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()
    await proxy.stop()
    upstream.stop()


@pytest.mark.parametrize(("kind", "ending"), [("close", "eof"), ("reset", "reset")])
async def test_close_and_reset_cut_at_the_byte(kind: str, ending: str) -> None:
    upstream, proxy, reader, writer = await _through(Fault(kind, after_bytes=3001))
    data, how = await _read_until_quiet(reader, 3.0)
    assert (data, how) == (PAYLOAD[:3001], ending)  # mid-piece: a frame cut in two
    assert proxy.fired == [(0, kind)]
    await _cleanup(upstream, proxy, writer)


async def test_blackhole_goes_silent_both_ways_without_fin_or_rst() -> None:
    upstream, proxy, reader, writer = await _through(Fault("blackhole", after_bytes=2000))
    data, how = await _read_until_quiet(reader, 1.0)
    assert (data, how) == (PAYLOAD[:2000], "quiet")  # no EOF, no reset: just silence
    writer.write(b"ping")
    await writer.drain()
    await asyncio.sleep(0.3)
    assert upstream.received == b""  # nothing crosses, in either direction
    assert not upstream.client_eof.is_set()
    await _cleanup(upstream, proxy, writer)


async def test_stall_stops_reading_from_the_server() -> None:
    upstream, proxy, reader, writer = await _through(Fault("stall", after_bytes=1024))
    data, how = await _read_until_quiet(reader, 1.0)
    assert (data, how) == (PAYLOAD[:1024], "quiet")
    writer.write(b"still here")  # the client side still works
    await writer.drain()
    await asyncio.sleep(0.3)
    assert upstream.received == b"still here"
    await _cleanup(upstream, proxy, writer)


async def test_latency_with_jitter_delays_but_keeps_order() -> None:
    upstream, proxy, reader, writer = await _through(Fault(latency_ms=200, jitter_ms=50))
    start = time.monotonic()
    first = await reader.read(65536)
    assert time.monotonic() - start >= 0.14  # at least latency - jitter after the connect
    data, _ = await _read_until_quiet(reader, 1.0)
    assert first + data == PAYLOAD  # every byte, in order
    await _cleanup(upstream, proxy, writer)


async def test_bandwidth_cap() -> None:
    upstream, proxy, reader, writer = await _through(Fault(bytes_per_s=20_000))
    start = time.monotonic()
    data = b""
    while len(data) < len(PAYLOAD):
        data += await asyncio.wait_for(reader.read(65536), 5)
    elapsed = time.monotonic() - start
    assert data == PAYLOAD
    assert elapsed >= 0.9 * (len(PAYLOAD) - 512) / 20_000  # about 0.5 s at 20 kB/s
    await _cleanup(upstream, proxy, writer)


async def test_tiny_chunks_split_frames() -> None:
    upstream, proxy, reader, writer = await _through(Fault(chunk_bytes=7))
    pieces = []
    data = b""
    while len(data) < 512:
        piece = await asyncio.wait_for(reader.read(65536), 2)
        pieces.append(piece)
        data += piece
    assert len(pieces) >= 10  # arrived in many small reads, not one 512-byte piece
    assert data == PAYLOAD[: len(data)]
    await _cleanup(upstream, proxy, writer)


def test_bad_faults_are_rejected() -> None:
    for bad in (
        {"kind": "meteor"},
        {"after_bytes": -1},
        {"latency_ms": 10, "jitter_ms": 20},
    ):
        with pytest.raises(ValueError):
            Fault(**bad)  # type: ignore[arg-type]


async def test_a_dead_upstream_answers_503_like_a_load_balancer() -> None:
    proxy = FaultProxy(("127.0.0.1", 1), lambda n: None, unavailable_503=True)  # nothing there
    port = await proxy.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/streams/x/sse HTTP/1.1\r\nHost: t\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b'"no healthy upstream now"}')
    writer.close()
    await proxy.stop()
