"""The knee search settles its bracket (issue 23), the knee document, and the logistic fit.

Every search here runs against an oracle, never a server: no timing, no I/O."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import results
from bench.load import knee
from bench.load.run import _knee_doc
from bench.report import figures

LADDER = knee.ladder(200, 3000, 1.5)  # 200 300 450 675 1012 1518 2277 3000: make bench's
TARGET = knee.target_ratio(1.5, 2)  # --knee-refine 2: about 1.107
BASELINE = Path(__file__).resolve().parent.parent / "results" / "20261201-222029"

Oracle = Callable[[int, int], bool]  # (clients, how often that count ran before) -> held


def capacity(n: int, flips: dict[int, list[bool]] | None = None) -> Oracle:
    """Held iff clients < ``n``; ``flips`` maps a count to the outcomes of its first runs."""
    flips = flips or {}
    return lambda c, k: flips[c][k] if k < len(flips.get(c, [])) else c < n


def search(
    oracle: Oracle, ladder: list[int] = LADDER, refine: int = 2, repeats: int = 3,
    old: bool = False,
) -> tuple[list[knee.Outcome], list[str], int]:  # fmt: skip
    """The search as bench.load.run drives it: (outcomes in order, why of each, steps the
    search asked for before it said it was over). ``old``: the search before issue 23 (refine
    bisections, whatever the bracket's width)."""
    target = 1.0 if old else knee.target_ratio(knee.factor_of(ladder), refine)
    left = refine if old else knee.max_bisects(refine)
    cap = knee.step_cap(len(ladder), refine, repeats)
    done: list[knee.Outcome] = []
    whys: list[str] = []
    for _ in range(cap + 1):  # one more: the search must end by itself within its cap
        top = max([o.clients for o in done] or [0])
        down = 0.0 if old else knee.factor_of(ladder)
        nxt = knee.next_step(done, [c for c in ladder if c > top], left, repeats, target, down)
        if nxt is None:
            return done, whys, len(done)
        n, why = nxt
        left -= why == "bisect"
        done.append(knee.Outcome(n, oracle(n, knee.runs_of(done, n)[1])))
        whys.append(why)
    raise AssertionError(f"the search ran past its cap of {cap} steps")


def test_the_target_is_refine_halvings_of_the_ladders_factor() -> None:
    target = knee.target_ratio(1.5, 2)
    assert target == TARGET == pytest.approx(1.5**0.25)
    assert target == pytest.approx(1.1067, abs=1e-4)
    assert knee.target_ratio(1.5, 0) == 1.5
    assert knee.factor_of(LADDER) == 1.5
    assert knee.factor_of(knee.ladder(250, 2000, 1.5)) == 1.5  # 250 375 562 843 ... 2000
    assert knee.factor_of(knee.ladder(7, 100, 2.0)) == 2.0  # 7 14 28 56 100
    assert knee.factor_of([300]) == 2.0 and knee.factor_of([300, 400]) == pytest.approx(4 / 3)
    assert knee.within(747, 826, TARGET) and knee.within(675, 747, TARGET)
    assert not knee.within(450, 551, TARGET) and not knee.within(0, 1, TARGET)
    assert knee.within(2, 3, TARGET)  # nothing lies between: as narrow as it gets
    assert knee.step_cap(8, 2, 3) == (8 + 2 + knee.EXTRA_BISECTS + knee.DOWN_STEPS) * 3


# capacity, the counts in the order they ran, the bracket, settled
CLEAN = [
    (520, [200, 300, 450, 675, 551, 498, 498, 498, 551, 551], (498, 551), True),
    (640, [200, 300, 450, 675, 551, 610, 610, 610, 675, 675], (610, 675), True),
    (700, [200, 300, 450, 675, 1012, 826, 747, 675, 675, 747, 747], (675, 747), True),
    (800, [200, 300, 450, 675, 1012, 826, 747, 747, 747, 826, 826], (747, 826), True),
    # broke at once (a slow day): the ladder goes on downward until a step holds
    (150, [200, 133, 163, 147, 147, 147, 163, 163], (147, 163), True),
    (1, [200, 133, 88, 58, 58, 58], (0, 58), False),  # nothing holds: three steps down at most
    (10_000, LADDER, None, False),  # never broke: the top step is a lower bound
]


@pytest.mark.parametrize(("cap", "order", "edge", "ok"), CLEAN)
def test_a_clean_oracle_settles_in_refine_bisections_as_before(
    cap: int, order: list[int], edge: tuple[int, int] | None, ok: bool
) -> None:
    done, whys, _ = search(capacity(cap))
    assert [o.clients for o in done] == order
    assert knee.bracket(done) == edge and knee.settled(done, TARGET, 3) is ok
    assert whys.count("bisect") <= 2
    # the same steps as the old search: settling costs nothing when no repeat moves an edge
    # (the old search ended with no knee when the first step broke: [200, 200, 200])
    old = [o.clients for o in search(capacity(cap), old=True)[0]]
    assert old == (order if cap >= LADDER[0] else [200, 200, 200])


def test_the_websocket_sequence_bisects_again_after_the_repeats_moved_the_bracket() -> None:
    # make bench on 2 noisy cores: 675 held once, then broke; the true capacity about 600
    ws = capacity(600, {675: [True]})
    old, _, _ = search(ws, old=True)
    assert [o.clients for o in old] == [200, 300, 450, 675, 1012, 826, 747, 675, 450, 450, 675]
    assert knee.bracket(old) == (450, 675) and not knee.settled(old, TARGET, 3)  # 1.5 wide
    done, whys, _ = search(ws)
    assert [o.clients for o in done] == [
        200, 300, 450, 675, 1012, 826, 747, 675, 551, 610, 551, 551, 610, 610]  # fmt: skip
    assert whys[8:10] == ["bisect", "bisect"]  # 675 broke in 2 of 2: the bracket [450, 675)
    assert knee.bracket(done) == (551, 610) and knee.settled(done, TARGET, 3)
    assert knee.knee_of(done) == (551, 610)
    assert len(done) - len(old) == 3


# capacity, counts whose first runs flip, the bracket it ends with
NOISY = [
    (600, {675: [True]}, (551, 610)),  # the WebSocket run
    (540, {675: [True], 551: [True]}, (498, 551)),  # the same, and again one bisection lower
    (600, {675: [True, True]}, (675, 747)),  # held 2 of 3: the majority wins, noise or not
    (800, {747: [False]}, (747, 826)),  # the knee broke once, held the repeats: it moves up
    (800, {747: [False, False]}, (675, 747)),  # the knee broke in 2 of 3: it is the break
    (520, {551: [True]}, (498, 551)),  # the break held once, broke the repeats
    (640, {610: [False, False], 551: [False, False], 498: [False, False]}, (450, 498)),
]


@pytest.mark.parametrize(("cap", "flips", "edge"), NOISY)
def test_noise_at_an_edge_ends_within_the_target_or_at_the_cap(
    cap: int, flips: dict[int, list[bool]], edge: tuple[int, int]
) -> None:
    done, whys, steps = search(capacity(cap, flips))
    assert knee.bracket(done) == edge
    lo, hi = edge
    settled = knee.settled(done, TARGET, 3)
    assert settled or whys.count("bisect") == knee.max_bisects(2)
    assert settled == knee.within(lo, hi, TARGET)
    assert steps <= knee.step_cap(len(LADDER), 2, 3)
    assert knee.runs_of(done, lo)[1] >= 3 and knee.runs_of(done, hi)[1] >= 3


def test_a_search_whose_repeats_always_break_stops_at_the_cap_unsettled() -> None:
    done, whys, steps = search(lambda c, k: k == 0 and c < 600)  # every repeat breaks
    assert whys.count("bisect") == knee.max_bisects(2)
    assert not knee.settled(done, TARGET, 3)
    assert knee.knee_of(done)[0] is None  # nothing held in most of its runs
    assert steps <= knee.step_cap(len(LADDER), 2, 3)


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(1, 500),
    factor=st.floats(1.05, 3.0),
    span=st.floats(1.0, 40.0),
    refine=st.integers(0, 4),
    repeats=st.integers(1, 5),
    coins=st.lists(st.booleans(), min_size=0, max_size=400),
)
def test_the_search_always_ends_within_its_cap(
    start: int, factor: float, span: float, refine: int, repeats: int, coins: list[bool]
) -> None:
    lad = knee.ladder(start, max(start, int(start * span)), factor)
    flips = iter(coins)
    done, whys, steps = search(lambda c, k: next(flips, True), lad, refine, repeats)
    assert steps <= knee.step_cap(len(lad), refine, repeats)
    assert whys.count("bisect") <= knee.max_bisects(refine)
    assert all(knee.runs_of(done, c)[1] <= repeats for c in {o.clients for o in done})
    edge, target = knee.bracket(done), knee.target_ratio(knee.factor_of(lad), refine)
    if edge is not None and edge[0] > 0:  # held and broke: settled, or out of bisections
        assert knee.settled(done, target, repeats) or whys.count("bisect") == knee.max_bisects(
            refine
        )
        assert min(knee.runs_of(done, e)[1] for e in edge) >= repeats


