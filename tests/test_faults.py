"""Fault scenarios: every transport resumes with nothing lost where the contract promises it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import results
from bench.faults import scenarios as faults
from bench.faults.scenarios import Timeline
from servers.tokens.core import Stream
from servers.tokens.llm import LlmShape
from tests.conftest import TRANSPORTS

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_mid_stream_loses_nothing(transport: str) -> None:
    (entry,) = faults.run("close", [transport], ["hardened"], clients=2, tokens=160,
                          heartbeat=0.5, window_s=20)  # fmt: skip
    assert entry["lost"] == entry["duplicated"] == entry["out_of_order"] == 0, entry
    assert entry["unexpected"] == 0 and entry["unrecovered"] == 0, entry
    assert entry["detected"] == 2 and entry["passed"], entry
    assert entry["reconnect_ms"]["max"] is not None


@pytest.mark.parametrize("transport", ["sse", "grpc"])
def test_blackhole_needs_a_watchdog(transport: str) -> None:
    hardened, default = (
        faults.run("blackhole", [transport], [mode], clients=1, tokens=240, heartbeat=0.5,
                   window_s=8)[0]
        for mode in ("hardened", "default")
    )  # fmt: skip
    assert hardened["passed"] and hardened["detection_ms"]["max"] < 3000, hardened
    # As they come, neither EventSource nor grpcio notices a silent connection in 8 s.
    assert default["detected"] == 0 and default["unrecovered"] == 1, default


def test_server_restart_is_resumed() -> None:
    (entry,) = faults.run("restart", ["ws"], ["hardened"], clients=2, tokens=200,
                          heartbeat=0.5, window_s=25)  # fmt: skip
    assert entry["passed"], entry


def test_summary_counts_from_timelines() -> None:
    line = Timeline()
    line.retries = [(10.5, "connection lost")]
    line.connects = [9.0, 10.7]
    line.tokens = [(9.1, 0, 1_000_000), (10.0, 1, 1_000_000), (10.8, 1, 900_000_000),
                   (10.9, 2, 5_000_000), (11.0, 4, 1_000_000)]  # fmt: skip
    line.done = True
    entry = faults.summarize("x", "sse", "hardened", [line], [10.2], 5, live_ms=250, window_s=2)
    assert entry["detection_ms"]["p50"] == pytest.approx(300, abs=1)
    assert entry["reconnect_ms"]["p50"] == pytest.approx(200, abs=1)
    assert entry["catchup_ms"]["p50"] == pytest.approx(200, abs=1)  # 10.8 was late; 10.9 live
    assert (entry["duplicated"], entry["lost"]) == (1, 1)  # seq 1 twice, seq 3 never
    assert not entry["passed"]


T0 = 1_764_000_000_000_000_000
S = 1_000_000_000


def _frozen(tokens: int = 400, rate: float = 40.0, at: int = 76) -> Timeline:
    """A stream created at T0 (monotonic 100.0) that got seqs 0..at-1 on time, then nothing."""
    line = Timeline(stream=Stream(T0, tokens, rate, 0), started=100.0)
    line.connects = [100.0]
    line.tokens = [(100.0 + s / rate, s, 1_000_000) for s in range(at)]
    return line


def test_a_frozen_stream_stalls_to_the_window_end_and_owes_what_fell_due() -> None:
    line = _frozen()  # last token, seq 75, at 101.875
    # The window closes 5 s after creation: seqs 0..200 are due (seq 200 at exactly T0 + 5 s).
    entry = faults.summarize("x", "sse", "default", [line], [None], 400, live_ms=250, window_s=5,
                             ended=105.0, ended_ns=T0 + 5 * S)  # fmt: skip
    assert entry["lost"] == 0  # no gap below seq 75
    assert entry["unread"] == 201 - 76
    assert entry["max_stall_ms"] == pytest.approx(3125.0, abs=0.1)  # 101.875 to 105.0
    assert entry["unrecovered"] == 1 and not entry["passed"]
    assert "never came" in entry["user_saw"] and "stall of up to 3.1 s" in entry["user_saw"]
    # Owed is capped at the stream's length: long after its last token was due.
    late = faults.summarize("x", "sse", "default", [_frozen()], [None], 400, live_ms=250,
                            window_s=60, ended=160.0, ended_ns=T0 + 60 * S)  # fmt: skip
    assert late["unread"] == 400 - 76 and late["max_stall_ms"] == pytest.approx(58125.0, abs=0.1)


def test_a_stream_that_got_nothing_stalls_from_its_start() -> None:
    line = _frozen(at=0)
    entry = faults.summarize("x", "ws", "default", [line], [None], 400, live_ms=250, window_s=2,
                             ended=102.0, ended_ns=T0 + 2 * S)  # fmt: skip
    assert entry["unread"] == 81 and entry["lost"] == 0  # seqs 0..80 due by T0 + 2 s
    assert entry["max_stall_ms"] == pytest.approx(2000.0, abs=0.1)


def test_a_finished_stream_owes_nothing_and_passes() -> None:
    line = _frozen(tokens=80, at=80)
    line.done = True
    entry = faults.summarize("x", "grpc", "hardened", [line], [None], 80, live_ms=250,
                             window_s=30, ended=130.0, ended_ns=T0 + 30 * S)  # fmt: skip
    assert entry["unread"] == 0 and entry["lost"] == 0 and entry["passed"]
    assert entry["max_stall_ms"] == pytest.approx(25.0, abs=0.1)  # its own gaps, not the window
    assert entry["user_saw"] == "nothing"
    # A stream the server ended early: its end says every token was owed.
    short = _frozen(tokens=80, at=70)
    short.done = True
    cut = faults.summarize("x", "grpc", "hardened", [short], [None], 80, live_ms=250,
                           window_s=30, ended=130.0, ended_ns=T0 + 30 * S)  # fmt: skip
    assert cut["unread"] == 10 and not cut["passed"]


def test_without_the_window_end_unread_and_an_open_stall_are_not_measured() -> None:
    entry = faults.summarize("x", "sse", "default", [_frozen()], [None], 400, live_ms=250,
                             window_s=5)  # fmt: skip
    assert entry["unread"] is None and entry["max_stall_ms"] is None and not entry["passed"]


def test_the_llm_schedule_owes_nothing_during_a_pause() -> None:
    shape = LlmShape(ttft_min_s=0.5, ttft_max_s=0.5, jitter=0.0, pause_every=100, pause_s=12.0)
    due = faults.llm_due(shape)
    stream = Stream(T0, 200, 40.0, 7)
    assert due(stream, T0) == 0 and due(stream, T0 + S // 2) == 1  # the first token at 0.5 s
    # seq 99 at 0.5 + 99 / 40 = 2.975 s; seq 100 after the pause, at 15.0 s.
    assert due(stream, T0 + 5 * S) == 100 == due(stream, T0 + 14 * S)
    assert due(stream, T0 + 15 * S) == 101 and due(stream, T0 + 3600 * S) == 200
    line = _frozen(tokens=200, at=100)  # everything before the pause came
    entry = faults.summarize("x", "sse", "default", [line], [None], 200, live_ms=250, window_s=9,
                             ended=109.0, ended_ns=T0 + 9 * S, due=due)  # fmt: skip
    assert entry["unread"] == 0


def test_an_entry_from_before_unread_still_loads() -> None:
    """The committed fixture (schema version 1) predates ``unread``: it loads, upgraded, with
    unread 0, since version 1's lost counted every token a client never received."""
    doc = results.load(Path(__file__).parent / "fixtures" / "faults.json")
    assert doc["faults"] and all(e["unread"] == 0 for e in doc["faults"])
