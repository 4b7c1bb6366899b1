"""The floor stack's targets (bench/report/targets.py): every outcome is reachable, from figures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.report import targets
from bench.report.figures import Knee
from bench.report.stats import Interval, bracket

ROOT = Path(__file__).resolve().parent.parent
SYS = 8.0  # syscall_us: the physical limit is 1e6 / (8 × 40) = 3,125 users per core


def iv(mean: float, lo: float | None = None, hi: float | None = None) -> Interval:
    return Interval(mean, mean if lo is None else lo, mean if hi is None else hi, 3)


def knee(t: str, users: Interval, cpu: Interval | None = None, *, loadgen: float = 5.0,
         bound: bool = False, pace: float | None = None) -> Knee:  # fmt: skip
    step = {"clients": int(users.mean), "server": {"cpu_over_cores": False},
            "windows": [{"loadgen_cpu_us_per_token": loadgen}] * 3}  # fmt: skip
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
    assert by["best"].measured == "SSE: 1.20 [1.12, 1.27] (best of the 2 of 4 measured)"
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
    assert targets.flush({}, 250.0)[0].outcome == "not measured"
    fast = {"sse": knee("sse", bracket(6000, 7000), pace=2.0)}  # a slow machine: x2
    assert targets.flush(fast, 250.0)[0].outcome == "met"
    assert targets.flush(fast, 250.0)[0].measured.startswith("SSE: 12,000")
    assert targets.flush(fast, 500.0)[0].outcome == "not measured"  # a looser SLO than the goal
    slow = {"sse": knee("sse", bracket(4000, 4500), pace=2.0)}
    assert targets.flush(slow, 250.0)[0].outcome == "missed"
    edge = {"sse": knee("sse", bracket(4500, 5500), pace=2.0)}
    assert targets.flush(edge, 250.0)[0].outcome == "within noise"


def test_memory_counts_only_at_ten_thousand_connections_or_more_and_the_worst_point() -> None:
    rows = targets.memory({
        "sse": [(2000, iv(40960.0), "stock"), (12000, iv(8192.0), "tuned")],
        "ws": [(50000, iv(8192.0), "tuned"), (20000, iv(12288.0), "tuned")],
        "grpc": [(9000, iv(1024.0), "stock")],
        "poll": [(10000, iv(10240.0, 9216.0, 11264.0), "stock")]})  # fmt: skip
    by = {r.who: r for r in rows}
    assert by["SSE"].outcome == "met"
    assert by["SSE"].measured == "8.0 (12,000 connections, gc tuned; worst of 1)"
    assert by["WebSocket"].outcome == "missed"  # 12 KiB at 20,000, though 8 at 50,000
    assert by["gRPC"].outcome == "not measured"  # 9,000 connections only
    assert by["long polling"].outcome == "within noise"


def _hold(transport: str = "sse", date: str = "2026-12-08T01:00:00Z", rate: float = 1.0,
          **st: Any) -> dict[str, Any]:  # fmt: skip
    step = {"clients": 50_000, "streams_done": 900, "latency_ms": {"p99": 180.0},
            "ttft_ms": {"p99": 400.0, "count": 10}, "lost": 0, "unread": 0, "streams_failed": 0,
            "server": {"connections": 49_990}, "limited_by": None, **st}  # fmt: skip
    run = {"transport": transport, "stack": "floor", "gc": "tuned", "flush_ms": 0.0,
           "steps": [step]}  # fmt: skip
    return {"config": {"rate": rate, "tokens": 60}, "machine": {"date": date}, "runs": [run]}


def test_the_50000_user_hold_needs_churn_and_every_figure() -> None:
    def outcome(*docs: dict[str, Any], best: str | None = None) -> str:
        return targets.hold(list(docs), best)[0].outcome

    assert outcome() == "not measured"
    assert outcome(_hold(server={"connections": 50_000})) == "met"
    assert outcome(_hold(server={"connections": 27_111})) == "missed"  # the rest never came
    assert outcome(_hold(streams_done=0)) == "not measured"
    assert outcome(_hold(lost=3)) == outcome(_hold(streams_failed=2)) == "missed"
    assert outcome(_hold(unread=None)) == "not measured"
    assert outcome(_hold(limited_by="loadgen")) == "not measured"
    assert outcome(_hold(rate=0.03)) == "not measured"  # not the target's load
    flagged = targets.hold([_hold(loadgen={"costlier_than_server": True},
                                  ramp={"limited_by": "loadgen"})])[0]  # fmt: skip
    assert flagged.outcome == "missed"  # 49,990 connected
    assert "ramp was limited by the load generator" in flagged.measured
    assert "load generator was costlier than the server" in flagged.measured
    late = targets.hold([_hold(server={"connections": 50_000},
                               ttft_ms={"p99": 1500.0, "count": 10})])[0]  # fmt: skip
    assert late.outcome == "missed" and "first token p99 1.5 s" in late.measured
    # the newest run with churn counts, whatever the order given
    old, new = _hold(lost=3, date="2026-12-07T22:00:00Z"), _hold(server={"connections": 50_000})
    assert outcome(new, old) == outcome(old, new) == "met"
    assert outcome(old, new, _hold(streams_done=0, date="2026-12-09T00:00:00Z")) == "met"
    # the best transport's hold, where it has one
    ws = _hold("ws", server={"connections": 50_000}, date="2026-12-09T00:00:00Z")
    assert outcome(old, ws, best="sse") == "missed"
    assert outcome(old, ws, best="grpc") == "met"


def test_the_load_generator_at_the_knees() -> None:
    floor = {"sse": knee("sse", bracket(900, 1000), loadgen=6.0),
             "grpc": knee("grpc", bracket(700, 800), loadgen=16.0)}  # fmt: skip
    every = {t: knee(t, bracket(500, 600)) for t in ("sse", "ws", "grpc", "poll")}
    rows = targets.loadgen(
        floor, SYS, {**every, "sse": knee("sse", bracket(500, None), bound=True)}
    )
    by = {(r.target, r.who): r.outcome for r in rows}
    cpu, bound = "load generator CPU per token (× syscall_us)", rows[-1]
    assert by[(cpu, "SSE")] == "met" and by[(cpu, "gRPC")] == "missed"
    assert (bound.outcome, bound.measured) == ("missed", "SSE")
    assert targets.loadgen(floor, SYS, {})[-1].outcome == "not measured"
    partial = targets.loadgen(floor, SYS, {"sse": every["sse"]})[-1]
    assert partial.outcome == "not measured" and "WebSocket" in partial.measured
    clear = targets.loadgen(floor, SYS, every)[-1]
    assert (clear.outcome, clear.measured) == ("met", "none of 4")


def test_a_knee_open_above_is_judged_on_its_bracket_and_leaked_pinning_is_not_judged() -> None:
    open_fit = knee("poll", Interval(271.0, 230.0, math.inf, 1))
    open_fit.broke_at = 300
    rows = {r.who: r for r in targets.capacity({"poll": open_fit}, SYS)}
    assert rows["long polling"].outcome == "missed" and "bracket" in rows["long polling"].measured
    bound = knee("poll", Interval(271.0, 230.0, math.inf, 1), bound=True)
    bound.broke_at = 300  # where the load generator gave out: not the server's break
    rows = {r.who: r for r in targets.capacity({"poll": bound}, SYS)}
    assert rows["long polling"].outcome == "within noise"
    leaked = knee("sse", bracket(2500, 2700))
    leaked.steps[0]["server"] = {"cpu_over_cores": True}
    rows = {r.who: r for r in targets.capacity({"sse": leaked}, SYS)}
    assert rows["SSE"].outcome == "not measured" and "pinning leaked" in rows["SSE"].measured
    assert rows["best"].outcome == "not measured"


def test_the_yardstick_comes_from_the_floor_knees_at_40_tokens_a_second() -> None:
    doc = json.loads((ROOT / "results/20261207-floor/knee/results.json").read_text())
    line = targets.yardstick_line([doc])
    want = targets.syscall_us(doc)
    assert want is not None and f"{want:.2f} µs" in line
    assert f"{1e6 / (want * 40):,.0f} users per core" in line
    slower = {**doc, "config": {**doc["config"], "rate": 20.0}}
    assert "not measured" in targets.yardstick_line([slower])
    rows = targets.judge([doc])
    assert {r.outcome for r in rows if r.target.startswith("server CPU")} <= {
        "met", "missed", "within noise"}  # fmt: skip
    assert all(r.outcome == "not measured" for r in targets.judge([slower]))


def test_nothing_measured_is_not_measured() -> None:
    rows = targets.judge([])
    assert rows and all(r.outcome == "not measured" for r in rows)
