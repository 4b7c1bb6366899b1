"""The floor stack's targets (bench/report/targets.py): every outcome is reachable, from figures."""

from __future__ import annotations

from typing import Any

from bench.report import targets
from bench.report.figures import Knee
from bench.report.stats import Interval, bracket

SYS = 8.0  # syscall_us: the physical limit is 1e6 / (8 × 40) = 3,125 users per core


def iv(mean: float, lo: float | None = None, hi: float | None = None) -> Interval:
    return Interval(mean, mean if lo is None else lo, mean if hi is None else hi, 3)


def knee(t: str, users: Interval, cpu: Interval | None = None, *, loadgen: float = 5.0,
         bound: bool = False, pace: float | None = None) -> Knee:  # fmt: skip
    step = {"clients": int(users.mean), "windows": [{"loadgen_cpu_us_per_token": loadgen}] * 3}
    return Knee(t, int(users.mean), None, (3, 3), None, users, cpu, None, bound, None, pace,
                [step], step)  # fmt: skip


def test_a_goal_is_met_missed_or_within_the_noise() -> None:
    assert targets.at_most(iv(1.0, 0.9, 1.1), 1.2) == "met"
    assert targets.at_most(iv(1.4, 1.3, 1.5), 1.2) == "missed"
    assert targets.at_most(iv(1.2, 1.1, 1.3), 1.2) == "within noise"
    assert targets.at_least(bracket(800, 900), 700) == "met"
    assert targets.at_least(bracket(600, 700), 700) == "missed"  # it broke at the goal
    assert targets.at_least(bracket(600, 800), 700) == "within noise"
    assert targets.at_least(bracket(600, None), 700) == "within noise"  # never broke


def test_server_cpu_per_token_in_units_of_the_yardstick() -> None:
    sse = knee("sse", bracket(900, 1000), iv(9.6, 9.0, 10.2))
    rows = targets.cpu(
        {"sse": sse, "ws": knee("ws", bracket(900, 1000), iv(16.0, 15.0, 17.0))}, SYS
    )
    by = {r.who: r for r in rows}
    assert by["best"].measured == "SSE: 1.20 [1.12, 1.27]"
    assert by["best"].outcome == "within noise"
    assert by["SSE"].outcome == "met"  # ≤ 1.5
    assert by["WebSocket"].outcome == "missed"  # 2.0
    assert by["gRPC"].outcome == by["long polling"].outcome == "not measured"
    assert all(r.outcome == "not measured" for r in targets.cpu({}, SYS))
    assert all(r.outcome == "not measured"
               for r in targets.cpu({"sse": knee("sse", bracket(9, 10), iv(9))}, None))  # fmt: skip


def test_users_per_core_as_a_share_of_the_physical_limit() -> None:
    rows = targets.capacity({"sse": knee("sse", bracket(2250, 2500)),
                             "poll": knee("poll", bracket(500, 700))}, SYS)  # fmt: skip
    by = {r.who: r for r in rows}
    assert by["SSE"].measured == "72 % [72, 80) (2,250 of 3,125)"
    assert by["best"].outcome == "met"  # 72 % ≥ 70 %
    assert by["long polling"].outcome == "missed"  # broke at 700: 22 %
    rows = targets.capacity({"sse": knee("sse", bracket(1000, 1100))}, SYS)
    assert rows[0].outcome == "missed"


def test_the_write_window_target_is_normalised_to_the_reference_machine() -> None:
    assert targets.flush({})[0].outcome == "not measured"
    fast = {"sse": knee("sse", bracket(6000, 7000), pace=2.0)}  # a slow machine: x2
    assert targets.flush(fast)[0].outcome == "met"
    assert targets.flush(fast)[0].measured.startswith("SSE: 12,000")
    slow = {"sse": knee("sse", bracket(4000, 4500), pace=2.0)}
    assert targets.flush(slow)[0].outcome == "missed"


def test_memory_counts_only_at_ten_thousand_connections_or_more() -> None:
    rows = targets.memory({"sse": {2000: iv(4096.0), 12000: iv(8192.0)},
                           "ws": {50000: iv(12288.0)}, "grpc": {9000: iv(1024.0)}})  # fmt: skip
    by = {r.who: r for r in rows}
    assert (by["SSE"].outcome, by["SSE"].measured) == ("met", "8.0 (12,000 connections)")
    assert by["WebSocket"].outcome == "missed"
    assert by["gRPC"].outcome == "not measured"  # 9,000 connections only


def _hold(**st: Any) -> dict[str, Any]:
    step = {"clients": 50_000, "streams_done": 900, "latency_ms": {"p99": 180.0},
            "ttft_ms": {"p99": 400.0, "count": 10}, "lost": 0, "unread": 0,
            "ramp": {"users_connected": 50_000}, **st}  # fmt: skip
    return {"runs": [{"transport": "sse", "stack": "floor", "steps": [step]}]}


def test_the_50000_user_hold_needs_churn_and_every_figure() -> None:
    assert targets.hold([])[0].outcome == "not measured"
    assert targets.hold([_hold()])[0].outcome == "met"
    assert targets.hold([_hold(streams_done=0)])[0].outcome == "not measured"
    assert targets.hold([_hold(lost=3)])[0].outcome == "missed"
    late = targets.hold([_hold(ttft_ms={"p99": 1500.0, "count": 10})])[0]
    assert late.outcome == "missed" and "first token p99 1.5 s" in late.measured
    # a run with churn wins over a later one without
    assert targets.hold([_hold(lost=3), _hold(streams_done=0)])[0].outcome == "missed"


def test_the_load_generator_at_the_knees() -> None:
    floor = {"sse": knee("sse", bracket(900, 1000), loadgen=6.0),
             "grpc": knee("grpc", bracket(700, 800), loadgen=16.0)}  # fmt: skip
    rows = targets.loadgen(floor, SYS, {"sse": knee("sse", bracket(500, None), bound=True)})
    by = {(r.target, r.who): r.outcome for r in rows}
    cpu, bound = "load generator CPU per token (× syscall_us)", rows[-1]
    assert by[(cpu, "SSE")] == "met" and by[(cpu, "gRPC")] == "missed"
    assert (bound.outcome, bound.measured) == ("missed", "SSE")
    assert targets.loadgen(floor, SYS, {})[-1].outcome == "not measured"
    clear = targets.loadgen(floor, SYS, {"sse": knee("sse", bracket(500, 600))})[-1]
    assert (clear.outcome, clear.measured) == ("met", "none of 1")


def test_nothing_measured_is_not_measured() -> None:
    rows = targets.judge([])
    assert rows and all(r.outcome == "not measured" for r in rows)
