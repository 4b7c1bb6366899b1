"""Load steps: what a stream owed when it ended and never delivered (``lost``, ``unread``), and
whether a step's TTFT was measured. Synthetic clocks and fake readers: no server, no timing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bench.load.accumulator import Accumulator
from bench.load.config import BenchConfig, Step
from bench.load.loader import Loader
from bench.load.messages import COUNTS, LoaderConfig, LoaderReport, as_report
from bench.load.window import Window, summarize
from bench.results.hist import Histogram
from clients.base import GaveUp, Reader, StreamError
from servers.tokens.core import Stream

T0 = 1_764_000_000_000_000_000
S = 1_000_000_000
STREAM = Stream(T0, 100, 10.0, 0)  # 10 tokens/s: seqs 0..20 are due at T0 + 2 s


class FakeReader:
    def __init__(self, cursor: int, delivered: int) -> None:
        self.cursor, self.delivered = cursor, delivered


def account(cursor: int, delivered: int, now: int, *, done: bool = False,
            stopped: bool = False) -> tuple[int, int]:  # fmt: skip
    acc = Accumulator(lambda: T0)
    Loader.account_end(acc, STREAM, FakeReader(cursor, delivered), now, done, stopped)
    return acc.lost, acc.unread


def test_a_stream_that_ends_early_counts_the_due_tokens_it_never_read() -> None:
    # Read 0..9, given up at T0 + 2 s: 10..20 were due and never came; 21.. were not owed yet.
    assert account(9, 10, T0 + 2 * S) == (0, 11)
    # Two gaps below the highest seq read are lost, not unread: no token counted twice.
    assert account(9, 8, T0 + 2 * S) == (2, 11)
    # Nothing read at all: every due token is unread.
    assert account(-1, 0, T0 + 2 * S) == (0, 21)
    # Given up long after the last token was due: the whole rest was owed, and no more.
    assert account(9, 10, T0 + 60 * S) == (0, 90)


def test_a_finished_stream_counts_no_unread() -> None:
    assert account(99, 100, T0 + 60 * S, done=True) == (0, 0)
    # Its end came, so it owed every token: one it never got (even past its highest seq) is lost.
    assert account(98, 99, T0 + 60 * S, done=True) == (1, 0)
    assert account(98, 98, T0 + 60 * S, done=True) == (2, 0)  # and a gap below it
    # Ended before the clock says the last token was due (clocks a little apart): still 0.
    assert account(99, 100, T0 + 5 * S, done=True) == (0, 0)


def test_a_stream_we_stopped_counts_nothing() -> None:
    assert account(9, 8, T0 + 2 * S, stopped=True) == (0, 0)


class _Reader(Reader):
    """Delivers seqs 0..``upto`` and then does what ``end`` says."""

    upto = 9
    end = "gave up"
    started: asyncio.Event

    async def run(self) -> None:
        for seq in range(self.upto + 1):
            self.deliver(seq, STREAM.due_ns(seq), "")
        if self.end == "done":
            return
        if self.end == "gave up":
            raise GaveUp("no token for 60 s")
        if self.end == "refused":
            raise StreamError(410, "gone")
        if self.end == "stray cancel":
            raise asyncio.CancelledError()  # not asked for by the loader
        self.started.set()
        await asyncio.Event().wait()  # reads on until the loader stops it


class _Clock:
    def __init__(self) -> None:
        self.t = T0 + 2 * S

    def now(self) -> int:
        return self.t


def _loader(end: str) -> Loader:
    cfg = LoaderConfig(transport="sse", url="http://127.0.0.1:1", think=1.0, fast_path=False,
                       clock_sync=False)  # fmt: skip
    loader = Loader(cfg)
    loader.clock = _Clock()  # type: ignore[assignment]
    loader.acc = Accumulator(loader.clock.now)
    reader = type("Reader", (_Reader,), {"end": end, "started": asyncio.Event()})
    loader.reader_cls = reader

    async def create(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"id": "x", "created_ns": T0, "tokens": 100, "rate": 10.0}

    loader.create_fn = create
    return loader


@pytest.mark.parametrize("end", ["gave up", "refused"])
async def test_a_failed_conversation_reports_its_unread_tokens(end: str) -> None:
    loader = _loader(end)
    await loader.conversation(None, None)
    doc = loader.acc.report(users=1, cpu_s=0.0)
    assert (doc["unread"], doc["lost"], doc["streams_failed"], doc["tokens"]) == (11, 0, 1, 10)


async def test_a_finished_conversation_reports_none() -> None:
    loader = _loader("done")
    loader.reader_cls.upto = 99  # type: ignore[attr-defined]
    await loader.conversation(None, None)
    doc = loader.acc.report(users=1, cpu_s=0.0)
    assert (doc["unread"], doc["lost"], doc["streams_done"]) == (0, 0, 1)


async def test_users_stopped_at_ramp_down_leave_nothing_unread() -> None:
    loader = _loader("read on")
    loader.set_target(1, 0)
    users = list(loader.users)
    await loader.reader_cls.started.wait()  # type: ignore[attr-defined]
    loader.clock.t = T0 + 5 * S  # type: ignore[attr-defined]  # 51 due, 10 read
    loader.set_target(0, 0)  # the ramp down (and the stop at the end of a run) cancel users
    (stopped,) = await asyncio.gather(*users, return_exceptions=True)
    assert isinstance(stopped, asyncio.CancelledError)
    doc = loader.acc.report(users=0, cpu_s=0.0)
    assert (doc["unread"], doc["lost"], doc["streams_failed"]) == (0, 0, 0)
    assert doc["expected"] == 51 and doc["streaming"] == 0  # it was still expected while read


async def test_a_cancel_the_loader_did_not_ask_for_is_not_a_stop() -> None:
    loader = _loader("stray cancel")
    with pytest.raises(asyncio.CancelledError):
        await loader.conversation(None, None)
    assert (loader.acc.unread, loader.acc.lost) == (11, 0)


def _report(**counts: int) -> dict[str, Any]:
    empty = Histogram().to_json()
    doc: dict[str, Any] = {
        "loader": 0, "t0_ns": T0, "t1_ns": T0 + S, "users": 10, "arrived": 10, "streaming": 10,
        **dict.fromkeys(COUNTS, 0), "tokens": 100, "expected": 100, "streams_done": 1,
        "errors": {"connect": 0, "read": 0, "timeout": 0, "status": 0}, "cpu_s": 1.0,
        "sys_s": 0.1, "fast_path": False, "latency": _hist([5000] * 100), "ttft": empty,
        "gap": empty, "clock": {},
    }  # fmt: skip
    doc.update(counts)
    return doc


def _hist(values: list[int]) -> Any:
    h = Histogram()
    for v in values:
        h.record(v)
    return h.to_json()


def _step(*reports: dict[str, Any]) -> Any:
    w = Window()
    for r in reports:
        w.add(as_report(json.loads(json.dumps(r))), None)
    return summarize(Step(10, 1, 1), w, 1.0, None, BenchConfig(transports=["sse"], steps=[]), 1)


def test_a_step_with_unread_tokens_does_not_hold() -> None:
    assert _step(_report())["slo"]["held"]
    step = _step(_report(), _report(unread=3))
    assert step["unread"] == 3 and step["lost"] == 0 and not step["slo"]["held"]


def test_a_report_from_before_unread_still_loads() -> None:
    old = _report()
    del old["unread"]
    report: LoaderReport = as_report(old)
    assert "unread" not in report
    step = _step(old)
    assert step["unread"] is None  # not measured, not 0: that loader counted it in lost
    assert step["slo"]["held"]
    assert _step(_report(), old)["unread"] is None


def test_a_window_without_a_ttft_sample_says_ttft_was_not_checked() -> None:
    step = _step(_report())  # no stream started: no TTFT sample
    assert step["slo"]["held"] and step["slo"]["ttft_checked"] is False
    step = _step(_report(ttft=_hist([80_000])))
    assert step["slo"]["held"] and step["slo"]["ttft_checked"] is True
    slow = _step(_report(ttft=_hist([5_000_000])))  # 5 s to the first token: measured, broken
    assert not slow["slo"]["held"] and slow["slo"]["ttft_checked"] is True
