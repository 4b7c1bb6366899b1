"""The compiled receive path (clients/_fastpath.c) gives the same answers as the Python path.

Same bytes into both, split at every position: tokens delivered, cursor, duplicates, wrong
texts and every event or frame the C side hands back must match. Then a real server with
faults: a tapped reader resumes with every token once.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest

import transports
from bench.faults.proxy import Fault, FaultProxy
from clients import ClientOptions, create_stream, fast
from clients.base import Reader
from clients.sse import SSEReader
from clients.sse_parser import SSEParser
from clients.ws import WSReader, _Session
from servers.tokens import texts
from servers.tokens.core import Codec, Stream
from tests.conftest import retry

pytestmark = pytest.mark.skipif(not fast.enabled(), reason="clients/_fastpath.c was not built")

SEED = 987654321987654321
STREAM = Stream(1_764_000_000_000_000_000, 40, 40.0, SEED)


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def set_protocol(self, protocol: object) -> None:
        pass


class FakeConn:
    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.complete = 0
        self.handed_back = b""

    def on_message_complete(self) -> None:
        self.complete += 1

    def data_received(self, data: bytes) -> None:
        self.handed_back += data

    def connection_lost(self, exc: object) -> None:
        pass

    def eof_received(self) -> None:
        pass


def test_texts_match_the_server() -> None:
    for seed in (0, 1, SEED, 2**64 - 1):
        for seq in range(400):
            assert fast._fastpath.expected(seed, seq) == texts.text(seed, seq).encode()


@pytest.mark.parametrize(
    "payload",
    [
        STREAM.payload(3),
        STREAM.payload(11),
        '{"text":"a\\"b\\\\c\\/\\n\\t\\r\\b\\f","t":5,"seq":7}',
        '{"seq":1,"t":2,"text":"caf\\u00e9 \\ud83d\\ude00 \\u6771"}',
        ' { "seq" : 1 , "extra" : "x\\"y" , "t" : -2 , "text" : "" } ',
        '{"seq":1,"t":9223372036854775807,"text":"max"}',
    ],
)
def test_token_json_parses_like_json_loads(payload: str) -> None:
    doc = json.loads(payload)
    got = fast._fastpath.parse_token(payload.encode())
    assert got == (doc["seq"], doc["t"], doc["text"].encode())


@pytest.mark.parametrize(
    "payload",
    [
        '{"seq":1.0,"t":2,"text":"x"}',  # a float: Python decides
        '{"seq":1,"t":2}',  # no text
        '{"seq":1,"t":2,"text":"x","n":{"a":1}}',  # nesting
        '{"seq":1,"t":99999999999999999999,"text":"x"}',  # beyond int64
        '{"seq":1,"t":2,"text":"\\ud83d"}',  # a lone surrogate
        '{"seq":1,"t":2,"text":"a\tb"}',  # a raw control character (json.loads refuses it)
        '{"seq":1,"t":2,"text":"x"} x',  # trailing garbage
        '{"seq":01,"t":2,"text":"x"}',  # a leading zero
        "[1,2]",
        "",
    ],
)
def test_token_json_leaves_the_rest_to_python(payload: str) -> None:
    assert fast._fastpath.parse_token(payload.encode()) is None


def _events() -> bytes:
    """An event stream with every WHATWG corner the server might use, and a few it does not."""
    out = ["\ufeffretry: 1500\n\n"]
    for seq in range(30):
        data = STREAM.payload(seq)
        if seq == 16:  # another key order and an extra key
            data = json.dumps({"text": STREAM.text(16), "x": "y", "seq": 16, "t": 1})
        if seq == 18:  # a number in an extra key: the C side leaves it to Python
            data = data.replace('"seq":18', '"p":1e3,"seq":18')
        if seq == 20:  # escapes everywhere
            data = json.dumps({"seq": 20, "t": 5, "text": STREAM.text(20)}, ensure_ascii=True)
        if seq == 22:  # a wrong text
            data = json.dumps({"seq": 22, "t": 5, "text": "not it"})
        nl = {5: "\r\n", 7: "\r"}.get(seq, "\n")
        if seq == 9:
            out.append(": keep-alive\n")
        if seq == 14:  # two data lines: joined by LF, still one JSON document
            head, tail = data.split(",", 1)
            out.append(f"id: {seq}{nl}data: {head},{nl}data:{tail}{nl}{nl}")
        else:
            out.append(f"id: {seq}{nl}data: {data}{nl}{nl}")
        if seq == 12:  # sent twice: a duplicate
            out.append(f"data: {data}\n\n")
    out.insert(-3, f"data: {STREAM.payload(29)}\n\n")  # 29 early: 27, 28 come late, 29 twice
    out.append("event: other\ndata: hello\nid: x\n\n")
    out.append("event: end\ndata: {}\n\n")
    return "".join(out).encode()


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, pos, k = [], 0, 0
    while pos < len(body):
        n = sizes[k % len(sizes)]
        out.append(b"%x\r\n" % len(body[pos : pos + n]) + body[pos : pos + n] + b"\r\n")
        pos, k = pos + n, k + 1
    return b"".join(out) + b"0\r\n\r\n"


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _sse_handler(reader: Reader, others: list[tuple[str, str, str]]):
    deliver = reader.deliver if reader.tap is None else reader.tap_deliver

    def on_event(type_: str, data: str, last_id: str) -> None:  # as SSEReader's
        if type_ == "message":
            doc = json.loads(data)
            deliver(doc["seq"], doc["t"], doc["text"])
        else:
            others.append((type_, data, last_id))

    return on_event


def _reference(events: bytes) -> tuple:
    seen = {"tokens": 0, "wrong": 0}

    def on_token(seq: int, t: int, text: str) -> None:
        seen["tokens"] += 1
        seen["wrong"] += text != STREAM.text(seq)

    reader = SSEReader("http://x", "id", on_token)
    others: list[tuple[str, str, str]] = []
    parser = SSEParser(_sse_handler(reader, others))
    parser.feed(events)
    return (
        seen["tokens"], seen["wrong"], reader.delivered, reader.cursor,
        reader.stats.dropped_duplicates, reader.stats.out_of_order, others, parser.retry,
    )  # fmt: skip


def _tapped(pieces: list[bytes], mode: str, handler) -> tuple:
    tally = fast.tally()
    cls = SSEReader if mode == "sse" else WSReader
    reader = cls("http://x", "id", lambda *a: None)
    tap = fast.tap_for(reader, mode, tally, SEED, 0)
    conn = FakeConn()
    on_other = handler(reader, conn)
    reader.tap_begin()
    tap.start(conn, lambda head: True, on_other, lambda why: pytest.fail(why))
    for piece in pieces:
        tap.data_received(piece)
    retry = tap.retry
    reader.tap_end(conn)
    tokens, wrong, *_ = tally.take()
    return tokens, wrong, reader, conn, retry


def test_sse_tap_matches_the_python_parser_at_every_split() -> None:
    events = _events()
    want = _reference(events)
    # what the stream holds: 0..26 and 29 delivered, 22 wrong, 12 and 29 twice, 27, 28 late
    assert want[:6] == (28, 1, 28, 29, 2, 2)
    wire = SSE_HEAD + _chunked(events, [37, 5, 300, 1, 64])
    cases = [[wire[:i], wire[i:]] for i in range(len(wire) + 1)]
    rng = random.Random(1)
    for _ in range(200):
        cuts = sorted(rng.sample(range(len(wire)), 6))
        cases.append([wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)])
    for pieces in cases:
        others: list[tuple[str, str, str]] = []
        tokens, wrong, reader, conn, retry = _tapped(
            pieces, "sse", lambda r, c, o=others: _sse_handler(r, o)
        )
        got = (
            tokens, wrong, reader.delivered, reader.cursor, reader.stats.dropped_duplicates,
            reader.stats.out_of_order, others, retry,
        )  # fmt: skip
        assert got == want, [len(p) for p in pieces]
        assert conn.complete == 1


def _frame(b0: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((b0, n)) + payload
    return bytes((b0, 126)) + n.to_bytes(2, "big") + payload


def _frames() -> bytes:
    out = []
    for seq in range(20):
        data = STREAM.payload(seq).encode()
        if seq == 4:  # fragmented: text + continuation
            out += [_frame(0x01, data[:10]), _frame(0x80, data[10:])]
            continue
        if seq == 6:  # a long message (16-bit length)
            doc = {"seq": 6, "t": 1, "text": STREAM.text(6), "pad": "p" * 200}
            data = json.dumps(doc).encode()
        out.append(_frame(0x81, data))
        if seq == 8:
            out.append(_frame(0x89, b"ping!"))  # answered with a pong
            out.append(_frame(0x81, data))  # and a duplicate
    out.append(_frame(0x81, b'{"end":true,"tokens":20}'))
    out.append(_frame(0x88, (1000).to_bytes(2, "big")))
    return b"".join(out)


def test_ws_tap_matches_the_python_session_at_every_split() -> None:
    wire = _frames()
    seen = {"tokens": 0, "wrong": 0}

    def on_token(seq: int, t: int, text: str) -> None:
        seen["tokens"] += 1
        seen["wrong"] += text != STREAM.text(seq)

    ref_reader = WSReader("http://x", "id", on_token)
    ref_conn = FakeConn()
    ref = _Session(ref_reader, ref_conn, None)  # type: ignore[arg-type]
    ref.feed(wire)
    assert seen == {"tokens": 20, "wrong": 0} and ref.ended and ref.close_code == 1000
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    full = head + wire
    for i in range(len(full) + 1):
        sessions: list[_Session] = []

        def handler(reader: Reader, conn: FakeConn, sessions=sessions):
            sessions.append(_Session(reader, conn, None))  # type: ignore[arg-type]
            return sessions[0].frame

        tokens, wrong, reader, conn, _ = _tapped([full[:i], full[i:]], "ws", handler)
        s = sessions[0]
        assert (tokens, wrong, reader.delivered, reader.cursor) == (20, 0, 20, 19), i
        assert reader.stats.dropped_duplicates == ref_reader.stats.dropped_duplicates
        assert s.ended and s.close_code == 1000
        # the pong and the close echo carry the same payloads (masks are random)
        assert [f[0] for f in conn.transport.written] == [f[0] for f in ref_conn.transport.written]


def test_a_declined_head_hands_every_byte_back() -> None:
    tally = fast.tally()
    reader = SSEReader("http://x", "id", lambda *a: None)
    tap = fast.tap_for(reader, "sse", tally, SEED, 0)
    conn = FakeConn()
    reader.tap_begin()
    tap.start(conn, lambda head: False, lambda *a: None, lambda why: None)
    rest = b"5\r\nhello\r\n0\r\n\r\n"
    tap.data_received(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n" + rest[:4])
    tap.data_received(rest[4:])
    assert conn.handed_back == rest and not tap.fast
    assert tally.take()[0] == 0


FAULTY = ClientOptions(
    heartbeat=0.5, poll_timeout=1.0, backoff_initial=0.02, backoff_max=0.2, give_up_after=20
)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("fault", "loop"),
    # the load generator's reads: the compiled loop (clients/_pump.c) by default, else uvloop's
    [("close", "compiled"), ("reset", "compiled"), ("blackhole", "compiled"), ("reset", "uvloop")],
)
@pytest.mark.parametrize("transport", [t.name for t in transports.all_transports() if t.fast_path])
async def test_tapped_reader_resumes_with_every_token_once(
    server_factory, transport: str, fault: str, loop: str
) -> None:
    if loop == "uvloop" and transport != "sse":
        pytest.skip("uvloop's reads (--no-compiled-loop) are checked on SSE; the taps are shared")
    srv = server_factory(transport, "--heartbeat", "0.5", *retry(transport, 50))
    info = await create_stream(transport, srv.url, tokens=150, rate=200)
    plan = {0: Fault(fault, after_bytes=1999), 1: Fault(fault, after_bytes=3001)}
    proxy = FaultProxy(("127.0.0.1", srv.port), plan.get)
    port = await proxy.start()
    tally = fast.tally()
    reader_cls, _, _ = transports.get(transport).load_client(fast=True)  # grpc: clients/h2grpc.py
    reader = reader_cls(f"http://127.0.0.1:{port}", info["id"], lambda *a: None, None, FAULTY)
    mode = transports.get(transport).fast_path
    pump = fast.pump() if loop == "compiled" else None
    if pump is not None:
        asyncio.get_running_loop().add_reader(pump.fileno(), pump.run)
    fast.tap_for(reader, mode, tally, Codec().decode(info["id"]).seed, 0, pump)
    try:
        await asyncio.wait_for(reader.run(), 30)
    finally:
        await proxy.stop()
        if pump is not None:
            asyncio.get_running_loop().remove_reader(pump.fileno())
    if pump is not None:  # every connection was read in the pump, and none is left there
        stats = pump.stats()
        assert stats["reads"] > 10 and stats["open"] == 0
    tokens, wrong, latency, _, ttft = tally.take()
    assert (tokens, wrong, reader.delivered, reader.cursor) == (150, 0, 150, 149)
    assert latency[0] == 150 and ttft[0] == 1
    assert [n for n, _ in proxy.fired] == [0, 1]
    assert reader.stats.reconnects >= 2 and reader.stats.gaps == 0
    assert reader.stats.bytes_received > 150 * 25  # every token counted (gRPC: ~39 bytes)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"zz\r\n", "bad chunked encoding: chunk size"),
        (b"3\r\nabcX\r\n", "bad chunked encoding: no CRLF after data"),
    ],
)
def test_broken_chunking_is_an_error_not_a_token(body: bytes, why: str) -> None:
    tally = fast.tally()
    reader = SSEReader("http://x", "id", lambda *a: None)
    tap = fast.tap_for(reader, "sse", tally, SEED, 0)
    errors: list[str] = []
    reader.tap_begin()
    tap.start(FakeConn(), lambda head: True, lambda *a: None, errors.append)
    tap.data_received(SSE_HEAD + body)
    assert errors == [why]
    assert tally.take()[0] == 0


@pytest.mark.timeout(30)
async def test_a_callback_that_raises_in_the_pump_drops_its_connection(monkeypatch) -> None:
    """A Python callback run from the pump raises after it let go of the tap (stopped it): the
    bug is reported (sys.unraisablehook) and the connection it was reading is aborted, not left
    open with nobody reading it."""
    loop = asyncio.get_running_loop()
    ended = loop.create_future()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(SSE_HEAD + _chunked(b"event: other\ndata: x\n\n", [23]))
        await w.drain()
        try:
            ended.set_result(await r.read())  # b"" at the client's close
        except ConnectionError as exc:  # its abort: a reset
            ended.set_result(exc)
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reported: list[object] = []
    monkeypatch.setattr("sys.unraisablehook", reported.append)
    pump = fast.pump()
    loop.add_reader(pump.fileno(), pump.run)
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    tap = fast.tap_for(SSEReader("http://x", "id", lambda *a: None), "sse", fast.tally(), SEED, 0,
                       pump)  # fmt: skip
    conn = FakeConn()
    conn.transport = transport  # type: ignore[assignment]

    def on_other(*event: str) -> None:
        tap.stop()
        raise RuntimeError("a bug in a callback")

    tap.start(conn, lambda head: True, on_other, lambda why: None)
    transport.set_protocol(tap)
    tap.attach(transport)
    try:
        assert await asyncio.wait_for(ended, 10) is not None
        assert transport.is_closing() and len(reported) == 1
        assert pump.stats()["open"] == 0
    finally:
        loop.remove_reader(pump.fileno())
        transport.abort()
        server.close()
