"""The token model (servers.tokens.core, servers.tokens.texts): pure functions, no I/O."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from servers.tokens import texts
from servers.tokens.core import (
    Codec,
    ContractError,
    Cursor,
    ErrorKind,
    Stream,
    parse_after,
    parse_timeout,
    validate_create,
)

NOW = 1_764_000_000_000_000_000


def test_every_text_is_5_to_20_bytes_of_utf8() -> None:
    for seed in (0, 1, 2**63 + 12345):
        for seq in range(5000):
            assert 5 <= len(texts.text(seed, seq).encode("utf-8")) <= 20


@pytest.mark.parametrize("seed", [0, 7, 2**64 - 1])
def test_any_400_consecutive_tokens_hold_multibyte_and_newlines(seed: int) -> None:
    multi = [any(ord(c) > 127 for c in texts.text(seed, s)) for s in range(3000)]
    newline = ["\n" in texts.text(seed, s) for s in range(3000)]
    for start in range(0, 2600):
        assert sum(multi[start : start + 400]) >= 20
        assert sum(newline[start : start + 400]) >= 8


def test_text_is_a_pure_function_across_processes() -> None:
    code = "from servers.tokens import texts; print(repr([texts.text(99, s) for s in range(50)]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == repr([texts.text(99, s) for s in range(50)])
    assert len({texts.text(1, s) for s in range(400)}) > 50  # varied, not one word


def test_payload_is_compact_json_with_the_text_intact() -> None:
    stream = Stream(NOW, 400, 40.0, 5)
    for seq in range(40):
        raw = stream.payload(seq)
        assert " " not in raw.split('"text":')[0]
        assert json.loads(raw) == {"seq": seq, "t": stream.due_ns(seq), "text": stream.text(seq)}


def test_schedule_follows_the_contract_formula() -> None:
    stream = Stream(NOW, 1000, 40.0, 0)
    assert stream.due_ns(0) == NOW
    assert stream.due_ns(3) == NOW + 75_000_000
    odd = Stream(NOW, 1000, 3.0, 0)
    assert odd.due_ns(1) == NOW + 333_333_333  # floor(1e9 / 3)


@pytest.mark.parametrize("rate", [40.0, 3.0, 1000.0, 0.7, 999.9])
def test_due_count_agrees_with_due_ns_at_every_boundary(rate: float) -> None:
    stream = Stream(NOW, 500, rate, 0)
    assert stream.due_count(NOW - 1) == 0
    for seq in range(1, 500):
        t = stream.due_ns(seq)
        assert stream.due_count(t - 1) == seq  # seq is not due one ns early
        assert stream.due_count(t) == seq + 1
    assert stream.due_count(NOW + 10**15) == 500


def test_cursor_resumes_after_k_and_batches_the_backlog() -> None:
    stream = Stream(NOW, 3000, 100.0, 0)
    cursor = Cursor(stream, after=4)
    assert cursor.next_seq == 5
    first = cursor.take(stream.due_ns(2500))
    assert first == range(5, 1005)  # at most MAX_BATCH per write
    assert cursor.take(stream.due_ns(2500)) == range(1005, 2005)
    assert cursor.take(stream.due_ns(2500)) == range(2005, 2501)
    assert cursor.take(stream.due_ns(2500)) == range(2501, 2501)
    assert cursor.next_due_ns() == stream.due_ns(2501)
    done = Cursor(stream, after=2999)
    assert done.done


def test_stream_ids_round_trip_and_reject_tampering() -> None:
    codec = Codec()
    sid, stream = codec.new_stream(400, 40.0, NOW)
    assert codec.decode(sid) == stream
    with pytest.raises(ContractError) as err:
        Codec(b"other key").decode(sid)
    assert err.value.kind is ErrorKind.NOT_FOUND
    flipped = sid[:10] + ("A" if sid[10] != "A" else "B") + sid[11:]
    for bad in (flipped, "", "nope", "x" * 500, sid + "A", "é" * 50, sid[:-1]):
        with pytest.raises(ContractError) as err:
            codec.decode(bad)
        assert err.value.kind is ErrorKind.NOT_FOUND


def test_replay_window_gives_gone() -> None:
    codec = Codec()
    sid, stream = codec.new_stream(10, 10.0, NOW)
    last = stream.last_due_ns
    assert codec.open(sid, last + 300 * 10**9, 300) == stream
    with pytest.raises(ContractError) as err:
        codec.open(sid, last + 300 * 10**9 + 1, 300)
    assert err.value.kind is ErrorKind.GONE


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ("x", "body"),
        ({"tokens": "5"}, "tokens"),
        ({"tokens": 0}, "tokens"),
        ({"tokens": 100001}, "tokens"),
        ({"tokens": 4.0}, "tokens"),
        ({"tokens": True}, "tokens"),
        ({"rate": "40"}, "rate"),
        ({"rate": 0}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": 1000.5}, "rate"),
        ({"rate": False}, "rate"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "é" * 2049}, "prompt"),
    ],
)
def test_validate_create_rejects(body: object, field: str) -> None:
    with pytest.raises(ContractError) as err:
        validate_create(body)
    assert err.value.kind is ErrorKind.INVALID
    assert err.value.field == field


def test_validate_create_defaults_and_limits() -> None:
    assert validate_create({}) == (400, 40.0)
    assert validate_create({"tokens": 100000, "rate": 1000, "prompt": "a" * 4096}) == (
        100000,
        1000.0,
    )
    assert validate_create({"tokens": 1, "rate": 0.001}) == (1, 0.001)


def test_parse_after_and_timeout() -> None:
    stream = Stream(NOW, 10, 40.0, 0)
    assert parse_after(None, stream) == -1
    assert parse_after("-1", stream) == -1
    assert parse_after(" 9", stream) == 9
    for bad in ("10", "-2", "abc", "--1", "1.5", "", "1e3", "٣"):
        with pytest.raises(ContractError):
            parse_after(bad, stream)
    assert parse_timeout(None) == 25.0
    assert parse_timeout("0") == 0.0
    assert parse_timeout("60") == 60.0
    for bad in ("61", "-1", "nan", "inf", "x"):
        with pytest.raises(ContractError):
            parse_timeout(bad)
