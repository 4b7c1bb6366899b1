"""The headline figures of a set of runs, each with its interval and the machine's speed.

Read from results.json only. Per transport: the knee (a bracket: held by most of its runs, and
the first count broken), CPU per token and p99 at the knee (from the step's windows, every run
of it), memory per connection at the largest scale measured, and the fleet those imply for
50,000 users at 40 tok/s. ``speed`` is the run's yardstick against the reference machine
(bench.load.yardstick): normalised figures are what that reference machine would show.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import transports
from bench.report import stats
from bench.report.stats import Interval
from bench.results.machine import drifted as machine_drifted
from bench.results.machine import pace as machine_pace
from bench.results.machine import pace_range as machine_pace_range
from bench.results.machine import speed as machine_speed
from bench.results.queries import Variant, runs_of

USERS = 50_000
RATE = 40.0
NAMES = {t.name: t.label for t in transports.all_transports()}
HEADLINE = Variant()  # the stock servers as they come


@dataclass
class Knee:
    transport: str
    clients: int
    broke_at: int | None
    held_runs: tuple[int, int]  # (runs held, runs) of the knee, from its steps
    broke_runs: tuple[int, int] | None  # the same of the first broken count; None: none broke
    users_per_core: Interval  # the bracket [held, broke) per core, widened to the fit's 95 %
    # interval (``widened``); unbounded above when nothing broke, or the load generator did
    cpu_us_per_token: Interval | None  # server CPU per token at the knee, over its windows
    p99_ms: Interval | None
    harness_bound: bool  # the load generator saturated at or above the knee
    speed: float | None  # CPU per unit of work against the reference (above 1: costlier)
    pace: float | None  # wall time per unit of work on the server's cores, against the reference
    steps: list[dict[str, Any]]
    step: dict[str, Any]  # the knee's (last) step
    drifted: bool = False  # the machine changed speed during the run: normalising is unsure
    settled: bool | None = None  # the search narrowed the bracket to its target; None: unknown
    escaped_threads: int | None = None  # server threads found off its cores; None: not checked
    passes: int = 1  # knee searches pooled into this knee (``knees``)
    fit: tuple[float, float, float] | None = None  # users at 50 % held, and its 95 % interval
    server_cores: int = 1  # the knee's users ran on this many server cores
    pace_range: tuple[float, float] | None = None  # the least and most pace of its runs
    cut: bool = False  # --knee-budget stopped a pass's search before it ended

    @property
    def over_cores(self) -> bool | None:
        """A step at the knee whose server used more CPU than its cores (pinning leaked: the
        capacity per core is inflated); None when no step checked."""
        seen = [s["server"].get("cpu_over_cores") for s in self.steps
                if s["clients"] == self.clients]  # fmt: skip
        known = [v for v in seen if v is not None]
        return any(known) if known else None

    @property
    def threads(self) -> str:
        """Whether every server thread stayed on the server's cores, in words."""
        if self.escaped_threads is None:
            return "not checked"
        return "yes" if not self.escaped_threads else f"**{self.escaped_threads} escaped**"

    @property
    def unstable(self) -> bool:
        """The edges were not unanimous: the knee held in only some of its runs, or the first
        break held in some of its. The capacity is then within a step's noise."""
        return self.held_runs[0] < self.held_runs[1] or (self.broke_runs or (0, 0))[0] > 0

    def runs_at(self, clients: int) -> tuple[int, int]:
        return _runs(self.steps, clients)

    def normalised_users_per_core(self) -> Interval | None:
        """Users per core on the reference machine: at the mean pace, the interval's low edge
        at the least and its high edge at the most pace of the run's calibrations (the steps
        ran somewhere between them)."""
        if self.pace is None:
            return None
        at = self.users_per_core.scaled(self.pace)
        if self.pace_range is None:
            return at
        slow, fast = self.pace_range
        u = self.users_per_core
        return Interval(at.mean, u.lo * slow, u.hi * fast, u.n, at.sd, u.open_hi)

    def normalised_cpu_us(self) -> Interval | None:
        if self.speed is None or self.cpu_us_per_token is None:
            return None
        return self.cpu_us_per_token.scaled(1 / self.speed)


