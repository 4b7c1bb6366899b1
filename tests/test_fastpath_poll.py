"""Long polling on the compiled path (mode ``poll``) answers as the Python path does.

The same answers go to a PollReader with and without a tap, each answer split at every
position (an answer only ever comes after its poll was written): tokens, wrong texts, cursor,
duplicates, late tokens, the outcome and every byte of every poll written must match.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from clients import StreamError, fast
from clients import poll as poll_module
from clients.base import Retry
from clients.http import HttpConnection
from clients.poll import PollReader
from servers.tokens.core import Stream
from tests.fakes import FakeTransport

pytestmark = pytest.mark.skipif(not fast.enabled(), reason="clients/_fastpath.c was not built")

SEED = 987654321987654321
STREAM = Stream(1_764_000_000_000_000_000, 40, 40.0, SEED)


def answer(body: bytes | str, status: int = 200, head: str = "content-type: application/json",
           length: bool = True) -> bytes:  # fmt: skip
    body = body.encode() if isinstance(body, str) else body
    lines = [f"HTTP/1.1 {status} X", head]
    if length:
        lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    lines.append("transfer-encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def tokens(*seqs: int, end: bool = False) -> str:
    body = ",".join(STREAM.payload(s) for s in seqs)
    return '{"tokens":[' + body + f'],"end":{json.dumps(end)}}}'


ANSWERS = [
    answer(tokens(0, 1, 2)),  # the first answer: always Python's
    answer(tokens(3, 4)),
    answer(
        json.dumps(
            {"tokens": [{"text": STREAM.text(5), "t": 1, "seq": 5, "x": "y"}], "end": False},
            ensure_ascii=True,
        )
    ),
    answer('{"tokens":[],"end":false}'),  # the poll's timeout
    answer(tokens(4, 6)),  # 4 again: a duplicate
    answer('{"tokens":[{"seq":7,"t":1,"text":"not it"}],"end":false}'),  # a wrong text
    answer(tokens(9)),  # 8 skipped ...
    answer(tokens(8, 10)),  # ... and late
    answer(' { "tokens" : [ ' + STREAM.payload(11) + ' ] , "end" : false } '),  # spaces
    answer('{"end":false,"tokens":[' + STREAM.payload(12) + "]}"),  # another key order
    answer(tokens(13), head="Content-Type: application/json\r\nX-Other: 1").replace(
        b"content-length", b"CONTENT-Length"
    ),  # header names in any case
]
ENDS: dict[str, tuple[list[bytes | None], Any]] = {
    "end": ([answer(tokens(14, 15, end=True))], True),
    "503": ([answer("busy", 503)], (Retry, "HTTP 503")),
    "404": ([answer('{"error":"gone"}', 404)], (StreamError, 404)),
    "malformed": (
        [answer('{"tokens":[{"seq":14}],"end":false}')],
        (Retry, "malformed poll answer"),
    ),
    "chunked": ([answer(tokens(14), length=False), answer(tokens(15, end=True))], True),
    # the server's last answer on the connection, which it then closes (None)
    "close": ([answer(tokens(14), head="connection: close"), None], (Retry, "connection lost")),
}


async def read(end: str, cut: int, tapped: bool, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """One attempt over ``ANSWERS`` and then ``end``'s, each answer cut at ``cut``."""
    loop = asyncio.get_running_loop()
    conn = HttpConnection(loop)
    transport = FakeTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]

    async def connect(reader: Any, one_request: bool = True) -> tuple[HttpConnection, str, str]:
        return conn, "x:1", ""

    monkeypatch.setattr(poll_module, "connect", connect)
    seen = {"tokens": 0, "wrong": 0}

    def on_token(seq: int, t: int, text: str) -> None:
        seen["tokens"] += 1
        seen["wrong"] += text != STREAM.text(seq)

    reader = PollReader("http://x:1", "id", on_token)
    reader.options.watchdog = False
    tally = fast.tally() if tapped else None
    if tapped:
        fast.tap_for(reader, "poll", tally, SEED, 0)
    task = asyncio.ensure_future(reader._attempt(-1))
    polls = []
    for data in [*ANSWERS, *ENDS[end][0]]:
        for _ in range(3):
            await asyncio.sleep(0)
        polls.append(bytes(transport.written))  # the poll this answer answers
        transport.written.clear()
        if data is None:
            transport.protocol.connection_lost(None)
            continue
        for piece in (data[:cut], data[cut:]):
            if piece and not task.done():
                transport.protocol.data_received(piece)
                await asyncio.sleep(0)
    try:
        result: Any = await asyncio.wait_for(task, 5)
    except (Retry, StreamError) as exc:
        result = (type(exc), getattr(exc, "reason", None) or getattr(exc, "status", None))
    if tally is not None:
        n, wrong, *_ = tally.take()
        seen = {"tokens": n, "wrong": wrong}
    s = reader.stats
    return (result, seen, reader.delivered, reader.cursor, s.dropped_duplicates, s.out_of_order,
            s.gaps, s.requests, polls)  # fmt: skip


def test_the_answers_hold_what_they_say(monkeypatch: pytest.MonkeyPatch) -> None:
    got = asyncio.run(read("end", 0, False, monkeypatch))
    assert got[0] is True
    # 0..15 but 8 delivered once each (7 with the wrong text); 4 twice; 8 late
    assert got[1:7] == ({"tokens": 15, "wrong": 1}, 15, 15, 1, 1, 1)
    assert got[7] == len(ANSWERS) + 1 and got[8][1] == b"GET /v1/streams/id/poll?timeout=25" \
        b"&after=2 HTTP/1.1\r\nHost: x:1\r\n\r\n"  # fmt: skip


@pytest.mark.parametrize("end", list(ENDS))
async def test_poll_tap_matches_the_python_path_at_every_split(
    end: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    want = await read(end, 0, False, monkeypatch)
    kind = ENDS[end][1]
    assert want[0] == kind
    longest = max(len(a) for a in [*ANSWERS, *ENDS[end][0]] if a)
    for cut in range(longest + 1):
        assert await read(end, cut, True, monkeypatch) == want, cut
        if cut % 7 == 0:
            assert await read(end, cut, False, monkeypatch) == want, cut


async def test_the_tap_reads_plain_answers_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a test that cannot fail: the compiled path did deliver (else all went to Python)."""
    delivered = []
    tap_end = PollReader.tap_end

    def spy(self: PollReader, conn: Any) -> None:
        delivered.append(self.tap.delivered)
        tap_end(self, conn)

    monkeypatch.setattr(PollReader, "tap_end", spy)
    await read("end", 0, True, monkeypatch)
    assert delivered and delivered[0] >= 6
