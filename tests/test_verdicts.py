"""Verdicts that survive a second run: intervals, ties, the machine's yardstick, what to ship.

Synthetic runs, built here, stand for two runs of one commit on one machine: the same server,
other noise. The rules must give the same verdicts on both; a real difference must show.
"""

from __future__ import annotations

import random

import pytest

from bench.load import yardstick
from bench.report import compare, figures, ship, stats, verdicts
from bench.results import machine
from bench.results.queries import rates_from


def _step(clients: int, held: bool, cpu_us: float, mem: float, rng: random.Random,
          noise: float) -> dict:  # fmt: skip
    """A knee-run step with three windows whose figures scatter by ``noise``."""
    jitter = lambda v: v * (1 + rng.uniform(-noise, noise))  # noqa: E731
    windows = [{"tokens_per_s": clients * 40.0, "goodput": 1.0, "requests_per_s": 10.0,
                "window_s": 1.5, "p50_ms": 2.0, "p99_ms": jitter(100.0 if held else 900.0),
                "tokens": clients * 60, "cpu_s_per_1k_tokens": jitter(cpu_us) / 1000,
                "mem_per_conn_bytes": jitter(mem), "loadgen_cpu_us_per_token": 9.0,
                "held": held} for _ in range(3)]  # fmt: skip
    return {
        "clients": clients, "tokens_per_s": clients * 40.0, "requests_per_s": 10.0,
        "latency_ms": {"p50": 2.0, "p99": 100.0 if held else 900.0, "count": 100_000},
        "server": {"cpu_s_per_1k_tokens": cpu_us / 1000, "mem_per_conn_bytes": mem,
                   "connections": clients},
        "slo": {"held": held}, "limited_by": None, "windows": windows,
    }  # fmt: skip


def _run(transport: str, knee: int, broke: int, cpu_us: float, mem: float,
         rng: random.Random, noise: float) -> dict:  # fmt: skip
    steps = [_step(c, c <= knee, cpu_us, mem, rng, noise) for c in (200, 300, 450, knee, broke)]
    return {"transport": transport, "steps": steps,
            "knee": {"clients": knee, "clients_per_server_core": knee, "broke_at": broke,
                     "tokens_per_s": knee * 40.0, "limited_by": None, "held_runs": [3, 3],
                     "broke_runs": [0, 3], "server_cores": 1}}  # fmt: skip


def _doc(seed: int, unit_us: float = 5.0, noise: float = 0.03, ws_cpu: float = 27.0,
         knees: tuple[int, int, int, int] = (826, 1012, 914, 1012)) -> dict:  # fmt: skip
    rng = random.Random(seed)
    sk, sb, wk, wb = knees
    ys = machine.combine(_calibration(unit_us - 1, 1.0, unit_us * 1.2), None)
    return {"run_id": f"r{seed}", "kind": "bench", "config": {"rate": 40.0},
            "machine": {"yardstick": ys},
            "runs": [_run("sse", sk, sb, 28.0, 38_000, rng, noise),
                     _run("ws", wk, wb, ws_cpu, 29_000, rng, noise)]}  # fmt: skip


def _calibration(kernel: float, python: float, wall: float) -> dict:
    one = lambda v: {"median": v, "min": v, "max": v, "spread": 0.0}  # noqa: E731
    return {"syscall_us": one(kernel), "python_us": one(python), "wall_us": one(wall),
            "unit_us": kernel + python}  # fmt: skip


def _verdicts(doc: dict) -> dict[str, str]:
    return {v["claim"]: v["verdict"] for v in verdicts.verdicts([doc], [])}


