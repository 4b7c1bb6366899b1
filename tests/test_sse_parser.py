"""clients.sse_parser against the WHATWG rules ("Interpreting an event stream"), table-driven.

Every case is fed whole, byte by byte, and in random chunks: the answer must not depend on how
the bytes arrived.
"""

from __future__ import annotations

import random

import pytest

from clients.sse_parser import Event, SSEParser

M = "message"
CASES: list[tuple[str, bytes, list[tuple[str, str, str]], int | None, str]] = [
    ("lf", b"data: hello\n\n", [(M, "hello", "")], None, ""),
    ("crlf", b"data: a\r\n\r\n", [(M, "a", "")], None, ""),
    ("cr", b"data: a\r\rdata: b\r\r", [(M, "a", ""), (M, "b", "")], None, ""),
    ("mixed line ends", b"data: a\r\ndata: b\n\r\n", [(M, "a\nb", "")], None, ""),
    ("bom stripped once", b"\xef\xbb\xbfdata: x\n\n", [(M, "x", "")], None, ""),
    ("bom later is a field name", b"data: a\n\n\xef\xbb\xbfdata: b\n\n", [(M, "a", "")], None, ""),
    ("comments ignored", b": hi\ndata: x\n:\n\n:only\n\n", [(M, "x", "")], None, ""),
    ("multi-line data", b"data: a\ndata: b\ndata\n\n", [(M, "a\nb\n", "")], None, ""),
    ("no space after colon", b"data:x\n\n", [(M, "x", "")], None, ""),
    ("only one space removed", b"data:  x\n\n", [(M, " x", "")], None, ""),
    ("bare field, empty value", b"data\n\n", [(M, "", "")], None, ""),
    ("colon inside value", b"data: a:b\n\n", [(M, "a:b", "")], None, ""),
    ("id sets last id", b"id: 7\ndata: x\n\n", [(M, "x", "7")], None, "7"),
    ("id persists", b"id: 3\ndata: a\n\ndata: b\n\n", [(M, "a", "3"), (M, "b", "3")], None, "3"),
    ("id with NULL ignored", b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
     [(M, "a", "1"), (M, "b", "1")], None, "1"),
    ("empty id resets", b"id: 4\ndata: a\n\nid\ndata: b\n\n",
     [(M, "a", "4"), (M, "b", "")], None, ""),
    ("id without data: no event, id set", b"id: 5\n\n", [], None, "5"),
    ("retry digits", b"retry: 1500\n\n", [], 1500, ""),
    ("retry not digits ignored", b"retry: 15a\n\nretry: -1\n\nretry:\n\nretry: 1 0\n\n",
     [], None, ""),
    ("event type", b"event: end\ndata: {}\n\n", [("end", "{}", "")], None, ""),
    ("type resets even without data", b"event: x\n\ndata: y\n\n", [(M, "y", "")], None, ""),
    ("unknown field ignored", b"foo: bar\ndata: x\n\n", [(M, "x", "")], None, ""),
    ("utf-8 multi-byte", "data: café 🙂 東京\n\n".encode(), [(M, "café 🙂 東京", "")], None, ""),
    ("invalid utf-8 replaced", b"data: \xff!\n\n", [(M, "\ufffd!", "")], None, ""),
    ("unfinished event dropped", b"data: a\n\ndata: b\n", [(M, "a", "")], None, ""),
    ("unfinished line dropped", b"data: a\n\ndata: b", [(M, "a", "")], None, ""),
    ("field names are case-sensitive", b"Data: x\nDATA: y\n\n", [], None, ""),
    ("the contract's own stream",
     b'retry: 1000\n\nid: 0\ndata: {"seq":0}\n\n: keep-alive\n\nevent: end\ndata: {"tokens":1}\n\n',
     [(M, '{"seq":0}', "0"), ("end", '{"tokens":1}', "0")], 1000, "0"),
]  # fmt: skip


def run(chunks: list[bytes]) -> SSEParser:
    parser = SSEParser()
    for chunk in chunks:
        parser.feed(chunk)
    parser.close()
    return parser


def split_random(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 7)
        out.append(data[i : i + n])
        i += n
    return out


@pytest.mark.parametrize(
    ("name", "data", "events", "retry", "last_id"), CASES, ids=[c[0] for c in CASES]
)
def test_parser_cases(
    name: str, data: bytes, events: list, retry: int | None, last_id: str
) -> None:
    expected = [Event(*e) for e in events]
    rng = random.Random(name)
    feeds = {
        "whole": [data],
        "bytewise": [data[i : i + 1] for i in range(len(data))],
        "random": split_random(data, rng),
    }
    for how, chunks in feeds.items():
        parser = run(chunks)
        assert parser.events == expected, how
        assert parser.retry == retry, how
        assert parser.last_event_id == last_id, how


def test_cr_at_chunk_end_then_lf_is_one_line_end() -> None:
    parser = run([b"data: a\r", b"\n", b"\r", b"\ndata: b\r\n\r\n"])
    assert [e.data for e in parser.events] == ["a", "b"]


def test_callback_receives_type_data_and_id() -> None:
    seen: list[tuple[str, str, str]] = []
    parser = SSEParser(lambda t, d, i: seen.append((t, d, i)))
    parser.feed(b"id: 9\nevent: x\ndata: y\n\n")
    assert seen == [("x", "y", "9")]
