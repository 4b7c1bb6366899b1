"""Property tests (hypothesis): the parsers and the token core against small reference models.

- the SSE parser against a whole-stream model of WHATWG HTML 9.2.6, fed in random pieces;
- the compiled receive path against the Python path, on random event streams and frames;
- the token core: ids, cursors and resume points, for any input.

``make test`` runs a fixed set of examples (profile ``ci``: derandomized, so every run is the same
run); ``make fuzz`` searches far wider (profile ``fuzz``).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clients import fast
from clients.sse_parser import SSEParser
from clients.ws import WSReader, _Session
from servers.tokens.core import (
    MAX_TOKENS,
    Codec,
    ContractError,
    Cursor,
    ErrorKind,
    Stream,
    parse_after,
    parse_timeout,
    validate_create,
)
from tests.test_fastpath import (
    SSE_HEAD,
    STREAM,
    FakeConn,
    _chunked,
    _frame,
    _reference,
    _sse_handler,
    _tapped,
)

# --- the SSE parser against the WHATWG rules ---------------------------------------------------


def whatwg_events(raw: bytes) -> tuple[list[tuple[str, str, str]], int | None]:
    """WHATWG HTML 9.2.6 over a whole stream at once: (events, last retry)."""
    text = raw.decode("utf-8-sig", errors="replace")  # one leading BOM goes; bad bytes: U+FFFD
    lines = re.split(r"\r\n|\r|\n", text)[:-1]  # the last piece has no line end: unfinished
    events, kind, data, last_id, pending_id, retry = [], "", [], "", "", None
    for line in lines:
        if line == "":
            last_id = pending_id  # set on every dispatch, even with no data
            if data:
                events.append((kind or "message", "\n".join(data), last_id))
            kind, data = "", []
        elif not line.startswith(":"):
            field, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if field == "data":
                data.append(value)
            elif field == "event":
                kind = value
            elif field == "id" and "\0" not in value:
                pending_id = value
            elif field == "retry" and value.isascii() and value.isdigit():
                retry = int(value)
    return events, retry


FIELDS = st.sampled_from(["data", "id", "event", "retry", "", "dat", "ID", ":", ": keep-alive"])
VALUES = st.one_of(
    st.text(max_size=12), st.from_regex(r"[0-9]{1,6}", fullmatch=True),
    st.sampled_from(["", " ", "  x", "\0", "é", "{\"seq\":1}", "end"]),
)  # fmt: skip
ENDS = st.sampled_from(["\n", "\r", "\r\n", "\n\n", "\r\r", "\r\n\r\n"])


@st.composite
def event_streams(draw: st.DrawFn) -> bytes:
    parts = ["\ufeff"] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 25))):
        field, sep = draw(FIELDS), draw(st.sampled_from([":", ": ", "", ":  "]))
        parts.append(f"{field}{sep}{draw(VALUES)}{draw(ENDS)}")
    raw = "".join(parts).encode()
    if draw(st.booleans()):  # invalid UTF-8 somewhere
        at = draw(st.integers(0, len(raw)))
        raw = (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80"]))
            + raw[at:]
        )
    return raw


@st.composite
def splits(draw: st.DrawFn, data: bytes, most: int = 8) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=most)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@given(st.data())
def test_sse_parser_follows_whatwg_in_any_pieces(data: st.DataObject) -> None:
    raw = data.draw(event_streams())
    pieces = data.draw(splits(raw))
    parser = SSEParser()
    for piece in pieces:
        parser.feed(piece)
    parser.close()
    events, retry = whatwg_events(raw)
    assert [tuple(e) for e in parser.events] == events
    assert parser.retry == retry


# --- the compiled path against the Python path -------------------------------------------------

needs_fast = pytest.mark.skipif(not fast.enabled(), reason="the compiled path was not built")


@st.composite
def token_events(draw: st.DrawFn) -> bytes:
    """What a server (or a broken one) might send: tokens in any order, twice or never, with
    wrong texts, comments, other events, and every line end."""
    out = ["\ufeffretry: 700\n\n"] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 30))):
        seq = draw(st.integers(0, 40))
        payload = STREAM.payload(seq)
        how = draw(
            st.sampled_from(["plain"] * 6 + ["wrong", "escaped", "split", "other", "comment"])
        )
        nl = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        if how == "wrong":
            payload = json.dumps({"seq": seq, "t": 1, "text": "not it"})
        elif how == "escaped":
            payload = json.dumps({"seq": seq, "t": 5, "text": STREAM.text(seq)}, ensure_ascii=True)
        if how == "split":
            head, tail = payload.split(",", 1)
            out.append(f"id: {seq}{nl}data: {head},{nl}data:{tail}{nl}{nl}")
        elif how == "other":
            out.append(f"event: other{nl}data: {seq}{nl}{nl}")
        elif how == "comment":
            out.append(f": keep-alive{nl}")
        else:
            out.append(f"id: {seq}{nl}data: {payload}{nl}{nl}")
    return "".join(out).encode()


@needs_fast
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_sse_compiled_path_matches_python_on_any_stream(data: st.DataObject) -> None:
    events = data.draw(token_events())
    sizes = data.draw(st.lists(st.integers(1, 300), min_size=1, max_size=5))
    wire = SSE_HEAD + _chunked(events, sizes)
    pieces = data.draw(splits(wire))
    want = _reference(events)
    others: list[tuple[str, str, str]] = []
    tokens, wrong, reader, conn, retry = _tapped(
        pieces, "sse", lambda r, c, o=others: _sse_handler(r, o)
    )
    got = (
        tokens, wrong, reader.delivered, reader.cursor, reader.stats.dropped_duplicates,
        reader.stats.out_of_order, others, None if retry < 0 else retry,  # the tap: -1 for none
    )  # fmt: skip
    assert got == want
    assert conn.complete == 1


@st.composite
def ws_frames(draw: st.DrawFn) -> bytes:
    out = []
    for _ in range(draw(st.integers(0, 25))):
        seq = draw(st.integers(0, 40))
        data = STREAM.payload(seq).encode()
        how = draw(st.sampled_from(["plain"] * 6 + ["fragmented", "long", "ping", "wrong"]))
        if how == "fragmented":
            cut = draw(st.integers(1, len(data) - 1))
            out += [_frame(0x01, data[:cut]), _frame(0x80, data[cut:])]
            continue
        if how == "long":
            data = json.dumps(
                {"seq": seq, "t": 1, "text": STREAM.text(seq), "p": "p" * 200}
            ).encode()
        elif how == "wrong":
            data = json.dumps({"seq": seq, "t": 1, "text": "not it"}).encode()
        elif how == "ping":
            out.append(_frame(0x89, b"ping"))
        out.append(_frame(0x81, data))
    out.append(_frame(0x81, b'{"end":true,"tokens":41}'))
    out.append(_frame(0x88, (1000).to_bytes(2, "big")))
    return b"".join(out)


@needs_fast
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_ws_compiled_path_matches_python_on_any_frames(data: st.DataObject) -> None:
    wire = data.draw(ws_frames())
    seen = {"tokens": 0, "wrong": 0}

    def on_token(seq: int, t: int, text: str) -> None:
        seen["tokens"] += 1
        seen["wrong"] += text != STREAM.text(seq)

    ref_reader = WSReader("http://x", "id", on_token)
    ref = _Session(ref_reader, FakeConn(), None)  # type: ignore[arg-type]
    ref.feed(wire)
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    sessions: list[_Session] = []

    def handler(reader, conn):  # type: ignore[no-untyped-def]
        sessions.append(_Session(reader, conn, None))  # type: ignore[arg-type]
        return sessions[0].frame

    tokens, wrong, reader, _, _ = _tapped(data.draw(splits(head + wire)), "ws", handler)
    assert (tokens, wrong) == (seen["tokens"], seen["wrong"])
    assert (reader.delivered, reader.cursor) == (ref_reader.delivered, ref_reader.cursor)
    assert reader.stats.dropped_duplicates == ref_reader.stats.dropped_duplicates
    assert reader.stats.out_of_order == ref_reader.stats.out_of_order
    assert sessions[0].ended == ref.ended and sessions[0].close_code == ref.close_code


# --- the token core ----------------------------------------------------------------------------

CODEC = Codec()


@given(st.text(max_size=120))
def test_any_string_is_a_stream_id_or_not_found(sid: str) -> None:
    try:
        CODEC.decode(sid)
    except ContractError as exc:
        assert exc.kind is ErrorKind.NOT_FOUND
    else:
        pytest.fail(f"{sid!r} decoded without our key")


@given(st.integers(1, MAX_TOKENS), st.floats(0.01, 1000), st.integers(0, 2**62),
       st.integers(0, 49), st.integers(0, 7))  # fmt: skip
@example(tokens=1, rate=1.0, now=0, at=49, bit=0)  # found: padding bits of the last character
def test_ids_round_trip_and_one_changed_character_is_refused(
    tokens: int, rate: float, now: int, at: int, bit: int
) -> None:
    sid, stream = CODEC.new_stream(tokens, rate, now)
    assert CODEC.decode(sid) == stream
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = at % len(sid)
    other = alphabet[(alphabet.index(sid[i]) + 1 + bit) % len(alphabet)]
    with pytest.raises(ContractError):
        CODEC.decode(sid[:i] + other + sid[i + 1 :])


@given(st.integers(1, 500), st.floats(0.5, 1000), st.integers(-1, 499),
       st.lists(st.integers(0, 3 * 10**9), max_size=30))  # fmt: skip
def test_a_cursor_hands_out_each_seq_once_in_order_never_early(
    tokens: int, rate: float, after: int, steps: list[int]
) -> None:
    after = min(after, tokens - 1)
    stream = Stream(10**18, tokens, rate, 1)
    cursor = Cursor(stream, after)
    now, taken = stream.created_ns, []
    for step in [*steps, 10**12]:  # at the end everything is due
        now += step
        seqs = cursor.take(now, limit=50)
        for seq in seqs:
            assert stream.due_ns(seq) <= now
            taken.append(seq)
        # caught up, or stopped at the limit: never short of what is due
        assert cursor.done or len(seqs) == 50 or stream.due_ns(cursor.next_seq) > now
    while not cursor.done:
        taken += list(cursor.take(now, limit=50))
    assert taken == list(range(after + 1, tokens))


@given(st.one_of(st.none(), st.text(max_size=20), st.integers(-(2**40), 2**40)),
       st.integers(1, 1000))  # fmt: skip
def test_a_resume_point_is_in_range_or_invalid(value: object, tokens: int) -> None:
    stream = Stream(0, tokens, 40.0, 1)
    try:
        after = parse_after(value, stream)  # type: ignore[arg-type]
    except ContractError as exc:
        assert exc.kind is ErrorKind.INVALID and exc.field == "after"
    else:
        assert -1 <= after <= tokens - 1


@given(st.one_of(st.none(), st.text(max_size=12)))
def test_a_poll_timeout_is_in_range_or_invalid(value: str | None) -> None:
    try:
        t = parse_timeout(value)
    except ContractError as exc:
        assert exc.kind is ErrorKind.INVALID and exc.field == "timeout"
    else:
        assert 0 <= t <= 60


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


@given(st.one_of(JSON_VALUES, st.fixed_dictionaries(
    {}, optional={"tokens": JSON_VALUES, "rate": JSON_VALUES, "prompt": JSON_VALUES})))  # fmt: skip
def test_any_prompt_body_is_accepted_or_refused_with_a_field(body: object) -> None:
    try:
        tokens, rate = validate_create(body)
    except ContractError as exc:
        assert exc.kind is ErrorKind.INVALID and exc.field in ("body", "prompt", "tokens", "rate")
    else:
        assert 1 <= tokens <= MAX_TOKENS and 0 < rate <= 1000