def test_an_interval_knows_its_spread_and_flags_it() -> None:
    i = stats.of([10.0, 10.5, 9.5])
    assert i is not None and i.n == 3 and i.mean == pytest.approx(10.0)
    assert i.lo < 10 < i.hi and not i.unstable
    assert stats.of([10.0, 14.0, 7.0]).unstable  # sd over 10 % of the mean (pyperf's rule)
    assert stats.of([]) is None and stats.of([None, 3.0]).n == 1
    # half-open: [826, 914) and [914, 1012) touch where the first broke and the second held
    assert stats.compare(stats.bracket(826, 914), stats.bracket(914, 1012)) == "b"
    assert stats.compare(stats.bracket(826, 1012), stats.bracket(914, 1012)) == "tie"
    assert stats.compare(stats.bracket(826, None), stats.bracket(914, 1012)) == "tie"
    assert stats.compare(stats.bracket(500, 600), stats.bracket(914, 1012)) == "b"


def test_two_runs_that_differ_by_noise_give_the_same_verdicts() -> None:
    first = _verdicts(_doc(1))
    for seed in range(2, 12):
        assert _verdicts(_doc(seed)) == first, seed
    # knees of 826 and 914 that both broke at 1012: the brackets overlap, either order is
    # possible, a tie on capacity; with CPU per token 28 vs 27 µs and 3 % noise, a tie on CPU
    # too: a tie overall
    assert first["One-way traffic fits SSE best"] == "tie"
    # brackets that only touch are an order: WebSocket held 826 where SSE broke
    v = {x["claim"]: x for x in verdicts.verdicts([_doc(3, knees=(747, 826, 826, 914))], [])}
    assert v["One-way traffic fits SSE best"]["verdict"] == "refuted"
    assert (
        "WebSocket held 826 in 1 of 1 runs; SSE broke there in 1 of 1"
        in (v["One-way traffic fits SSE best"]["why"])
    )


def test_a_real_difference_shows_with_its_margin() -> None:
    doc = _doc(1, ws_cpu=18.0, knees=(600, 675, 914, 1012))
    v = {x["claim"]: x for x in verdicts.verdicts([doc], [])}
    assert v["One-way traffic fits SSE best"]["verdict"] == "refuted"
    why = v["One-way traffic fits SSE best"]["why"]
    assert "WebSocket ahead, 1.35x to 1.69x SSE's" in why  # [914, 1012) over [600, 675)
    assert v["WebSockets cost more memory per connection"]["verdict"] == "refuted"


def _with_lean(stock: dict, lean: dict) -> dict:
    """One document: ``stock``'s runs as they are, ``lean``'s as the lean stack's."""
    return {**stock, "runs": stock["runs"] + [{**r, "stack": "lean"} for r in lean["runs"]]}


def test_a_cost_verdict_says_whose_it_is_the_protocols_or_the_libraries() -> None:
    stock = _doc(1, ws_cpu=18.0, knees=(600, 675, 914, 1012))  # WebSocket ahead, as stock
    same = {x["claim"]: x for x in verdicts.verdicts([_with_lean(stock, _doc(2, ws_cpu=18.0,
            knees=(600, 675, 914, 1012)))], [])}  # fmt: skip
    one_way = same["One-way traffic fits SSE best"]
    assert one_way["verdict"] == "refuted"
    assert "lean against lean:" in one_way["why"] and "the protocol's" in one_way["why"]
    # lean SSE and lean WebSocket tie: WebSocket's lead was its library's
    tie = _doc(3, ws_cpu=28.0, knees=(826, 1012, 914, 1012))
    differ = {x["claim"]: x for x in verdicts.verdicts([_with_lean(stock, tie)], [])}
    one_way = differ["One-way traffic fits SSE best"]
    assert one_way["verdict"] == "nuanced"
    assert "refuted with the stock libraries, tie lean against lean" in one_way["why"]
    # without lean runs the stock verdict stands and says so
    alone = {x["claim"]: x for x in verdicts.verdicts([stock], [])}
    assert alone["One-way traffic fits SSE best"]["verdict"] == "refuted"
    assert "lean stacks not measured" in alone["One-way traffic fits SSE best"]["why"]


