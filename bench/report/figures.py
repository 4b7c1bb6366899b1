"""The headline figures of a set of runs, each with its interval and the machine's speed.

Read from results.json only. Per transport: the knee (a bracket: held by most of its runs, and
the first count broken), CPU per token and p99 at the knee (from the step's windows, every run
of it), memory per connection at the largest scale measured, and the fleet those imply for
50,000 users at 40 tok/s. ``speed`` is the run's yardstick against the reference machine
(bench.load.yardstick): normalised figures are what that reference machine would show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import transports
from bench.load.yardstick import pace as machine_pace
from bench.load.yardstick import speed as machine_speed
from bench.report import stats
from bench.report.stats import Interval

USERS = 50_000
RATE = 40.0
NAMES = {t.name: t.label for t in transports.all_transports()}


@dataclass
class Knee:
    transport: str
    clients: int
    broke_at: int | None
    held_runs: tuple[int, int]
    users_per_core: Interval  # a bracket
    cpu_us_per_token: Interval | None  # server CPU per token at the knee, over its windows
    p99_ms: Interval | None
    harness_bound: bool  # the load generator saturated at or above the knee
    speed: float | None  # CPU per unit of work against the reference (above 1: costlier)
    pace: float | None  # wall time per unit of work on the server's cores, against the reference
    steps: list[dict[str, Any]]
    step: dict[str, Any]  # the knee's (last) step

    def normalised_users_per_core(self) -> Interval | None:
        return None if self.pace is None else _scale(self.users_per_core, self.pace)

    def normalised_cpu_us(self) -> Interval | None:
        if self.speed is None or self.cpu_us_per_token is None:
            return None
        return _scale(self.cpu_us_per_token, 1 / self.speed)


def _scale(i: Interval, k: float) -> Interval:
    return Interval(i.mean * k, i.lo * k, i.hi * k, i.n, i.sd * k)


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


def knees(docs: list[dict[str, Any]]) -> dict[str, Knee]:
    """Per transport, the knee of the --find-knee run at the highest token rate."""
    out: dict[str, Knee] = {}
    rates: dict[str, float] = {}
    for doc in docs:
        rate = doc["config"].get("rate") or 0
        for run in doc.get("runs", []):
            steps, kd = run["steps"], run.get("knee")
            t = run["transport"]
            if not kd or len(steps) < 2 or (t in rates and rate <= rates[t]):
                continue
            at = [s for s in steps if s["clients"] == kd["clients"]]
            cores = kd.get("server_cores") or round(kd["clients"] / kd["clients_per_server_core"])
            per_core = stats.bracket(kd["clients"], kd["broke_at"])
            held = tuple(kd.get("held_runs") or (1, 1))
            out[t] = Knee(
                t, kd["clients"], kd["broke_at"], held,  # type: ignore[arg-type]
                _scale(per_core, 1 / cores),
                stats.of(windows(at, "cpu_s_per_1k_tokens", 1000.0)),  # s per 1k = ms/tok
                stats.of(windows(at, "p99_ms")),
                kd["limited_by"] == "loadgen" or any(
                    s["limited_by"] == "loadgen" for s in steps if s["clients"] >= kd["clients"]),
                machine_speed(doc), machine_pace(doc), steps, at[-1],
            )  # fmt: skip
            rates[t] = rate
    return out


def scale_of(step: dict[str, Any]) -> int:
    """A step's scale: the connections the server held in the window, or else its users (a
    transport that could not connect everyone is measured at what it held, not what was asked)."""
    return step["server"].get("connections") or step["clients"]


def memory(docs: list[dict[str, Any]]) -> dict[str, tuple[int, Interval]]:
    """Per transport, server memory per connection (bytes) at the most connections measured."""
    best: dict[str, tuple[int, dict[str, Any]]] = {}
    for doc in docs:
        for run in doc.get("runs", []):
            for st in run["steps"]:
                if st["server"].get("mem_per_conn_bytes") is None:
                    continue
                if scale_of(st) >= best.get(run["transport"], (0, {}))[0]:
                    best[run["transport"]] = (scale_of(st), st)
    out = {}
    for t, (n, st) in best.items():
        interval = stats.of(windows([st], "mem_per_conn_bytes"))
        if interval is not None:
            out[t] = (n, interval)
    return out


def fleet(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Server cores and memory for 50,000 users at 40 tok/s, with the points they rest on."""
    k, mem = knees(docs), memory(docs)
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
            "harness_bound": knee.harness_bound,
            "cores": {"mean": round(USERS / per_core.mean, 1), "lo": round(USERS / per_core.hi, 1),
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