def _runs(m: float, slope: float, counts: list[int], n: int) -> list[tuple[int, int, int]]:
    """(clients, held, runs) with the expected share held of P = 1 / (1 + (c / m) ** slope)."""
    return [(c, round(n / (1 + (c / m) ** slope)), n) for c in counts]


def test_the_fit_recovers_a_known_50_percent_point() -> None:
    counts = [300, 400, 450, 500, 550, 600, 650, 700, 800, 900]
    for m in (520.0, 640.0):
        users, lo, hi = knee.fit(_runs(m, 8.0, counts, 20)) or (0.0, 0.0, 0.0)
        assert users == pytest.approx(m, rel=0.02) and lo < m < hi
        assert hi / lo < 1.25
        wide = knee.fit(_runs(m, 8.0, counts, 4))
        assert wide is not None and wide[2] / wide[1] > hi / lo  # fewer runs: a wider interval


def test_the_fits_interval_is_the_profile_likelihoods() -> None:
    # the WebSocket run above; reference by brute force over a grid of (50 % point, slope):
    # 600.5 [500.0, 695.0]
    runs = [(200, 1, 1), (300, 1, 1), (450, 1, 1), (551, 3, 3), (610, 0, 3), (675, 1, 2),
            (747, 0, 1), (826, 0, 1), (1012, 0, 1)]  # fmt: skip
    users, lo, hi = knee.fit(runs) or (0.0, 0.0, 0.0)
    assert (users, lo, hi) == pytest.approx((600.5, 500.0, 695.0), rel=2e-3)