def test_the_protocol_verdicts_prefer_the_floor_stack_to_lean() -> None:
    """Stock against floor where a run measured floor for SSE and WebSocket, else lean."""
    stock = _doc(1, ws_cpu=18.0, knees=(600, 675, 914, 1012))  # WebSocket ahead, as stock
    lean_tie = _doc(2, ws_cpu=28.0, knees=(826, 1012, 914, 1012))
    floor_ahead = _doc(3, ws_cpu=18.0, knees=(600, 675, 914, 1012))
    both = _with_lean(stock, lean_tie)
    both["runs"] += [{**r, "stack": "floor"} for r in floor_ahead["runs"]]
    got = {x["claim"]: x for x in verdicts.verdicts([both], [])}
    one_way = got["One-way traffic fits SSE best"]
    assert one_way["verdict"] == "refuted" and "floor against floor:" in one_way["why"]
    protocol = got["The SSE / WebSocket cost difference is the protocol's, not the library's"]
    assert protocol["verdict"] == "confirmed" and "floor (asyncio.Protocol" in protocol["why"]
    assert verdicts.tuned_stack([both]) == "floor"
    assert verdicts.tuned_stack([_with_lean(stock, lean_tie)]) == "lean"
    assert verdicts.tuned_stack([stock]) == "lean"  # none: named, and "not measured"


def test_polling_requests_per_token_is_judged_on_every_stack() -> None:
    def poll_doc(requests_per_s: float, stack: str) -> dict:
        run = _run("poll", 300, 450, 90.0, 50_000, random.Random(1), 0.01)
        for st in run["steps"]:
            for w in [st, *st["windows"]]:
                w["requests_per_s"] = requests_per_s
        return {**run, "stack": stack}

    base = _doc(1)
    stock_only = {**base, "runs": [*base["runs"], poll_doc(300 * 40 * 0.83, "stock")]}
    claim = "Long polling costs a request per token"
    v = {x["claim"]: x for x in verdicts.verdicts([stock_only], [])}[claim]
    assert v["verdict"] == "confirmed" and "0.83 requests per token" in v["why"]
    # a server that batches answers under load (granian: 0.16) makes it the server's count
    both = {**stock_only, "runs": [*stock_only["runs"], poll_doc(300 * 40 * 0.16, "granian")]}
    v = {x["claim"]: x for x in verdicts.verdicts([both], [])}[claim]
    assert v["verdict"] == "nuanced"
    assert "granian: 0.16 requests per token" in v["why"] and "the server's" in v["why"]


def test_normalised_figures_remove_the_machine() -> None:
    slow = _doc(1, unit_us=15.0)  # a machine three times slower...
    for run in slow["runs"]:  # ...holds a third of the users, at three times the CPU per token
        run["knee"]["clients"] = run["knee"]["clients_per_server_core"] = run["knee"][
            "clients"] // 3  # fmt: skip
        run["knee"]["broke_at"] //= 3
        for st in run["steps"]:
            st["clients"] = st["clients"] // 3
            for w in st["windows"]:
                w["cpu_s_per_1k_tokens"] *= 3
    fast, slow_k = figures.knees([_doc(1)]), figures.knees([slow])
    for t in ("sse", "ws"):
        raw = slow_k[t].users_per_core.mean / fast[t].users_per_core.mean
        norm = slow_k[t].normalised_users_per_core().mean / fast[t].normalised_users_per_core().mean
        assert raw == pytest.approx(1 / 3, rel=0.01) and norm == pytest.approx(1, rel=0.01)
        cpu = slow_k[t].normalised_cpu_us().mean / fast[t].normalised_cpu_us().mean
        assert cpu == pytest.approx(1, rel=0.01)
    assert compare.machine_ratio(_doc(1), slow) == pytest.approx(3)
    whole = compare.whole_runs([_doc(1)], [slow])
    assert all(c["same"] for c in whole["claims"])
    assert not any(r["flips"] for r in whole["rankings"])


