"""One measured window: loader reports merged, the server's samples, and the step's summary.

``Window.add`` folds in one ``LoaderReport``; ``summarize`` turns a window and what the server
cost over it (``ServerCost``) into the step's results.json entry (docs/results-schema.md).
When a process group used ``SATURATED`` of its cores the step says which: its figures then
bound that group, not the other. A load process that sent no report over a whole window had its
event loop stuck behind its users: the figures miss its users, so the step is bounded by the
load side and does not hold. Either way, a load side that spent more CPU per token than the
server it measured is flagged (``loadgen.costlier_than_server``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from bench.load import procstat
from bench.load.config import BenchConfig, Step
from bench.load.messages import COUNTS, ERROR_CLASSES, LoaderReport
from bench.results.hist import Histogram

SATURATED = 0.90  # a process group using this share of its cores is the bottleneck


@dataclass
class Window:
    """Merge of loader reports over one measured window."""

    latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)
    gap: Histogram = field(default_factory=Histogram)
    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_CLASSES, 0))
    users: dict[int, int] = field(default_factory=dict)  # loader -> users running
    streaming: dict[int, int] = field(default_factory=dict)
    cpu: dict[int, list[float]] = field(default_factory=dict)  # loader -> [first, last] CPU s
    sys: dict[int, list[float]] = field(default_factory=dict)  # the same, kernel part
    fast_path: dict[int, bool] = field(default_factory=dict)  # loader -> compiled path
    loops: dict[int, str] = field(default_factory=dict)  # loader -> its event loop (LoaderReport)
    span: dict[int, list[int]] = field(default_factory=dict)  # loader -> [first t0, last t1] ns
    unread_known: bool = True  # false once a report lacked ``unread`` (an older loader)

    def span_s(self) -> float:
        """The time the reports cover (mean over loaders): rates are per this, not per the
        orchestrator's window, which holds a whole number of reports, one more or less."""
        spans = [(b - a) / 1e9 for a, b in self.span.values() if b > a]
        return sum(spans) / len(spans) if spans else 0.0

    def add(self, r: LoaderReport, prev_cpu: float | None, prev_sys: float | None = None) -> None:
        """Fold in a report; ``prev_*`` are the loader's cumulative CPU at its previous report
        (the window's CPU starts there, not at this report's end)."""
        self.latency.merge(Histogram.from_json(r["latency"]))
        self.ttft.merge(Histogram.from_json(r["ttft"]))
        self.gap.merge(Histogram.from_json(r["gap"]))
        sums = self.sums
        for key in COUNTS:
            sums[key] += int(r.get(key, 0))
        self.unread_known = self.unread_known and "unread" in r
        for cls, n in r["errors"].items():
            self.errors[cls] = self.errors.get(cls, 0) + n
        i = r["loader"]
        self.span.setdefault(i, [r["t0_ns"], r["t1_ns"]])[1] = r["t1_ns"]
        self.fast_path[i] = r["fast_path"]
        self.loops[i] = r.get("loop", "uvloop")
        self.users[i] = r["users"]
        self.streaming[i] = r["streaming"]
        start = prev_cpu if prev_cpu is not None else r["cpu_s"]
        self.cpu.setdefault(i, [start, start])[1] = r["cpu_s"]
        start = prev_sys if prev_sys is not None else r["sys_s"]
        self.sys.setdefault(i, [start, start])[1] = r["sys_s"]


class EmptiedDoc(TypedDict):
    """How a knee step's users were ended after its window (bench.load.run._empty)."""

    took_s: float  # ending the last step's users, then the quiet pause
    empty: bool  # no user and no server connection was left (False: the wait ran out)


class StepSummary(TypedDict):
    """A step's entry in results.json (docs/results-schema.md, ``runs[].steps[]``)."""

    clients: int
    users: int
    streaming: int
    window_s: float
    latency_ms: dict[str, float]
    ttft_ms: dict[str, float]
    gap_p99_ms: float
    tokens: int
    tokens_per_s: float
    expected_per_s: float
    goodput: float | None
    requests_per_s: float
    wire_bytes_per_token: float | None
    client_bytes_per_token: float | None
    errors: dict[str, int]
    reconnects: int
    lost: int
    unread: int | None
    duplicated: int
    out_of_order: int
    wrong_text: int
    streams_done: int
    streams_failed: int
    server: dict[str, Any]
    loadgen: dict[str, Any]
    limited_by: str | None
    slo: dict[str, Any]
    histograms: dict[str, Any]
    ramp: NotRequired[dict[str, Any]]  # added by the orchestrator: how the ramp went
    order: NotRequired[int]  # the step's place in the order it ran
    emptied: NotRequired[EmptiedDoc]  # a knee step: how its users were ended after it
    hops: NotRequired[dict[str, Any]]  # bench --lb: the LB's, Redis's, the producer's cost


@dataclass(frozen=True)
class ServerCost:
    """What the server did over a window: /proc samples at both ends and its own counters."""

    start: procstat.Sample
    end: procstat.Sample
    rss_max: int
    files_max: int
    base_rss: int | None  # before any load: memory per connection is measured above it
    connections: int | None  # open at the window's end, from the server's counters
    tokens_sent: int | None  # in the window, from the server's counters
    cores: int


def _loop(loops: dict[int, str]) -> str | None:
    """The load processes' event loop: one name if they agree, "mixed" if not, None: none."""
    names = set(loops.values())
    return None if not names else names.pop() if len(names) == 1 else "mixed"


