"""The load generator's gRPC client (clients/h2grpc.py) reads what grpcio's client reads.

A server-side h2 connection writes the frames a gRPC server may send (split messages, several
per frame, padding, unknown fields, duplicates, late tokens, PING, SETTINGS, WINDOW_UPDATE)
and each way a call can end. The Python path and the compiled path (mode ``grpc``) get the same
bytes, split at every position, and must agree on tokens, counters, status and the frames sent
back. Then a real server: the same stream read by grpcio and by both paths, and a tapped reader
resuming through faults with every token once.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from clients import ClientOptions, GaveUp, StreamError, create_stream, fast
from clients.base import Retry
from clients.h2conn import Session
from clients.h2grpc import H2GrpcReader
from clients.rpc import GrpcReader
from proto import tokens_pb2 as pb
from servers.tokens.core import Stream
from tests.fakes import FakeTransport

SEED = 987654321987654321
STREAM = Stream(1_764_000_000_000_000_000, 40, 40.0, SEED)
WINDOW = 1 << 16


class OneConnection:
    """A ``Channel`` that hands out one given session."""

    def __init__(self, conn: Session) -> None:
        self.conn = conn

    async def connect(self, timeout: float | None = None) -> Session:
        return self.conn


def message(token: pb.Token, extra: bytes = b"", flag: int = 0) -> bytes:
    body = token.SerializeToString() + extra
    return bytes([flag]) + len(body).to_bytes(4, "big") + body


def tok(seq: int) -> pb.Token:
    return pb.Token(seq=seq, t=STREAM.due_ns(seq), text=STREAM.text(seq))


OK = [("grpc-status", "0")]


ENDS = {
    "ok": (True, None),
    "not-found": (StreamError, "NOT_FOUND"),
    "rst": (Retry, "grpc CANCELLED"),
    "goaway": (Retry, "grpc UNAVAILABLE"),
    "compressed": (Retry, "grpc INTERNAL"),
    "bad-protobuf": (Retry, "grpc INTERNAL"),
    "too-large": (Retry, "grpc RESOURCE_EXHAUSTED"),
    "no-trailers": (Retry, "grpc INTERNAL"),
}


def script(request: bytes, end: str) -> bytes:
    """What a server sends after reading ``request``: one call's answer, ending as ``end``."""
    srv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    srv.initiate_connection()
    srv.receive_data(request)
    sid = 1
    body = [message(tok(s)) for s in range(12)]
    body[3] = message(tok(3), extra=b"\x48\x07")  # an unknown field 9: skipped
    reordered = pb.Token(text=STREAM.text(4), t=STREAM.due_ns(4)).SerializeToString() + b"\x08\x04"
    body[4] = b"\0" + len(reordered).to_bytes(4, "big") + reordered  # seq last
    body[7] = message(pb.Token(seq=7, t=1, text="not it"))  # a wrong text
    body += [message(tok(5)), message(tok(13)), message(tok(12)), message(tok(14))]  # dup, late
    wire = b"".join(body)
    srv.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    srv.send_data(sid, wire[:7])  # a message across frames
    srv.send_data(sid, wire[7:40])
    srv.ping(b"12345678")
    srv.send_data(sid, wire[40:41])
    srv.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 50})
    srv.increment_flow_control_window(1000)
    srv.send_data(sid, wire[41:200], pad_length=17)
    srv.send_data(sid, wire[200:])  # several messages in one frame
    if end == "ok":
        srv.send_headers(sid, OK, end_stream=True)
    elif end == "not-found":
        srv.send_headers(sid, [("grpc-status", "5"), ("grpc-message", "no%20such")], True)
    elif end == "rst":
        srv.reset_stream(sid, 8)
    elif end == "goaway":
        srv.close_connection(last_stream_id=0)
    elif end == "compressed":
        srv.send_data(sid, message(tok(15), flag=1))
    elif end == "bad-protobuf":
        srv.send_data(sid, b"\0\0\0\0\x02\x08\xff")  # a varint cut short
    elif end == "too-large":
        srv.send_data(sid, b"\0" + (5 << 20).to_bytes(4, "big") + b"x" * 100)
    elif end == "no-trailers":
        srv.send_data(sid, message(tok(15)), end_stream=True)
    return srv.data_to_send()


async def read(end: str, pieces_at: list[int] | None, tapped: bool) -> tuple:
    """Read one scripted call; ``pieces_at`` cuts the server's bytes (None: one piece). The
    last item is how many tokens the compiled path delivered itself (not compared)."""
    loop = asyncio.get_running_loop()
    conn = Session(loop, "x:1", WINDOW, heartbeat=1000)
    transport = FakeTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    seen = {"tokens": 0, "wrong": 0}

    def on_token(seq: int, t: int, text: str) -> None:
        seen["tokens"] += 1
        seen["wrong"] += text != STREAM.text(seq)

    reader = H2GrpcReader("http://x:1", "id", on_token)
    reader.session = OneConnection(conn)  # type: ignore[assignment]
    tally = fast.tally() if tapped else None
    on_fast: list[int] = []
    if tapped:
        fast.tap_for(reader, "grpc", tally, SEED, 0)
        tap_end = reader.tap_end
        reader.tap_end = lambda c: (on_fast.append(reader.tap.delivered), tap_end(c))  # type: ignore
    task = asyncio.ensure_future(reader._attempt(-1))
    await asyncio.sleep(0)
    request = bytes(transport.written)
    transport.written.clear()
    wire = script(request, end)
    cuts = [0, *(pieces_at or []), len(wire)]
    for a, b in itertools.pairwise(cuts):
        transport.protocol.data_received(wire[a:b])
        for _ in range(3):
            await asyncio.sleep(0)  # the reader switches to the compiled path here
    try:
        result: Any = await asyncio.wait_for(task, 5)
    except (Retry, StreamError) as exc:
        result = (type(exc), getattr(exc, "reason", None) or getattr(exc, "status", None))
    if tally is not None:
        tokens, wrong, *_ = tally.take()
        seen = {"tokens": tokens, "wrong": wrong}
    sent = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    events = sent.receive_data(request + bytes(transport.written))
    acks = sum(isinstance(e, h2.events.PingAckReceived) for e in events)
    s = reader.stats
    return (result, seen, reader.delivered, reader.cursor, s.dropped_duplicates, s.out_of_order,
            s.gaps, acks, conn.buffer == b"", sum(on_fast))  # fmt: skip