@pytest.mark.parametrize(
    "runs",
    [
        [(450, 3, 3), (675, 0, 3)],  # complete separation: the usual case
        [(200, 1, 1), (450, 3, 3), (675, 1, 3), (1012, 0, 1)],  # quasi-complete: one mixed count
        [(450, 3, 3), (675, 3, 3)],  # all held
        [(450, 0, 3), (675, 0, 3)],  # all broke
        [(450, 0, 3), (675, 3, 3)],  # more users held better
        [(450, 1, 3), (500, 2, 3), (675, 2, 3)],  # rising P(held): no capacity in it
        [],
    ],
)
def test_the_fit_refuses_runs_that_cannot_support_it(runs: list[tuple[int, int, int]]) -> None:
    assert knee.fit(runs) is None


def _steps(done: list[knee.Outcome]) -> list[dict]:
    return [{"clients": o.clients, "slo": {"held": o.held}, "tokens_per_s": o.clients * 40.0,
             "latency_ms": {"p99": 20.0}, "limited_by": "server"} for o in done]  # fmt: skip


def test_the_knee_doc_keeps_its_fields_and_adds_the_bracket_and_the_runs() -> None:
    done, _, _ = search(capacity(600, {675: [True]}))
    doc = _knee_doc(_steps(done), 1, TARGET, 3)
    assert doc is not None
    assert (doc["clients"], doc["broke_at"], doc["held_runs"], doc["broke_runs"]) == (
        551, 610, [3, 3], [0, 3])  # fmt: skip
    assert doc["clients_per_server_core"] == 551 and doc["tokens_per_s"] == 551 * 40.0
    assert doc["settled"] is True and doc["target_ratio"] == round(TARGET, 4)
    assert doc["runs"] == [[200, 1, 1], [300, 1, 1], [450, 1, 1], [551, 3, 3], [610, 0, 3],
                           [675, 1, 2], [747, 0, 1], [826, 0, 1], [1012, 0, 1]]  # fmt: skip
    assert doc["fit"] == pytest.approx({"users": 600.5, "lo": 500.0, "hi": 695.0}, rel=2e-3)
    clean = _knee_doc(_steps(search(capacity(640))[0]), 1, TARGET, 3)
    assert clean is not None and clean["settled"] and clean["fit"] is None  # separated
    old, _, _ = search(capacity(600, {675: [True]}), old=True)
    wide = _knee_doc(_steps(old), 1, TARGET, 3)
    assert wide is not None and (wide["clients"], wide["broke_at"]) == (450, 675)
    assert wide["settled"] is False
    given_steps = _knee_doc(_steps(old), 1)  # plain steps, no search: nothing aimed at
    assert given_steps is not None
    assert given_steps["settled"] is False and given_steps["target_ratio"] is None


def test_the_report_reads_knee_docs_with_and_without_the_new_fields() -> None:
    docs = results.load_all(BASELINE)  # written before issue 23: no settled, runs or fit
    assert all("settled" not in (r.get("knee") or {}) for d in docs for r in d["runs"])
    before = figures.knees(docs)
    assert before
    newer = copy.deepcopy(docs)
    for d in newer:
        for r in d["runs"]:
            if r.get("knee"):
                steps = [knee.Outcome(s["clients"], s["slo"]["held"]) for s in r["steps"]]
                r["knee"].update(settled=True, target_ratio=round(TARGET, 4),
                                 runs=[list(t) for t in knee.table(steps)], fit=None)  # fmt: skip
        results.validate(d)
    after = figures.knees(newer)
    assert {t: (k.clients, k.broke_at) for t, k in after.items()} == {
        t: (k.clients, k.broke_at) for t, k in before.items()
    }


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 5000), st.integers(0, 5), st.integers(1, 5)).map(
            lambda t: (t[0], min(t[1], t[2]), t[2])
        ),
        max_size=12,
        unique_by=lambda t: t[0],
    )
)
def test_the_fit_either_refuses_or_brackets_its_point(runs: list[tuple[int, int, int]]) -> None:
    got = knee.fit(runs)
    if got is not None:
        users, lo, hi = got
        assert lo < users < hi
        # an edge that does not close is as far as the runs reach: half the fewest, or inf
        assert min(c for c, *_ in runs) / 2 * (1 - 1e-9) <= lo
        assert hi <= max(c for c, *_ in runs) * 2 or hi == float("inf")
