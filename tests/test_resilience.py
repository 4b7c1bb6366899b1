"""Drops, stalls and shutdowns: the server cleans up, the clients resume with nothing lost."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
from websockets.asyncio.client import connect as ws_connect

import transports
from bench.faults.proxy import Fault, FaultProxy
from clients import ClientOptions, create_stream, reader_class
from proto import tokens_pb2 as pb
from proto import tokens_pb2_grpc as pb_grpc
from servers.tokens.core import Codec
from tests.conftest import (
    HTTP_TRANSPORTS,
    STACKS,
    TRANSPORTS,
    ServerHandle,
    retry,
    start_server,
    wait_for,
)
from transports import stacks

pytestmark = pytest.mark.timeout(90)

WS_HEADERS = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)
ERROR_MARKS = ("Traceback", "ERROR", "Exception", "exception")


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both server stacks."""
    return request.param


def raw_request(port: int, transport: str, sid: str, after: int = -1) -> socket.socket:
    """A bare TCP client that sends one read request and then does whatever the test wants."""
    sock = socket.socket()
    sock.connect(("127.0.0.1", port))
    path = {"sse": "sse", "ws": "ws", "poll": "poll?timeout=5"}[transport]
    path += ("&" if "?" in path else "?") + f"after={after}"
    extra = WS_HEADERS if transport == "ws" else ""
    sock.sendall(f"GET /v1/streams/{sid}/{path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
    return sock


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


CLIENT = """
import asyncio, sys
from clients import stream
async def main():
    async for tok in stream(sys.argv[1], sys.argv[2], sys.argv[3]):
        print(tok.seq, flush=True)
asyncio.run(main())
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_killed_client_costs_the_server_nothing(server_factory, transport: str) -> None:
    # Seq 0 at once, seq 1 after 10 s, heartbeats every 15 s: the server learns that the client
    # left within 8 s only if it watches the connection, not by failing its next write.
    srv: ServerHandle = server_factory(transport)
    info = await create_stream(transport, srv.url, tokens=100, rate=0.1)
    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT, transport, srv.url, info["id"]], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"0"
        assert wait_for(lambda: srv.counters()["connections_open"] == 1, 5)
    finally:
        child.kill()
        child.wait()
    assert wait_for(lambda: srv.counters()["connections_open"] == 0, 8.0), srv.counters()
    await asyncio.sleep(0.5)
    assert not any(mark in srv.stderr() for mark in ERROR_MARKS), srv.stderr()


STALL_AFTER = 20_000  # bytes the proxy forwards before it stops reading from the server
PROXY_RCVBUF = 64 * 1024  # SO_RCVBUF of the proxy's sockets to the server (no autotuning)
# What the proxy process itself may have read off the server socket: one 64 KiB read, plus what
# an asyncio StreamReader buffers before it pauses reading (twice its 64 KiB limit).
PROXY_READ = 3 * 65_536
GRPC_WINDOW = 64 * 1024  # the stalled gRPC readers' fixed HTTP/2 window (ClientOptions)


def _wmem_max() -> int:
    """net.ipv4.tcp_wmem's maximum: how far the kernel grows a socket's send buffer (tcp(7))."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        return int(f.read().split()[2])


def _bytes_written(port: int) -> int:
    """What the server wrote to its open connections: acknowledged by the peer (tcp_info's
    bytes_acked) plus still queued (Send-Q), from ss -i (iproute2). /proc's wchar would miss
    grpcio, which writes with sendmsg."""
    if shutil.which("ss") is None:
        pytest.fail("this test reads tcp_info with ss: apt-get install iproute2")
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    queued = sum(int(line.split()[1]) for line in out.splitlines() if not line[:1].isspace())
    return queued + sum(int(n) for n in re.findall(r"bytes_acked:(\d+)", out))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_stalled_reader_is_bounded_and_does_not_delay_others(
    server_factory, transport: str, stack: str
) -> None:
    srv: ServerHandle = server_factory(transport)
    pid = srv.pids[0]
    rss_before = rss_kib(pid)
    # Four readers, each owed 100,000 tokens (2.7 to 7 MB on the wire) at once, stop reading at
    # the TCP level: a proxy that stops reading from the server after 20 kB (client libraries
    # such as grpcio's would otherwise keep pulling bytes into their own memory).
    proxy = FaultProxy(
        ("127.0.0.1", srv.port), lambda n: Fault("stall", after_bytes=STALL_AFTER),
        upstream_rcvbuf=PROXY_RCVBUF,
    )  # fmt: skip
    port = await proxy.start()
    stalled = []
    opts = ClientOptions(grpc_window=GRPC_WINDOW)
    for _ in range(4):
        sid, _ = Codec().new_stream(100_000, 1000.0, time.time_ns() - 99 * 10**9)
        url = transports.get(transport).url("127.0.0.1", port)
        reader = reader_class(transport)(url, sid, lambda *a: None, None, opts)
        stalled.append(asyncio.ensure_future(reader.run()))
    # Meanwhile a well-behaved reader of a live stream must not be held up.
    live = await create_stream(transport, srv.url, tokens=100, rate=200)
    latencies: list[int] = []
    reader = reader_class(transport)(
        srv.url, live["id"], lambda s, t, x: latencies.append(time.time_ns() - t)
    )
    await asyncio.wait_for(reader.run(), 30)
    assert reader.cursor == 99
    latencies.sort()
    # Fair: the live reader is not held while the stalled ones' backlogs are written (a stack
    # may hold it briefly: its record says how long, transports/stacks.py)
    allowed_ns = stacks.get(stack).stalled_delay_s * 1e9
    assert latencies[int(len(latencies) * 0.99)] < allowed_ns, latencies[-5:]
    # What the server can have written to a reader that stopped: what the proxy took (20 kB
    # forwarded, its own reads), the proxy socket's fixed receive buffer (the kernel doubles
    # SO_RCVBUF, socket(7)) and the server socket's send buffer, at most tcp_wmem's maximum
    # plus the one 64 KiB segment the kernel queues past it. For gRPC, HTTP/2 flow control
    # bounds it tighter: the reader's window (RFC 9113 6.9).
    per_reader = STALL_AFTER + PROXY_READ + 2 * PROXY_RCVBUF + _wmem_max() + 65_536
    if transports.get(transport).scheme == "grpc":
        per_reader = STALL_AFTER + GRPC_WINDOW + 16_384  # plus one DATA frame in flight
    bound = 4 * per_reader + 64 * 1024  # + heads, settings, pings

    def written() -> int:
        return _bytes_written(srv.port)  # the live reader is done: only stalled ones are open

    samples = [written()]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (len(samples) < 3 or samples[-1] != samples[-3]):
        await asyncio.sleep(0.3)
        samples.append(written())
        assert samples[-1] <= bound, (samples, bound)
    assert samples[-1] == samples[-3], samples  # the server stopped writing...
    assert samples[-1] <= bound, (samples, bound)  # ...within the bound
    # The server's own memory holds at most a batch per reader: the rest is in kernel buffers
    # (buffering 400,000 owed tokens as Python objects would take some 40 MB).
    assert rss_kib(pid) - rss_before < 16 * 1024
    for task in stalled:
        task.cancel()
    await proxy.stop()


# Tuned for quick detection: a 0.5 s heartbeat, and a 1 s long-poll wait (a poll client cannot
# tell a black hole from a long wait sooner than its poll timeout plus a margin).
FAST = ClientOptions(
    heartbeat=0.5, backoff_initial=0.02, backoff_max=0.2, give_up_after=20, poll_timeout=1.0
)


@pytest.fixture(scope="module")
def fault_servers(stack: str) -> Iterator[dict[str, ServerHandle]]:
    """The fault matrix's server per transport on this stack, shared by its three faults: the
    proxy cuts the client's side, and the server only sees connections end."""
    started: dict[str, ServerHandle] = {}
    yield started
    for handle in started.values():
        handle.stop()
        handle.stderr_path.unlink(missing_ok=True)


@pytest.mark.parametrize("fault", ["close", "reset", "blackhole"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_clients_survive_faults_with_every_token_once(
    fault_servers: dict[str, ServerHandle], transport: str, fault: str, stack: str
) -> None:
    """The fault is the proxy's and the resume the client's; each stack's answer to a resume is
    the contract suite's (on every stack), so this matrix runs on stock and on the floor."""
    if stack not in (stacks.STOCK, stacks.TUNED[0]):
        pytest.skip(f"the fault matrix runs on {stacks.STOCK} and {stacks.TUNED[0]}")
    if stack not in transports.get(transport).stacks:
        pytest.skip(f"{transport} has no {stack} stack")
    if transport not in fault_servers:
        fault_servers[transport] = start_server(
            transport, "--heartbeat", "0.5", *retry(transport, 50), stack=stack
        )
    srv = fault_servers[transport]
    info = await create_stream(transport, srv.url, tokens=150, rate=200)
    # Connections 0 and 1 die mid-stream (a cut mid-frame at an odd byte count), then clean.
    plan = {0: Fault(fault, after_bytes=1999), 1: Fault(fault, after_bytes=3001)}
    proxy = FaultProxy(("127.0.0.1", srv.port), plan.get)
    port = await proxy.start()
    got: list[tuple[int, str]] = []
    reader = reader_class(transport)(
        transports.get(transport).url("127.0.0.1", port), info["id"],
        lambda s, t, x: got.append((s, x)), None, FAST,
    )  # fmt: skip
    try:
        await asyncio.wait_for(reader.run(), 30)
    finally:
        await proxy.stop()
    expected = Codec().decode(info["id"])
    assert got == [(s, expected.text(s)) for s in range(150)]
    assert [n for n, _ in proxy.fired] == [0, 1]
    assert reader.stats.reconnects >= 2
    assert reader.stats.gaps == 0


async def test_sse_heartbeat_comment_after_idle(server_factory) -> None:
    srv: ServerHandle = server_factory("sse", "--heartbeat", "0.3")
    info = await create_stream("sse", srv.url, tokens=2, rate=0.1)  # 10 s between tokens
    sock = raw_request(srv.port, "sse", info["id"])
    sock.settimeout(3)
    data = b""
    deadline = time.monotonic() + 2
    while b": keep-alive\n\n" not in data and time.monotonic() < deadline:
        data += sock.recv(4096)
    sock.close()
    assert b"retry: 1000" in data and b"id: 0\n" in data and b": keep-alive\n\n" in data


async def test_websocket_server_pings(server_factory) -> None:
    srv: ServerHandle = server_factory("ws", "--heartbeat", "0.3")
    info = await create_stream("ws", srv.url, tokens=2, rate=0.1)
    sock = raw_request(srv.port, "ws", info["id"])
    sock.settimeout(3)
    data = b""
    deadline = time.monotonic() + 2
    while b"\x89" not in data.split(b"\r\n\r\n", 1)[-1] and time.monotonic() < deadline:
        data += sock.recv(4096)  # 0x89: a final ping frame (RFC 6455 5.5.2)
    sock.close()
    assert data.startswith(b"HTTP/1.1 101")
    assert b"\x89" in data.split(b"\r\n\r\n", 1)[1]


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each whole unmasked server frame after the 101 head (RFC 6455 §5.2)."""
    buf, out = data.split(b"\r\n\r\n", 1)[1], []
    while len(buf) >= 2:
        n, at = buf[1] & 0x7F, 2
        if n == 126:
            n, at = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            n, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + n:
            break
        out.append((buf[0] & 0x0F, buf[at : at + n]))
        buf = buf[at + n :]
    return out


async def test_websocket_client_that_never_answers_a_ping_is_closed(server_factory) -> None:
    # A reader that reads but never sends a frame back: no pong. The stream would run 10 s; the
    # server fails the connection with 1011 once a ping went unanswered for a heartbeat (0.3 s).
    srv: ServerHandle = server_factory("ws", "--heartbeat", "0.3")
    info = await create_stream("ws", srv.url, tokens=400, rate=40)
    sock = raw_request(srv.port, "ws", info["id"])
    sock.settimeout(1)
    data, start = b"", time.monotonic()
    while time.monotonic() - start < 8:
        try:
            got = await asyncio.to_thread(sock.recv, 65536)
        except TimeoutError:
            continue
        if not got:
            break
        data += got
    sock.close()
    assert time.monotonic() - start < 8, "the server never closed a client that never ponged"
    frames = server_frames(data)
    assert any(op == 0x9 for op, _ in frames)  # it was pinged
    assert frames[-1][0] == 0x8 and int.from_bytes(frames[-1][1][:2], "big") == 1011
    assert sum(op == 0x1 for op, _ in frames) < 400  # cut short


async def test_websocket_client_that_answers_pings_reads_to_the_end(server_factory) -> None:
    # A client that pongs (websockets does) reads the whole stream. A 1 s heartbeat: a busy
    # machine would have to stall this process for a second to miss a pong.
    srv: ServerHandle = server_factory("ws", "--heartbeat", "1")
    info = await create_stream("ws", srv.url, tokens=60, rate=15)  # 4 s: about 4 heartbeats
    url = srv.url.replace("http", "ws") + f"/v1/streams/{info['id']}/ws"
    async with ws_connect(url, ping_interval=None) as ws:
        messages = [json.loads(m) async for m in ws]
    assert [m["seq"] for m in messages[:-1]] == list(range(60)) and messages[-1]["end"]
    assert ws.close_code == 1000


async def test_sigterm_closes_websockets_with_1001(server_factory) -> None:
    srv: ServerHandle = server_factory("ws", "--grace", "2")
    info = await create_stream("ws", srv.url, tokens=1000, rate=10)
    url = srv.url.replace("http", "ws") + f"/v1/streams/{info['id']}/ws"
    async with ws_connect(url) as ws:
        first = json.loads(await ws.recv())
        assert first["seq"] == 0
        srv.proc.send_signal(signal.SIGTERM)
        with pytest.raises(Exception):  # noqa: B017 (ConnectionClosed, whichever subclass)
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1001
    assert srv.proc.wait(10) == 0


async def test_sigterm_ends_grpc_streams_unavailable(server_factory) -> None:
    srv: ServerHandle = server_factory("grpc", "--grace", "2")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
        stub = pb_grpc.TokenStreamStub(channel)
        created = await stub.CreateStream(pb.CreateStreamRequest(tokens=1000, rate=10))
        call = stub.StreamTokens(pb.StreamRequest(id=created.id))
        assert (await call.read()).seq == 0
        srv.proc.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            while True:
                await asyncio.wait_for(call.read(), 5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert srv.proc.wait(10) == 0


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
async def test_sigterm_exits_cleanly_with_open_streams(server_factory, transport: str) -> None:
    srv: ServerHandle = server_factory(transport, "--grace", "2", workers=2)
    info = await create_stream(transport, srv.url, tokens=1000, rate=10)
    socks = [raw_request(srv.port, transport, info["id"], after=0) for _ in range(4)]
    assert wait_for(lambda: srv.counters()["connections_open"] >= 1, 5)
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(10) == 0  # the supervisor kills what is left after grace + 3 s
    for s in socks:
        s.close()
    assert not any(mark in srv.stderr() for mark in ("Traceback",)), srv.stderr()