def _runs(steps: list[dict[str, Any]], clients: int) -> tuple[int, int]:
    """(runs held, runs) at ``clients`` users."""
    held = [bool(s["slo"]["held"]) for s in steps if s["clients"] == clients]
    return sum(held), len(held)


def windows(steps: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[float]:
    """A figure over every window of ``steps`` (the step's own value where it has none)."""
    out = []
    for st in steps:
        parts = st.get("windows") or []
        vals = [w.get(key) for w in parts] if parts else [_step_value(st, key)]
        out += [v * scale for v in vals if v is not None]
    return out


def _step_value(st: dict[str, Any], key: str) -> float | None:
    if key in ("cpu_s_per_1k_tokens", "mem_per_conn_bytes"):
        return st["server"].get(key)
    if key == "p99_ms":
        return st["latency_ms"]["p99"]
    return st.get(key)


def knees(docs: list[dict[str, Any]], variant: Variant = HEADLINE) -> dict[str, Knee]:
    """Per transport, the knee of its --find-knee runs at the highest token rate (of the stock
    servers as they come, unless ``variant`` names another). Several passes of the search (more
    knee runs of one transport at that rate, in one document or several) pool into one knee:
    its bracket is the hull of theirs, [least held, most broken), so the spread between passes
    is in the interval; their steps pool for the edges' run counts, CPU and the fit."""
    passes: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    rates: dict[str, float] = {}
    for doc in docs:
        rate = doc["config"].get("rate") or 0
        for run in runs_of(doc, variant):
            kd, t = run.get("knee"), run["transport"]
            if not kd or len(run["steps"]) < 2 or rate < rates.get(t, 0):
                continue
            if rate > rates.get(t, 0):
                passes[t], rates[t] = [], rate
            passes.setdefault(t, []).append((doc, run))
            rates.setdefault(t, rate)
    return {t: _pooled(t, ps) for t, ps in passes.items()}


def _pooled(t: str, passes: list[tuple[dict[str, Any], dict[str, Any]]]) -> Knee:
    """One knee from one or more passes of the search (``knees``)."""
    kds = [run["knee"] for _, run in passes]
    steps = [st for _, run in passes for st in run["steps"]]
    cores = [kd.get("server_cores") or round(kd["clients"] / kd["clients_per_server_core"])
             for kd in kds]  # fmt: skip

    def bound(kd: dict[str, Any], run: dict[str, Any]) -> bool:
        """The load generator saturated at or above the knee: its break says nothing."""
        return kd["limited_by"] == "loadgen" or any(
            s["limited_by"] == "loadgen" for s in run["steps"] if s["clients"] >= kd["clients"]
        )

    harness = any(bound(kd, run) for kd, (_, run) in zip(kds, passes, strict=True))
    held = min(kd["clients"] for kd in kds)
    breaks = [kd["broke_at"] for kd in kds]
    broke = None if None in breaks else max(breaks)  # type: ignore[type-var]
    fitted = None if harness else _fit(steps)
    capacity = widened(stats.bracket(held, None if harness else broke), fitted)
    per_core = capacity.scaled(1 / max(cores))
    if len(kds) > 1:  # the passes' knees as the point, not the least of them
        mean = statistics.fmean(kd["clients"] for kd in kds) / max(cores)
        per_core = Interval(mean, per_core.lo, per_core.hi, len(kds), per_core.sd, per_core.open_hi)
    at = [s for s in steps if s["clients"] == held]
    docs = [doc for doc, _ in passes]
    speeds = [v for v in map(machine_speed, docs) if v is not None]
    paces = [v for v in map(machine_pace, docs) if v is not None]
    ranges = [r for r in map(machine_pace_range, docs) if r is not None]
    escaped = [run.get("escaped_threads") for _, run in passes]
    return Knee(
        t, held, broke, _runs(steps, held), _runs(steps, broke) if broke else None, per_core,
        stats.of(windows(at, "cpu_s_per_1k_tokens", 1000.0)),  # s per 1k = ms/tok
        stats.of(windows(at, "p99_ms")), harness,
        statistics.fmean(speeds) if speeds else None, statistics.fmean(paces) if paces else None,
        steps, at[-1], any(map(machine_drifted, docs)),
        _settled(kds, held, broke, capacity, fitted),
        None if None in escaped else sum(escaped),  # type: ignore[arg-type]
        len(kds), fitted, max(cores),
        (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else None,
        any(kd.get("cut") for kd in kds),
    )  # fmt: skip


def widened(bracket: Interval, fitted: tuple[float, float, float] | None) -> Interval:
    """The capacity interval: the bracket [held, broke), widened to the fit's 95 % interval
    where that is wider. Near the knee a step holds or breaks by chance; the bracket's edges
    are single counts, the fit weighs every step, so either alone can claim more than the runs
    allow (a pass of the search moved gRPC's bracket from [498, 551) to [675, 747), and the
    fit of the first spanned both). Unbounded stays unbounded; a closed upper edge is the fit's."""
    if fitted is None:
        return bracket
    _, lo, hi = fitted  # hi inf: the runs do not bound it above, and neither does this
    if hi <= bracket.hi:
        return Interval(bracket.mean, min(lo, bracket.lo), bracket.hi, bracket.n, bracket.sd, True)
    return Interval(bracket.mean, min(lo, bracket.lo), hi, bracket.n, bracket.sd, False)


def _settled(kds: list[dict[str, Any]], held: int, broke: int | None, capacity: Interval,
             fitted: tuple[float, float, float] | None = None) -> bool | None:  # fmt: skip
    """Every pass settled its bracket, their hull [held, broke) is as narrow as the passes aimed
    at, and so is the capacity interval (the hull widened to the fit's): passes that disagree
    by more, or steps that held and broke by chance over a wider range, leave the knee
    unsettled. None: a pass from before the search said."""
    if any(kd.get("settled") is None for kd in kds):
        return None
    targets = [kd.get("target_ratio") for kd in kds]
    if broke is None or None in targets:
        return all(kd["settled"] for kd in kds) and len(kds) == 1
    aim = max(targets)  # type: ignore[type-var]
    if fitted is not None and math.isinf(fitted[2]):
        return False  # the fit reaches past every count tried: the runs do not place it
    narrow = broke <= held * aim + 1 and (
        not capacity.bounded or capacity.hi <= capacity.lo * aim + 1
    )
    return all(kd["settled"] for kd in kds) and narrow


def _fit(steps: list[dict[str, Any]]) -> tuple[float, float, float] | None:
    """The logistic fit of P(SLO held) over every step of every pass (bench.load.knee.fit)."""
    from bench.results.fit import fit

    counts: dict[int, list[int]] = {}
    for st in steps:
        c = counts.setdefault(st["clients"], [0, 0])
        c[0] += bool(st["slo"]["held"])
        c[1] += 1
    return fit([(n, h, r) for n, (h, r) in sorted(counts.items())])


def cpu_at_common_load(a: Knee, b: Knee) -> tuple[int, Interval, Interval] | None:
    """Server CPU per token (µs) of two transports at the same load: the most users both held
    (by most of their runs) at or below both knees, over every window of every run there.
    Two knees sit at different loads, and CPU per token falls with load, so comparing knee
    with knee compares loads as much as transports."""

    common = [c for c in held_counts(a.steps) & held_counts(b.steps)
              if c <= min(a.clients, b.clients)]  # fmt: skip
    if not common:
        return None
    c = max(common)
    ia, ib = cpu_at(a.steps, c), cpu_at(b.steps, c)
    if ia is None or ib is None:
        return None
    return c, ia, ib


def held_counts(steps: list[dict[str, Any]]) -> set[int]:
    """The user counts that held the SLO in most of their runs."""
    runs: dict[int, list[bool]] = {}
    for st in steps:
        runs.setdefault(st["clients"], []).append(st["slo"]["held"])
    return {c for c, h in runs.items() if 2 * sum(h) > len(h)}


def cpu_at(steps: list[dict[str, Any]], clients: int) -> Interval | None:
    """Server CPU per token (µs) over every window of every run at ``clients`` users."""
    at = [s for s in steps if s["clients"] == clients]
    return stats.of(windows(at, "cpu_s_per_1k_tokens", 1e3))


def scale_of(step: dict[str, Any]) -> int:
    """A step's scale: the connections the server held in the window, or else its users (a
    transport that could not connect everyone is measured at what it held, not what was asked)."""
    return step["server"].get("connections") or step["clients"]


def memory_points(
    docs: list[dict[str, Any]], variant: Variant = HEADLINE
) -> dict[str, dict[int, Interval]]:
    """Per transport, server memory per connection (bytes) at each scale measured (the busiest
    step of each scale, over its windows)."""
    best: dict[str, dict[int, dict[str, Any]]] = {}
    for doc in docs:
        for run in runs_of(doc, variant):
            for st in run["steps"]:
                if st["server"].get("mem_per_conn_bytes") is None:
                    continue
                best.setdefault(run["transport"], {})[scale_of(st)] = st
    out: dict[str, dict[int, Interval]] = {}
    for t, by_scale in best.items():
        for n, st in by_scale.items():
            interval = stats.of(windows([st], "mem_per_conn_bytes"))
            if interval is not None:
                out.setdefault(t, {})[n] = interval
    return out


def memory(
    docs: list[dict[str, Any]], variant: Variant = HEADLINE
) -> dict[str, tuple[int, Interval]]:
    """Per transport, server memory per connection (bytes) at the most connections measured."""
    return {t: max(pts.items()) for t, pts in memory_points(docs, variant).items()}


COMMON_SCALE = 1.25  # two scales are "the same" within this factor: fixed costs amortise with it


def memory_at_common_scale(
    a: dict[int, Interval], b: dict[int, Interval]
) -> tuple[int, Interval, int, Interval] | None:
    """Memory per connection of two transports at the largest scale both measured (within
    ``COMMON_SCALE`` of each other), or None: per-connection memory falls with scale as fixed
    costs amortise, so 10,000 connections against 800 compares scales, not transports."""
    pairs = [(min(x, y), x, y) for x in a for y in b if max(x, y) <= COMMON_SCALE * min(x, y)]
    if not pairs:
        return None
    _, x, y = max(pairs)
    return x, a[x], y, b[y]


def fleet(docs: list[dict[str, Any]], variant: Variant = HEADLINE) -> list[dict[str, Any]]:
    """Server cores and memory for 50,000 users at 40 tok/s, with the points they rest on (of
    the stock servers, unless ``variant`` names another)."""
    k, mem = knees(docs, variant), memory(docs, variant)
    rows = []
    for t in NAMES:
        if t not in k:
            continue
        knee = k[t]
        per_core = knee.users_per_core
        half = [s for s in knee.steps if s["slo"]["held"] and s["clients"] <= knee.clients / 2]
        cpu_half = stats.of(windows([max(half, key=lambda s: s["clients"])],
                                    "cpu_s_per_1k_tokens", 1000.0)) if half else None  # fmt: skip
        cpu = knee.cpu_us_per_token
        norm = knee.normalised_users_per_core()
        m = mem.get(t)
        rows.append({
            "transport": t,
            "users_per_core": per_core.doc(1),
            "users_per_core_normalised": norm.doc(1) if norm else None,
            "held_runs": list(knee.held_runs),
            "broke_runs": list(knee.broke_runs) if knee.broke_runs else None,
            "settled": knee.settled,
            "passes": knee.passes,
            "threads_on_cores": knee.threads,
            "cpu_over_cores": knee.over_cores,
            "fit_per_core": None if knee.fit is None else [  # null: unbounded above
                round(v / knee.server_cores, 1) if math.isfinite(v) else None
                for v in knee.fit],
            "knee_unstable": knee.unstable,
            "machine_drifted": knee.drifted,
            "harness_bound": knee.harness_bound,
            # at most USERS / held cores; unbounded capacity leaves no lower bound
            "cores": {"mean": round(USERS / per_core.mean, 1),
                      "lo": round(USERS / per_core.hi, 1) if per_core.bounded else None,
                      "hi": round(USERS / per_core.lo, 1)},
            "cpu_us_per_token": cpu.doc(2) if cpu else None,
            "cpu_ratio_knee_to_half": round(cpu.mean / cpu_half.mean, 2)
            if cpu and cpu_half and cpu_half.mean else None,
            "memory_gib": round(USERS * m[1].mean / 2**30, 2) if m else None,
            "memory_measured_at": m[0] if m else None,
            "mem_per_conn_kib": round(m[1].mean / 1024, 1) if m else None,
            "mem_unstable": m[1].unstable if m else None,
        })  # fmt: skip
    return rows