def test_a_run_whose_machine_drifted_has_its_normalised_figures_flagged() -> None:
    a, b = _doc(1), _doc(1)
    ys = b["machine"]["yardstick"]
    b["machine"]["yardstick"] = machine.combine(ys["before"], _calibration(6.0, 1.5, 9.0))
    assert machine.drifted(b) and not machine.drifted(a)
    whole = compare.whole_runs([a], [b])
    users = next(r for r in whole["rankings"] if r["figure"].startswith("users per core"))
    assert users["unstable"] == {"sse", "ws"}


def test_a_yardstick_that_moved_during_the_run_is_flagged() -> None:
    a = _calibration(4.0, 1.0, 6.0)
    assert not machine.combine(a, _calibration(4.2, 1.0, 6.1))["drifted"]
    moved = machine.combine(a, _calibration(6.0, 1.0, 6.0))
    assert (
        moved["drifted"]
        and moved["unit_us"] == 6.0
        and moved["drift"] == pytest.approx(1 / 3, abs=1e-3)
    )


def test_the_yardstick_measures_something() -> None:
    got = yardstick.measure()
    assert got["syscall_us"]["median"] > 0 and got["python_us"]["median"] > 0
    assert got["unit_us"] == pytest.approx(  # the fastest repeats' (timeit's reasoning)
        got["syscall_us"]["min"] + got["python_us"]["min"], abs=1e-3
    )
    assert got["wall_us"]["min"] <= got["wall_us"]["median"]


def _complete(doc: dict) -> dict:
    """``doc`` (SSE and WebSocket) with gRPC and long polling knees below both: a complete run."""
    rng = random.Random(7)
    return {**doc, "runs": [*doc["runs"], _run("grpc", 300, 450, 50.0, 60_000, rng, 0.01),
                            _run("poll", 200, 300, 120.0, 20_000, rng, 0.01)]}  # fmt: skip


def _hardened(lost: dict[str, int] | None = None) -> list[dict]:
    """A black hole per transport, the hardened client's, losing ``lost[t]`` tokens."""
    return [{"scenario": "blackhole", "transport": t, "mode": "hardened", "clients": 5,
             "lost": (lost or {}).get(t, 0), "unrecovered": 0, "duplicated": 0,
             "user_saw": "a stall", "passed": not (lost or {}).get(t)}
            for t in ("sse", "ws", "grpc", "poll")]  # fmt: skip


def test_what_to_ship_names_the_cheapest_that_kept_every_token() -> None:
    doc = _complete(_doc(1, knees=(600, 675, 914, 1012)))
    faults = [{"scenario": "blackhole", "transport": "ws", "mode": "default", "clients": 5,
               "lost": 40, "unrecovered": 5, "duplicated": 0, "user_saw": "nothing",
               "_run": "faults"}, *_hardened()]  # fmt: skip
    got = ship.recommend([doc], faults)
    assert got["pick"] == "ws" and got["group"] == ["ws"]
    assert "watchdog" in got["text"] and "left 5 of 5 streams unrecovered" in got["text"]
    assert "(run `faults`)" in got["text"]  # the run that showed it
    assert ("Behind it: SSE (users per core), gRPC (users per core), long polling (users per "
            "core)") in got["text"]  # fmt: skip
    assert "fault scenarios not run: close, reset" in got["text"]
    faults = [faults[0], *_hardened({"ws": 3})]  # hardened WebSocket lost tokens: out
    got = ship.recommend([doc], faults)
    assert got["pick"] == "sse" and "Out: WebSocket" in got["text"]
    got = ship.recommend([doc], _hardened({"sse": 1, "ws": 1, "grpc": 1, "poll": 1}))
    assert got["pick"] is None and got["text"].startswith("**Ship none of them")


