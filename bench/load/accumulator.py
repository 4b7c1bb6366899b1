"""What one load process counted in one report interval, and how a retry reason is classed.

Every reader of a process shares one ``ReaderStats``; each report carries only what changed
since the previous one (``LoaderReport``), so the orchestrator can add reports up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.load.messages import ERROR_CLASSES, LoaderReport
from bench.results.hist import Histogram
from clients.base import ReaderStats

_TIMEOUTS = ("no response head in time", "silent connection")


def error_class(reason: str) -> str:
    """A retry reason as wrk's error classes: connect, read, timeout, status."""
    if reason.startswith("connect timeout") or reason in _TIMEOUTS:
        return "timeout"
    if reason.startswith("connect failed"):
        return "connect"
    if reason.startswith("HTTP ") or (reason.startswith("grpc ") and "UNAVAILABLE" not in reason):
        return "status"
    return "read"


class Accumulator:
    """What happened in one report interval; reset after each report."""

    def __init__(self, clock: Callable[[], int] = time.time_ns, tally: Any = None) -> None:
        self.clock = clock
        self.tally = tally  # clients.fast: what the compiled path counted, taken at each report
        self.stats = ReaderStats()  # shared by every reader of this process, never replaced
        self._seen = ReaderStats()  # its values at the last report
        self.reset()
        # conversation id -> [stream, how many of its due tokens are counted as expected]
        self.active: dict[int, list[Any]] = {}
        self.last_ns = clock()

    def reset(self) -> None:
        self.latency, self.ttft, self.gap = Histogram(), Histogram(), Histogram()
        self.tokens = self.lost = self.unread = self.wrong = self.posts = 0
        self.streams_done = self.streams_failed = 0
        self.expected_done = 0  # due tokens of conversations that ended in this interval
        self.errors = dict.fromkeys(ERROR_CLASSES, 0)

    def report(self, users: int, cpu_s: float, sys_s: float = 0.0) -> LoaderReport:
        now = self.clock()
        if self.tally is not None:
            tokens, wrong, latency, gap, ttft = self.tally.take()
            self.tokens += tokens
            self.wrong += wrong
            self.latency.merge_raw(*latency)
            self.gap.merge_raw(*gap)
            self.ttft.merge_raw(*ttft)
        t0 = self.last_ns
        expected = self.expected_done
        for entry in self.active.values():  # once per report per stream: kept cheap
            stream, counted = entry
            if counted < stream.tokens:
                entry[1] = n = stream.due_count(now)
                expected += n - counted
        s, seen = self.stats, self._seen
        for reason, n in s.retry_reasons.items():
            self.errors[error_class(reason)] += n - seen.retry_reasons.get(reason, 0)
        doc: LoaderReport = {
            "loader": 0,
            "t0_ns": t0,
            "t1_ns": now,
            "users": users,
            "arrived": 0,
            "streaming": len(self.active),
            "tokens": self.tokens,
            "expected": expected,
            "requests": s.requests - seen.requests + self.posts,
            "reconnects": s.reconnects - seen.reconnects,
            "duplicated": s.dropped_duplicates - seen.dropped_duplicates,
            "out_of_order": s.out_of_order - seen.out_of_order,
            "bytes_received": s.bytes_received - seen.bytes_received,
            "lost": self.lost,
            "unread": self.unread,
            "wrong_text": self.wrong,
            "streams_done": self.streams_done,
            "streams_failed": self.streams_failed,
            "errors": self.errors,
            "cpu_s": cpu_s,
            "sys_s": sys_s,
            "fast_path": self.tally is not None,
            "latency": self.latency.to_json(),
            "ttft": self.ttft.to_json(),
            "gap": self.gap.to_json(),
        }
        self._seen = ReaderStats(
            requests=s.requests, reconnects=s.reconnects, dropped_duplicates=s.dropped_duplicates,
            out_of_order=s.out_of_order, bytes_received=s.bytes_received,
            retry_reasons=dict(s.retry_reasons),
        )  # fmt: skip
        self.reset()
        self.last_ns = now
        return doc