def test_the_script_holds_what_it_says() -> None:
    want = asyncio.run(read("ok", None, False))[:-1]
    # 0..11, 13, 14 delivered (7 with the wrong text); 5 twice; 12 after 13: late, dropped
    assert want[0] is True
    assert want[1:4] == ({"tokens": 14, "wrong": 1}, 14, 14)
    assert want[4:8] == (1, 1, 1, 1)  # 5 twice; 12 late (a gap, then out of order); one PING


@pytest.mark.skipif(not fast.enabled(), reason="clients/_fastpath.c was not built")
@pytest.mark.parametrize("end", list(ENDS))
async def test_compiled_path_matches_python_at_every_split(end: str) -> None:
    want = (await read(end, None, False))[:-1]
    kind, detail = ENDS[end]
    if kind is True:
        assert want[0] is True
    else:
        assert want[0] == (kind, detail)
    loop_wire = await _wire_length(end)
    rng = random.Random(end)
    splits = [[i] for i in range(loop_wire + 1)] if end == "ok" else []
    splits += [sorted(rng.sample(range(1, loop_wire), 5)) for _ in range(60)]
    splits += [[i] for i in rng.sample(range(loop_wire + 1), 40)]
    on_fast = 0
    for cut in splits:
        *got, n = await read(end, cut, True)
        assert tuple(got) == want, cut
        on_fast += n
        assert (await read(end, cut, False))[:-1] == want, cut
    assert on_fast > 0  # the compiled path did read, where the head came in its own piece


async def _wire_length(end: str) -> int:
    loop = asyncio.get_running_loop()
    conn = Session(loop, "x:1", WINDOW, heartbeat=1000)
    transport = FakeTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.start("/p", b"")
    return len(script(bytes(transport.written), end))


async def test_credit_keeps_the_window_open_on_both_paths() -> None:
    """3,000 tokens through a 64 KiB window: the server never waits for credit."""
    for tapped in (False, True):
        loop = asyncio.get_running_loop()
        conn = Session(loop, "x:1", WINDOW, heartbeat=1000)
        transport = FakeTransport(conn)
        conn.connection_made(transport)  # type: ignore[arg-type]
        reader = H2GrpcReader("http://x:1", "id", lambda *a: None)
        reader.session = OneConnection(conn)  # type: ignore[assignment]
        tally = fast.tally() if tapped else None
        if tapped:
            fast.tap_for(reader, "grpc", tally, SEED, 0)
        task = asyncio.ensure_future(reader._attempt(-1))
        await asyncio.sleep(0)
        srv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        srv.initiate_connection()
        srv.receive_data(bytes(transport.written))
        transport.written.clear()
        srv.send_headers(1, [(":status", "200"), ("content-type", "application/grpc")])
        for seq in range(3000):
            srv.receive_data(bytes(transport.written))
            transport.written.clear()
            data = message(tok(seq % 40) if seq < 40 else pb.Token(seq=seq, t=1, text="x" * 20))
            assert srv.local_flow_control_window(1) >= len(data), (tapped, seq)
            srv.send_data(1, data)
            transport.protocol.data_received(srv.data_to_send())
            await asyncio.sleep(0)
        srv.send_headers(1, OK, end_stream=True)
        transport.protocol.data_received(srv.data_to_send())
        assert await asyncio.wait_for(task, 5) is True
        assert (reader.delivered, reader.cursor) == (3000, 2999)


# ---- a real server ----

FAULTY = ClientOptions(heartbeat=0.5, backoff_initial=0.02, backoff_max=0.2, give_up_after=20)


async def test_the_same_stream_as_grpcio(server_factory) -> None:
    srv = server_factory("grpc")
    info = await create_stream("grpc", srv.url, tokens=300, rate=1000)
    got: dict[str, list[tuple[int, int, str]]] = {}
    for name, cls in (("grpcio", GrpcReader), ("h2", H2GrpcReader)):
        got[name] = out = []
        await asyncio.wait_for(cls(srv.url, info["id"], lambda *a, o=out: o.append(a)).run(), 30)
    assert got["h2"] == got["grpcio"] and len(got["h2"]) == 300
    after = await _collect(srv.url, info["id"], 149)
    assert after == got["grpcio"][150:]
    with pytest.raises(StreamError) as err:
        await H2GrpcReader(srv.url, "no-such-id", lambda *a: None).run()
    assert err.value.status in ("NOT_FOUND", "INVALID_ARGUMENT")


async def _collect(url: str, sid: str, after: int) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    await asyncio.wait_for(H2GrpcReader(url, sid, lambda *a: out.append(a), after).run(), 30)
    return out


async def test_a_dead_port_gives_up_with_a_reason() -> None:
    opts = ClientOptions(heartbeat=0.5, backoff_initial=0.01, backoff_max=0.05, give_up_after=0.3)
    with pytest.raises(GaveUp, match="connect failed"):
        await H2GrpcReader("http://127.0.0.1:1", "x", lambda *a: None, None, opts).run()