def test_knees_that_overlap_are_ordered_by_cpu_per_token_at_a_load_both_held() -> None:
    # Knees that the evidence allows in either order (826-1012 against 914-1012): a WebSocket
    # that costs 40 µs a token against SSE's 28 at the most users both held (450) is behind; at 27
    # (within the noise of 28) they tie and both are named.
    got = ship.recommend([_complete(_doc(1, ws_cpu=40.0))], _hardened())
    assert got["group"] == ["sse"]
    assert "WebSocket (server CPU per token at 450 users)" in got["text"]  # the fixture's steps
    assert ship.recommend([_complete(_doc(1))], _hardened())["group"] == ["sse", "ws"]


def test_a_search_cut_by_its_budget_is_named_in_the_caveats() -> None:
    doc = _complete(_doc(1, knees=(600, 675, 914, 1012)))
    got = ship.recommend([doc], _hardened())
    assert "time budget" not in got["text"]
    for run in doc["runs"]:
        if run.get("knee") and run["transport"] == got["pick"]:
            run["knee"]["cut"], run["knee"]["settled"] = True, False
    got = ship.recommend([doc], _hardened())
    assert "was stopped by its time budget (--knee-budget) before it ended" in got["text"]


def test_what_to_ship_needs_a_complete_run_and_names_what_is_missing() -> None:
    got = ship.recommend([_doc(1)], _hardened())  # SSE and WebSocket only
    assert got["pick"] is None and got["text"].startswith("**Not enough measured")
    assert "a knee for gRPC, long polling" in got["text"]
    assert "memory per connection for gRPC, long polling" in got["text"]
    got = ship.recommend([_complete(_doc(1))], [])
    assert got["pick"] is None
    assert "hardened fault runs for SSE, WebSocket, gRPC, long polling" in got["text"]


def test_the_50k_rate_follows_the_knee() -> None:
    doc = {"runs": [{"transport": "sse", "steps": [{"clients": 200, "tokens_per_s": 8000.0}],
                     "knee": {"tokens_per_s": 32_000.0}},
                    {"transport": "poll", "steps": [{"clients": 200, "tokens_per_s": 6000.0}],
                     "knee": None}]}  # fmt: skip
    assert rates_from(doc, 50_000, 0.25) == {"sse": 0.16, "poll": 0.03}


def test_a_tie_is_named_in_one_order_whichever_is_cheaper() -> None:
    for knees in ((747, 880, 800, 880), (800, 880, 747, 880)):  # either one a hair ahead
        got = ship.recommend([_complete(_doc(1, knees=knees))], _hardened())
        assert got["group"] == ["sse", "ws"] and got["text"].startswith("**Ship SSE or WebSocket.")
        assert "They tie on cost" in got["text"]


def test_a_capacity_never_reached_stays_in_the_running_as_at_least() -> None:
    doc = _complete(_doc(1, knees=(600, 675, 914, 1012)))
    doc["runs"][2]["knee"]["broke_at"] = None  # gRPC: every step held, capacity >= 300
    got = ship.recommend([doc], _hardened())
    assert got["group"] == ["ws", "grpc"]  # gRPC might be above WebSocket's [914, 1012)
    assert "gRPC needs at most" in got["text"] and "(its capacity: at least)" in got["text"]


def test_a_circle_of_cpu_orders_falls_back_to_users_per_core(monkeypatch) -> None:
    # CPU per token is compared at a different load for each pair, so three transports can beat
    # each other in a circle; the group is then the users-per-core rule's, never empty.
    from types import SimpleNamespace

    knee = lambda held, broke: SimpleNamespace(users_per_core=stats.bracket(held, broke))  # noqa: E731
    k = {"sse": knee(800, 1000), "ws": knee(700, 900), "grpc": knee(400, 500)}
    circle = {("sse", "ws"), ("ws", "grpc"), ("grpc", "sse")}  # (a, b): b beats a
    monkeypatch.setattr(ship, "beats", lambda k, a, b: "cpu" if (a, b) in circle else None)
    assert ship.cheapest(k, ["sse", "ws", "grpc"]) == ["sse", "ws"]  # gRPC is below both