def _per(n: float, d: float, scale: float = 1.0, digits: int = 1) -> float | None:
    return round(n / d * scale, digits) if d else None


def _server(cost: ServerCost | None, w: Window, seconds: float) -> tuple[dict[str, Any], Any]:
    tokens = w.sums["tokens"]
    out: dict[str, Any] = {
        "cpu_s_per_1k_tokens": None, "cpu_util": None, "rss_bytes": None,
        "mem_per_conn_bytes": None, "open_files": None,
        "connections": cost.connections if cost else None,
        "tokens_sent": cost.tokens_sent if cost else None,
    }  # fmt: skip
    if cost is None:
        return out, None
    cpu = cost.end.cpu_s - cost.start.cpu_s
    counted = cost.tokens_sent or tokens
    out["cpu_s_per_1k_tokens"] = _per(cpu, counted, 1000, 6)
    out["cpu_util"] = _per(cpu, seconds * max(cost.cores, 1), 1, 4)
    out["rss_bytes"] = cost.rss_max
    out["open_files"] = cost.files_max
    held = cost.connections if cost.connections is not None else sum(w.streaming.values())
    if cost.base_rss is not None and held:
        out["mem_per_conn_bytes"] = round((cost.rss_max - cost.base_rss) / held)
    written = cost.end.written_bytes - cost.start.written_bytes
    io = (cost.end.read_bytes - cost.start.read_bytes) + written
    out["written_bytes_per_token"] = _per(written, tokens)
    return out, _per(io, tokens)


def summarize(
    step: Step, w: Window, seconds: float, cost: ServerCost | None, cfg: BenchConfig,
    loader_cores: int, loaders: int = 0,
) -> StepSummary:  # fmt: skip
    """The step's entry in results.json; ``loaders``: how many load processes should have
    reported (0: not checked, as in a sub-window shorter than a few report intervals)."""
    s = w.sums
    tokens, expected, failed = s["tokens"], s["expected"], s["streams_failed"]
    gen_cpu = sum(last - first for first, last in w.cpu.values())
    gen_sys = sum(last - first for first, last in w.sys.values())
    span = w.span_s() or seconds  # what the loaders' reports cover
    gen_util = gen_cpu / span / max(loader_cores, 1) if span else 0.0
    server, wire = _server(cost, w, seconds)
    gen_us = _per(gen_cpu, tokens, 1e6, 2)
    server_us = None if (k := server["cpu_s_per_1k_tokens"]) is None else k * 1e3
    silent = max(0, loaders - len(w.cpu))
    gen = {
        "cpu_us_per_token": gen_us,
        "sys_us_per_token": _per(gen_sys, tokens, 1e6, 2),
        "cpu_util": round(gen_util, 4),
        "processes": len(w.cpu),
        "silent": silent,
        "costlier_than_server": None if gen_us is None or server_us is None else gen_us > server_us,
        "fast_path": bool(w.fast_path) and all(w.fast_path.values()),
        "loop": _loop(w.loops),
        "saturated": gen_util >= SATURATED,
    }
    goodput = round(tokens / expected, 5) if expected else None
    server_sat = server["cpu_util"] is not None and server["cpu_util"] >= SATURATED
    behind = gen["saturated"] or silent > 0
    limited_by = "loadgen" if behind else ("server" if server_sat else None)
    lat, ttft = w.latency.summary_ms(), w.ttft.summary_ms()
    held_slo = (
        w.latency.count > 0
        and lat["p99"] <= cfg.slo_ms
        and (w.ttft.count == 0 or ttft["p99"] <= cfg.ttft_slo_ms)
        and goodput is not None
        and goodput >= cfg.min_goodput
        and s["lost"] == 0
        and s["unread"] == 0
        and failed == 0
        and silent == 0
    )
    rate = (lambda n: round(n / span, 1)) if span else (lambda n: 0.0)
    return {
        "clients": step.clients,
        "users": sum(w.users.values()),
        "streaming": sum(w.streaming.values()),
        "window_s": round(seconds, 2),
        "latency_ms": lat,
        "ttft_ms": ttft,
        "gap_p99_ms": round(w.gap.percentile(99) / 1000, 3),
        "tokens": tokens,
        "tokens_per_s": rate(tokens),
        "expected_per_s": rate(expected),
        "goodput": goodput,
        "requests_per_s": rate(s["requests"]),
        "wire_bytes_per_token": wire,
        "client_bytes_per_token": _per(s["bytes_received"], tokens),
        "errors": w.errors,
        "reconnects": s["reconnects"],
        "lost": s["lost"],
        "unread": s["unread"] if w.unread_known else None,
        "duplicated": s["duplicated"],
        "out_of_order": s["out_of_order"],
        "wrong_text": s["wrong_text"],
        "streams_done": s["streams_done"],
        "streams_failed": failed,
        "server": server,
        "loadgen": gen,
        "limited_by": limited_by,
        "slo": {
            "p99_ms": cfg.slo_ms,
            "ttft_p99_ms": cfg.ttft_slo_ms,
            "min_goodput": cfg.min_goodput,
            "held": held_slo,
            # held does not need a TTFT sample (a window at think 0 often starts no stream):
            # this says whether the TTFT part was measured, rather than met by default
            "ttft_checked": w.ttft.count > 0,
        },
        "histograms": {
            "latency_us": w.latency.to_json(),
            "ttft_us": w.ttft.to_json(),
            "gap_us": w.gap.to_json(),
        },
    }
