"""The messages between the orchestrator and its load processes (JSON lines on pipes).

A loader starts with a ``LoaderConfig`` (JSON, its one argument). The orchestrator writes a
``LoaderCommand`` per line on a loader's stdin; a loader writes one
``LoaderReport`` per interval on its stdout. Every field is named here once, so both sides (and
the tests) agree on them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, NotRequired, TypedDict

from bench.load.clock import ClockDoc

ERROR_CLASSES = ("connect", "read", "timeout", "status")  # wrk's error classes
COUNTS = (
    "tokens", "expected", "requests", "reconnects", "duplicated", "out_of_order", "lost",
    "unread", "wrong_text", "streams_done", "streams_failed", "bytes_received",
)  # fmt: skip
# The summable counters of a LoaderReport: what a window adds up over its reports.
OPTIONAL = (
    "unread",
    "loop",
)  # fields a report from an older loader lacks (and still loads without)


@dataclass
class LoaderConfig:
    transport: str
    url: str
    index: int = 0
    local_addr: str | None = None
    tokens: int = 400
    rate: float = 40.0
    think: float = 5.0
    heartbeat: float = 15.0
    poll_timeout: float = 25.0
    interval: float = 0.5  # seconds between reports (a window's windows hold several)
    doze_us: int = 0  # see Loader.doze
    fast_path: bool = True  # read SSE, WebSocket and gRPC through clients/_fastpath.c if built
    compiled_loop: bool = True  # with the fast path: its sockets in clients/_pump.c's epoll set
    clock_sync: bool = True  # put latencies on the server's clock (bench.load.clock)
    clock_shift_ns: int = 0  # tests: this process's clock reads wrong by this much
    seed: int = 0
    # A user's first answer is 1..tokens long, uniformly: users start where a long run would
    # find them in their answer (a renewal process's residual), so a window just after a ramp
    # sees the stream starts and ends of the steady state (the knee's fresh steps).
    stationary: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def config_json(cfg: LoaderConfig) -> str:
    return json.dumps(asdict(cfg))


class LoaderCommand(TypedDict, total=False):
    target: int  # run this many users
    ramp_s: float  # start the new ones staggered over this many seconds
    stop: bool  # end every user and exit


class HistogramDoc(TypedDict):
    unit: str
    sub_bucket_bits: int
    count: int
    min: int
    max: int
    sum: int
    buckets: list[list[int]]


class LoaderReport(TypedDict):
    """One interval of one load process: counters for that interval only, histograms in µs."""

    loader: int  # the process's index
    t0_ns: int
    t1_ns: int
    users: int  # users running
    arrived: int  # running users whose first stream has connected
    streaming: int  # conversations reading a stream now
    tokens: int
    expected: int  # tokens that fell due for the users' streams in the interval
    requests: int
    reconnects: int
    duplicated: int
    out_of_order: int
    bytes_received: int
    # Of the streams that ended in the interval, but those the loader stopped itself
    # (bench.load.loader.Loader.account_end): ``lost``, the owed tokens missing below the
    # highest seq read (every missing one, for a stream whose end came); ``unread``, for a
    # stream that did not finish, the tokens due by its end above the highest seq read.
    lost: int
    unread: NotRequired[int]  # not in a report from before 2026-12-07 (as_report)
    wrong_text: int
    streams_done: int
    streams_failed: int
    errors: dict[str, int]  # by ERROR_CLASSES
    cpu_s: float  # the process's cumulative CPU seconds (user + system)
    sys_s: float  # the kernel's part of it
    fast_path: bool  # read through clients/_fastpath.c
    loop: NotRequired[str]  # "compiled" (clients/_pump.c) or "uvloop"; not before 2026-12-07
    latency: HistogramDoc
    ttft: HistogramDoc
    gap: HistogramDoc
    clock: ClockDoc  # its offset to the server's clock; the last report has the reading after


def report_fields() -> tuple[str, ...]:
    return tuple(LoaderReport.__annotations__)


def as_report(doc: dict[str, Any]) -> LoaderReport:
    """A report read back from a pipe; ``ValueError`` if a field is missing (but those in
    ``OPTIONAL``: an older loader's report loads, and a window says what it lacked)."""
    missing = [k for k in LoaderReport.__annotations__ if k not in doc and k not in OPTIONAL]
    if missing:
        raise ValueError(f"loader report without {', '.join(missing)}")
    return doc  # type: ignore[return-value]
