"""The load generator: metric math on synthetic data, then small real runs per transport."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import transports
from bench import results
from bench.load import knee
from bench.load.accumulator import Accumulator, error_class
from bench.load.clock import Clock
from bench.load.config import BenchConfig, Step, parse_duration, parse_steps
from bench.load.messages import LoaderReport, as_report, report_fields
from bench.load.procstat import Sample
from bench.load.window import ServerCost, Window, summarize
from bench.results.hist import Histogram
from clients.base import Reader, within
from servers.tokens.core import Stream
from tests.conftest import TRANSPORTS

T0 = 1_764_000_000_000_000_000
S = 1_000_000_000


class FakeClock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_goodput_counts_tokens_due_in_each_interval() -> None:
    clock = FakeClock(T0)
    acc = Accumulator(clock)
    acc.active[0] = [Stream(T0, 100, 10.0, 0), 0]  # 10 tok/s; nothing counted yet
    clock.now = T0 + S  # tokens 0..10 are due at or before T0 + 1 s
    acc.tokens = 11
    first = acc.report(users=1, cpu_s=0.0)
    assert (first["expected"], first["tokens"]) == (11, 11)
    clock.now = T0 + 3 * S  # two more seconds: 20 more due, only 15 arrived (a lagging server)
    acc.tokens = 15
    second = acc.report(users=1, cpu_s=0.0)
    assert second["expected"] == 20 and second["tokens"] == 15
    assert second["t0_ns"] == T0 + S and second["t1_ns"] == T0 + 3 * S


def test_reader_counts_duplicates_gaps_and_late_arrivals() -> None:
    got: list[int] = []
    reader = Reader("http://x", "id", lambda s, t, x: got.append(s))
    for seq in (0, 1, 1, 2, 5, 3, 6, 0, 7):
        reader.deliver(seq, 0, "")
    assert got == [0, 1, 2, 5, 6, 7]  # never twice, never backwards
    assert reader.stats.dropped_duplicates == 2  # the second 1, the second 0
    assert reader.stats.gaps == 2  # 3 and 4 were skipped
    assert reader.stats.out_of_order == 1  # 3 turned up late (and was not delivered)


def test_accumulator_reports_deltas_of_shared_reader_stats() -> None:
    clock = FakeClock(T0)
    acc = Accumulator(clock)
    reader = Reader("http://x", "id", lambda *a: None, stats=acc.stats)
    reader.deliver(0, 0, "")
    reader.deliver(0, 0, "")
    acc.stats.reconnects += 2
    acc.stats.retry_reasons["connection lost"] = 2
    clock.now += S
    first = acc.report(1, 0.0)
    assert (first["duplicated"], first["reconnects"], first["errors"]["read"]) == (1, 2, 2)
    acc.stats.retry_reasons["connect failed: refused"] = 1
    clock.now += S
    second = acc.report(1, 0.0)  # only what happened since the last report
    assert (second["duplicated"], second["reconnects"]) == (0, 0)
    assert second["errors"] == {"connect": 1, "read": 0, "timeout": 0, "status": 0}


@pytest.mark.parametrize(
    ("reason", "cls"),
    [
        ("connect failed: Connection refused", "connect"),
        ("connect timeout", "timeout"),
        ("silent connection", "timeout"),
        ("no response head in time", "timeout"),
        ("connection lost", "read"),
        ("close 1001", "read"),
        ("HTTP 503", "status"),
        ("grpc INTERNAL", "status"),
        ("grpc UNAVAILABLE", "read"),
    ],
)
def test_error_classes(reason: str, cls: str) -> None:
    assert error_class(reason) == cls


def _report(
    loader: int, tokens: int, expected: int, cpu: float, lat_us: list[int], second: int = 0
) -> LoaderReport:
    h = Histogram()
    for v in lat_us:
        h.record(v)
    empty = Histogram().to_json()
    return {
        "loader": loader, "t0_ns": T0 + second * S, "t1_ns": T0 + (second + 1) * S,
        "users": 100, "arrived": 100,
        "streaming": 90, "tokens": tokens, "expected": expected, "fast_path": True,
        "requests": 10, "reconnects": 1, "duplicated": 0, "out_of_order": 0, "lost": 0,
        "wrong_text": 0, "streams_done": 2, "streams_failed": 0, "bytes_received": tokens * 80,
        "errors": {"connect": 0, "read": 1, "timeout": 0, "status": 0}, "cpu_s": cpu,
        "sys_s": cpu * 0.4, "latency": h.to_json(), "ttft": empty, "gap": empty,
    }  # fmt: skip


def test_summarize_merges_loaders_and_flags_the_bottleneck() -> None:
    w = Window()
    # Two loaders, two seconds each; loader CPU 0.95 s per second on one core: saturated.
    w.add(_report(0, 1000, 1000, 10.0, [1000] * 99 + [300_000]), None)
    w.add(_report(1, 1000, 1000, 20.0, [2000] * 100), None)
    w.add(_report(0, 1000, 1010, 10.95, [1000] * 100, second=1), 10.0, 4.0)
    w.add(_report(1, 990, 1000, 20.95, [2000] * 100, second=1), 20.0, 8.0)
    srv0 = Sample(cpu_s=100.0, rss_bytes=0, open_files=0, alive=1, read_bytes=0, written_bytes=0)
    srv1 = Sample(101.0, 0, 0, 1, 50_000, 350_000)
    cfg = BenchConfig(transports=["sse"], steps=[], slo_ms=250)
    step = Step(clients=200, ramp_s=1, hold_s=2)
    cost = ServerCost(srv0, srv1, 60 * 2**20, 400, 40 * 2**20, 200, 3990, cores=1)
    doc = summarize(step, w, 2.0, cost, cfg, loader_cores=1)
    assert doc["tokens"] == 3990 and doc["tokens_per_s"] == 1995.0
    assert doc["goodput"] == round(3990 / 4010, 5)
    assert doc["requests_per_s"] == 20.0
    assert doc["errors"]["read"] == 4 and doc["reconnects"] == 4
    assert doc["latency_ms"]["max"] == 300.0 and doc["latency_ms"]["p50"] <= 2.1
    assert doc["server"]["cpu_s_per_1k_tokens"] == round(1.0 / 3990 * 1000, 6)
    assert doc["server"]["mem_per_conn_bytes"] == round(20 * 2**20 / 200)
    assert doc["wire_bytes_per_token"] == round(400_000 / 3990, 1)
    assert doc["loadgen"]["cpu_util"] == pytest.approx(0.95, abs=0.01)
    assert doc["loadgen"]["cpu_us_per_token"] == round(1.9 / 3990 * 1e6, 2)
    assert doc["loadgen"]["sys_us_per_token"] == round(0.76 / 3990 * 1e6, 2)  # 40 % of it
    assert doc["loadgen"]["saturated"] and doc["limited_by"] == "loadgen"
    # One slow token in 400 sits above the 1 % line; goodput 0.995 and nothing lost: the SLO
    # (what users saw) held, and separately the step is flagged as bounded by the harness.
    assert doc["latency_ms"]["p99"] <= 2.1
    assert doc["slo"]["held"] is True


def test_a_silent_load_process_bounds_the_step_and_a_costly_load_side_is_flagged() -> None:
    cfg = BenchConfig(transports=["sse"], steps=[], slo_ms=250)
    step = Step(300, 1, 2)
    w = Window()
    for loader in (0, 1):  # of three: loader 2 never reported
        w.add(_report(loader, 1000, 1000, 10.0, [1000] * 100), None)
        w.add(_report(loader, 1000, 1000, 10.01, [1000] * 100, second=1), 10.0, 4.0)
    # the server: 1 s of CPU for 2000 tokens = 500 µs/token; the loaders 10 µs/token
    srv0 = Sample(cpu_s=100.0, rss_bytes=0, open_files=0, alive=1, read_bytes=0, written_bytes=0)
    cost = ServerCost(srv0, Sample(101.0, 0, 0, 1, 0, 0), 0, 0, None, 200, 2000, cores=1)
    doc = summarize(step, w, 2.0, cost, cfg, loader_cores=1, loaders=3)
    assert doc["loadgen"]["processes"] == 2 and doc["loadgen"]["silent"] == 1
    assert doc["limited_by"] == "loadgen" and not doc["slo"]["held"]
    assert doc["loadgen"]["costlier_than_server"] is False
    assert summarize(step, w, 2.0, cost, cfg, 1, loaders=2)["slo"]["held"]  # all reported
    cheap = ServerCost(srv0, Sample(100.001, 0, 0, 1, 0, 0), 0, 0, None, 200, 2000, cores=1)
    assert summarize(step, w, 2.0, cheap, cfg, 1)["loadgen"]["costlier_than_server"] is True
    assert summarize(step, w, 2.0, None, cfg, 1)["loadgen"]["costlier_than_server"] is None


def test_slo_holds_and_breaks_on_each_condition() -> None:
    cfg = BenchConfig(transports=["sse"], steps=[], slo_ms=250)
    step = Step(100, 1, 1)
    ok = Window()
    ok.add(_report(0, 100, 100, 1.0, [5000] * 100), None)
    assert summarize(step, ok, 1.0, None, cfg, 1)["slo"]["held"]
    slow = Window()
    slow.add(_report(0, 100, 100, 1.0, [5000] * 90 + [400_000] * 10), None)
    assert not summarize(step, slow, 1.0, None, cfg, 1)["slo"]["held"]
    short = Window()
    short.add(_report(0, 98, 100, 1.0, [5000] * 98), None)  # goodput 0.98
    assert not summarize(step, short, 1.0, None, cfg, 1)["slo"]["held"]
    lossy = Window()
    r = _report(0, 100, 100, 1.0, [5000] * 100)
    r["lost"] = 1
    lossy.add(r, None)
    assert not summarize(step, lossy, 1.0, None, cfg, 1)["slo"]["held"]


def test_ramp_and_duration_parsing() -> None:
    assert (
        parse_duration("90") == 90 and parse_duration("2m") == 120 and parse_duration("1.5s") == 1.5
    )
    for bad in ("x", "-1s", "nan", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)
    steps = parse_steps("1000:30s,5000:30s,50000:120s", 50000, 10)
    assert [s.clients for s in steps] == [1000, 5000, 50000]
    assert steps[0].ramp_s == 10 and steps[0].hold_s == 20
    assert steps[2].ramp_s == 30 and steps[2].hold_s == 100  # 90 s window + 10 s --hold
    assert parse_steps("20s", 300, 15) == [Step(300, 20.0, 15)]
    for bad in ("abc:10s", "0:10s", "100:xs"):
        with pytest.raises(ValueError):
            parse_steps(bad, 10, 0)
    assert knee.ladder(250, 2000, 1.5) == [250, 375, 562, 843, 1264, 1896, 2000]


def _search(
    capacity: int, ladder: list[int], refine: int, repeats: int = 1, flaky: dict | None = None
) -> tuple[list[int], tuple]:
    """Run the knee search against a server that holds exactly ``capacity`` users; ``flaky``
    maps a count to the outcomes of its successive runs (noise near the break)."""
    done: list[knee.Outcome] = []
    left, runs = refine, dict(flaky or {})
    while True:
        top = max([o.clients for o in done] or [0])
        nxt = knee.next_step(done, [c for c in ladder if c > top], left, repeats)
        if nxt is None:
            break
        n, why = nxt
        left -= why == "bisect"
        held = runs[n].pop(0) if runs.get(n) else n <= capacity
        done.append(knee.Outcome(n, held))
    return [o.clients for o in done], knee.knee_of(done)


def test_knee_search_stops_at_the_first_break_and_bisects() -> None:
    ladder = knee.ladder(200, 3000, 1.5)  # 200 300 450 675 1012 1518 2277 3000
    order, (best, broke) = _search(800, ladder, refine=2)
    assert order == [200, 300, 450, 675, 1012, 826, 747]  # sqrt(675*1012), then sqrt(675*826)
    assert (best, broke) == (747, 826)
    order, (best, broke) = _search(800, ladder, refine=0)
    assert order == [200, 300, 450, 675, 1012] and (best, broke) == (675, 1012)
    assert _search(10_000, ladder, 2) == (ladder, (3000, None))  # never broke: the top step
    assert _search(100, ladder, 2)[1] == (None, 200)  # broke at once: no knee


def test_knee_edges_run_again_and_the_majority_decides() -> None:
    ladder = knee.ladder(200, 3000, 1.5)
    order, edge = _search(800, ladder, refine=0, repeats=3)
    assert order == [200, 300, 450, 675, 1012, 675, 675, 1012, 1012] and edge == (675, 1012)
    # 675 held once in three runs: it is a break, and the knee moves down to 450
    order, edge = _search(800, ladder, 0, 3, flaky={675: [True, False, False]})
    assert edge == (450, 675) and order.count(450) == 3 and order.count(675) == 3
    assert knee.runs_of([knee.Outcome(5, True), knee.Outcome(5, False)], 5) == (1, 2)
    assert knee.collapse([knee.Outcome(5, True), knee.Outcome(5, False)]) == [
        knee.Outcome(5, False)  # a tie is broken
    ]


def test_a_held_step_above_a_break_is_not_the_knee() -> None:
    done = [knee.Outcome(200, True), knee.Outcome(300, False), knee.Outcome(450, True)]
    assert knee.knee_of(done) == (200, 300)


def test_loader_reports_carry_every_field() -> None:
    acc = Accumulator(FakeClock(T0))
    doc = acc.report(users=3, cpu_s=1.5, sys_s=0.5)
    doc["clock"] = Clock().doc()  # the loader adds its clock (bench.load.loader.write_report)
    doc["loop"] = "compiled"  # and its event loop
    assert set(doc) == set(report_fields())
    assert as_report(json.loads(json.dumps(doc))) == doc
    with pytest.raises(ValueError, match="without tokens"):
        as_report({k: v for k, v in doc.items() if k != "tokens"})


def test_validate_rejects_incomplete_documents() -> None:
    with pytest.raises(results.SchemaError):
        results.validate({"schema_version": 1})
    with pytest.raises(results.SchemaError):
        results.validate([])


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ramp", "abc:1s"], "not a client count"),
        (["--transport", "carrier-pigeon"], "unknown transport"),
        (["--rate", "0"], "--rate"),
        (["--clients", "40000", "--loaders", "2"], "15,000 sockets"),
        (["--transport", "all", "--target", "http://127.0.0.1:1"], "--target needs one"),
    ],
)
def test_bench_rejects_bad_options_clearly(args: list[str], message: str) -> None:
    proc = run_cli("bench", *args, timeout=30)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("target", ["127.0.0.1:1", "no-such-host.invalid:80"])
def test_a_wrong_target_is_one_line_and_a_quick_exit(
    transport: str, target: str, tmp_path: Path
) -> None:
    # Nothing listens on port 1; .invalid never resolves (RFC 2606). The old behaviour was a
    # minute of silence; the probe answers at once, so 30 s is a margin, not a measurement.
    url = f"{transports.get(transport).scheme}://{target}"
    proc = run_cli("bench", "--transport", transport, "--target", url,
                   "--clients", "5", "--out", str(tmp_path / "r"), timeout=30)  # fmt: skip
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and target in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "results.json").exists()


@pytest.mark.timeout(300)
def test_small_run_writes_valid_results(tmp_path: Path) -> None:
    """Every transport in one run (one yardstick and start-up for the four)."""
    out = tmp_path / "run"
    proc = run_cli(
        "bench", "--transport", ",".join(TRANSPORTS), "--clients", "60", "--ramp", "1s",
        "--hold", "3", "--tokens", "80", "--rate", "40", "--think", "0.2", "--out", str(out),
        "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = results.load(out)  # validates against the schema
    assert doc["machine"]["cores"] and doc["machine"]["packages"]["grpcio"]
    assert [r["transport"] for r in doc["runs"]] == list(TRANSPORTS)
    for run in doc["runs"]:
        (step,) = run["steps"]
        t = run["transport"]
        assert step["tokens"] > 0 and step["goodput"] >= 0.99, (t, step)
        assert step["lost"] == 0 and step["duplicated"] == 0 and step["wrong_text"] == 0, t
        assert step["unread"] == 0, t  # every stream finished or was stopped by the run's end
        assert step["slo"]["ttft_checked"] == (step["ttft_ms"]["count"] > 0), t
        assert step["server"]["cpu_s_per_1k_tokens"] > 0, t
        assert step["loadgen"]["cpu_us_per_token"] > 0, t
    assert (
        json.loads((out / "results.json").read_text())["schema_version"] == results.SCHEMA_VERSION
    )


@pytest.mark.timeout(150)
def test_knee_searches_take_turns_and_every_step_ends_with_no_users(tmp_path: Path) -> None:
    """An SLO nothing meets (a p99 within 1 µs) breaks every step, so each search goes down
    the ladder from 20 users, three steps (a one-count ladder's factor is 2: 20, 10, 5, 2),
    whatever the machine's speed. The two
    searches take a step each in turn; every step ends once its users have gone and the server
    holds no connection (a user whose cancel was swallowed used to stream on); first answers of
    1..80 tokens end inside a window that ends before any 80-token answer could (2 s at
    40 tok/s)."""
    out = tmp_path / "knee"
    proc = run_cli(
        "bench", "--transport", "sse,ws", "--find-knee", "--knee-start", "20", "--users", "20",
        "--slo-ms", "0.001", "--ramp", "0.5s", "--hold", "1.2", "--windows", "1",
        "--tokens", "80", "--rate", "40", "--think", "0", "--no-pin", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = results.load(out)["runs"]
    assert [r["transport"] for r in runs] == ["sse", "ws"]
    for run in runs:
        steps = sorted(run["steps"], key=lambda s: s["order"])
        assert [s["clients"] for s in steps] == [20, 10, 5, 2]
        assert not any(s["slo"]["held"] for s in steps) and run["knee"] is None
        assert all(s["emptied"]["empty"] for s in steps), [s["emptied"] for s in steps]
        assert steps[0]["streams_done"] >= 3
    turns = re.findall(r"^(sse|ws) +step (\d):", proc.stderr, re.M)
    assert turns == [(t, str(k)) for k in range(1, 5) for t in ("sse", "ws")], turns


@pytest.mark.timeout(120)
def test_stationary_users_churn_from_the_first_window(tmp_path: Path) -> None:
    """--stationary: first answers of 1..200 tokens, so some end (and their users post again)
    inside a window that ends about 2 s after the first user started; without it every answer
    runs 5 s (200 at 40 tok/s) and none could."""
    out = tmp_path / "stationary"
    proc = run_cli(
        "bench", "--transport", "sse", "--users", "60", "--stationary", "--ramp", "0.5s",
        "--hold", "1.2", "--windows", "1", "--tokens", "200", "--rate", "40", "--think", "0",
        "--no-pin", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = results.load(out)
    assert doc["config"]["stationary"] is True
    assert doc["runs"][0]["steps"][0]["streams_done"] >= 1


@pytest.mark.timeout(120)
def test_a_knee_budget_stops_the_search_unsettled(tmp_path: Path) -> None:
    """--knee-budget: past it no search starts another step (each runs its first), and the knee
    says it was cut and is unsettled."""
    out = tmp_path / "cut"
    proc = run_cli(
        "bench", "--transport", "sse", "--find-knee", "--knee-start", "20", "--users", "80",
        "--knee-budget", "0.001", "--ramp", "0.5s", "--hold", "1", "--windows", "1",
        "--tokens", "80", "--rate", "40", "--think", "0", "--no-pin", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sse: the knee budget ran out" in proc.stderr
    (run,) = results.load(out)["runs"]
    assert [s["clients"] for s in run["steps"]] == [20]
    assert run["knee"]["cut"] is True and run["knee"]["settled"] is False, run["knee"]


def test_within_never_swallows_a_cancel_that_meets_the_result() -> None:
    """Python 3.11's wait_for returns the result when a cancel arrives as it completes
    (CPython gh-86296); ``within`` raises the cancel."""

    async def main() -> str:
        fut = asyncio.get_running_loop().create_future()

        async def waiter() -> str:
            await within(asyncio.shield(fut), 5)
            return "ran on"

        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0)
        fut.set_result(1)
        task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            return "cancelled"

    assert asyncio.run(main()) == "cancelled"


class _FakeFleet:
    def __init__(self) -> None:
        self.targets: list[int] = []

    def send(self, messages: list) -> None:
        self.targets.append(sum(m["target"] for m in messages))

    def dead(self) -> list[int]:
        return []


class _FakeDrive:
    """A server that accepts at most ``accept`` connections per second (simulated time)."""

    def __init__(self, accept: int) -> None:
        self.fleet, self.accept, self.connected, self.now = _FakeFleet(), accept, 0, 0.0
        self.last_cpu: dict[int, float] = {}

    def server_sample(self) -> None:  # no server processes to read
        return None

    def pump(self, seconds: float, step: int, *into: object) -> tuple[int, int]:
        offered = self.fleet.targets[-1] if self.fleet.targets else 0
        self.connected = min(offered, self.connected + int(self.accept * seconds))
        self.now += seconds
        return 0, 0

    def arrived(self) -> int:
        return self.connected


def test_the_adaptive_ramp_offers_what_the_server_accepts(monkeypatch) -> None:
    from bench.load import ramp

    drive = _FakeDrive(accept=700)
    monkeypatch.setattr(ramp.time, "monotonic", lambda: drive.now)
    got = ramp.adaptive(drive, Step(50_000, 20.0, 5, adaptive=True), 0, 5)  # type: ignore[arg-type]
    # 20 s at 700/s: at most 14,000 connect (the first second offers 500); the rest is stopped,
    # not left to time out
    assert got.limited and 13_000 <= got.users_connected <= 14_000 and got.accept_per_s == 700
    assert drive.fleet.targets[-1] == got.users_connected  # the last command: stop the rest
    # the offer never ran far ahead of the server: at most two seconds of accepts, plus a step
    assert max(drive.fleet.targets[:-1]) - got.users_connected <= 3 * 700 + ramp.FIRST
    fast = _FakeDrive(accept=20_000)
    monkeypatch.setattr(ramp.time, "monotonic", lambda: fast.now)
    got = ramp.adaptive(fast, Step(50_000, 60.0, 5, adaptive=True), 0, 5)  # type: ignore[arg-type]
    assert not got.limited and got.users_connected == 50_000 and got.took_s < 60
    assert got.limited_by is None  # not limited, and no server to read here


def test_the_side_that_limited_a_ramp() -> None:
    from bench.load.ramp import side

    assert side(None, 1.0, 2) is None  # the server's CPU not measured
    assert side(1.1, 0.8, 2) == "server" and side(0.8, 1.1, 2) == "loadgen"
    assert side(0.5, 0.4, 2) == "accepts"  # neither side near the machine's cores
