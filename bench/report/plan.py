"""``tokenbench plan``: the fleet for U users at R tok/s, sized from a run's measured costs.

Rules of this module:
- It reads results.json only (bench.report.figures) and never runs anything.
- Every figure is either measured (a run's step, with the users it was measured at) or
  projected from measured ones by a stated rule; each row says which, and ``ASSUMPTIONS`` lists
  the rules. A cost no run measured (a load balancer, Redis) is printed as not measured, with
  only the limits known without measuring (descriptors, one core per Redis shard).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.report import figures, stats
from bench.report.stats import Interval

PER_PROCESS_CONNECTIONS = 12_000  # a server or load process under the 20,000 open-file limit
PORTS_PER_SOURCE = 60999 - 32768 + 1  # ephemeral ports per source address and destination
LOAD_UTILISATION = 0.7  # a load core busier than this delays its reads: latency reads high
LB_DESCRIPTORS_PER_CONNECTION = 2  # a proxied connection: the client's side and the backend's
OPEN_FILES = 20_000

ASSUMPTIONS = (
    "server CPU per token is the knee's (tokens/s per core at the knee, at the run's rate); "
    "at another --rate, users per core scale as tokens/s per core / rate",
    "server memory is users x memory per connection, measured at the most connections held",
    f"one server process per {PER_PROCESS_CONNECTIONS:,} connections at least "
    f"(the {OPEN_FILES:,} open-file limit)",
    f"load cores run at most {LOAD_UTILISATION:.0%} busy, at the load generator's measured CPU "
    "per token at the knee",
    f"a load node needs one source address per {PORTS_PER_SOURCE:,} connections to one "
    "destination (ephemeral ports 32768-60999)",
)


@dataclass
class Figure:
    value: Any
    kind: str  # "measured", "projected" or "not measured"
    how: str  # where it comes from


def _cores(users: int, rate: float, tok_per_core: Interval) -> dict[str, float]:
    need = users * rate
    return {"mean": need / tok_per_core.mean, "lo": need / tok_per_core.hi,
            "hi": need / tok_per_core.lo}  # fmt: skip


def _loadgen_us(knee: figures.Knee) -> Interval | None:
    at = [s for s in knee.steps if s["clients"] == knee.clients]
    return stats.of(figures.windows(at, "loadgen_cpu_us_per_token"))


def plan(docs: list[dict[str, Any]], users: int, rate: float, node_cpus: int,
         pod_cores: float) -> dict[str, Any]:  # fmt: skip
    """Per transport with a knee in ``docs``: server, load and memory rows, each measured or
    projected; plus the rows no run here measured."""
    knees, mem = figures.knees(docs), figures.memory(docs)
    out: dict[str, Any] = {"users": users, "rate": rate, "tokens_per_s": users * rate,
                           "transports": [], "assumptions": list(ASSUMPTIONS)}  # fmt: skip
    for t, knee in knees.items():
        knee_rate = _rate_of(docs, t)
        tok_per_core = stats.Interval(*(v * knee_rate for v in (
            knee.users_per_core.mean, knee.users_per_core.lo, knee.users_per_core.hi)),
            knee.users_per_core.n, knee.users_per_core.sd * knee_rate)  # fmt: skip
        cores = _cores(users, rate, tok_per_core)
        norm = knee.normalised_users_per_core()
        row: dict[str, Any] = {
            "transport": t,
            "knee": Figure(
                {
                    "users": knee.clients,
                    "broke_at": knee.broke_at,
                    "tokens_per_s_per_core": tok_per_core.doc(0),
                },
                "measured",
                f"at {knee_rate:g} tok/s per user"
                + ("; a lower bound: the load generator saturated" if knee.harness_bound else ""),
            ),
            "server_cores": Figure(
                {k: round(v, 1) for k, v in cores.items()},
                "projected",
                "tokens/s over the knee's tokens/s per core"
                + ("; an upper bound, as the knee is a lower one" if knee.harness_bound else ""),
            ),
            "cores on ref.": Figure(
                round(users * rate / (norm.mean * knee_rate), 1) if norm else None,
                "projected",
                "the same, on the yardstick's reference machine",
            ),
            "pods": Figure(
                math.ceil(cores["hi"] / pod_cores),
                "projected",
                f"the high end of the cores over {pod_cores:g} cores per pod",
            ),
            "processes": Figure(
                max(math.ceil(cores["hi"]), math.ceil(users / PER_PROCESS_CONNECTIONS)),
                "projected",
                "one per core, and enough for the open-file limit",
            ),
        }
        if t in mem:
            n, per_conn = mem[t]
            row["memory_gib"] = Figure(
                round(users * per_conn.mean / 2**30, 1),
                "projected",
                f"{per_conn.mean / 1024:.1f} KiB per connection, measured at {n:,} connections",
            )
        gen = _loadgen_us(knee)
        if gen is not None:
            load_cores = users * rate * gen.hi / 1e6 / LOAD_UTILISATION
            processes = max(math.ceil(load_cores), math.ceil(users / PER_PROCESS_CONNECTIONS))
            nodes = math.ceil(processes / node_cpus)
            row["load"] = Figure(
                {"cpu_us_per_token": gen.doc(1), "cores": round(load_cores, 1),
                 "processes": processes, "nodes": nodes,
                 "source_addresses_per_node": math.ceil(users / nodes / PORTS_PER_SOURCE)},
                "projected", "the load generator's CPU per token at the knee (its upper end), "
                f"{node_cpus} CPUs per node",
            )  # fmt: skip
        out["transports"].append(row)
    out["load_balancer"] = measured(docs, "lb", users, rate) or _unmeasured(docs, "lb", users)
    out["redis"] = measured(docs, "redis", users, rate) or _unmeasured(docs, "redis", users)
    return out


REDIS_SHARD_LOAD = 0.8  # keep each Redis shard's one core below this share


def measured(docs: list[dict[str, Any]], part: str, users: int, rate: float,
             transport: str | None = None) -> Figure | None:  # fmt: skip
    """A part's row from ``bench --lb`` steps (``hops``): the costliest transport's (or
    ``transport``'s) CPU per token and memory per stream, at its largest step; None if no step
    measured it."""
    seen = [(st["hops"][part], r["transport"], st["clients"]) for d in docs
            for r in d.get("runs", []) for st in r["steps"]
            if (st.get("hops") or {}).get(part, {}).get("cpu_us_per_token")
            and transport in (None, r["transport"])]  # fmt: skip
    if not seen:
        return None
    top: dict[str, tuple[dict[str, Any], int]] = {}
    for h, t, n in seen:  # each transport's largest step, its costliest run there
        old = top.get(t)
        if (
            old is None
            or n > old[1]
            or (n == old[1] and h["cpu_us_per_token"] > old[0]["cpu_us_per_token"])
        ):
            top[t] = (h, n)
    t, (h, n) = max(top.items(), key=lambda kv: kv[1][0]["cpu_us_per_token"])
    cores = users * rate * h["cpu_us_per_token"] / 1e6
    per = h.get("mem_per_stream_bytes")
    gib = None if per is None else round(users * per / 2**30, 2)
    value: dict[str, Any] = {"cpu_us_per_token": h["cpu_us_per_token"], "cores": round(cores, 1),
                             "memory_gib": gib}  # fmt: skip
    if part == "lb":
        from servers.topology.haproxy import MAXCONN

        value["processes"] = max(math.ceil(cores), math.ceil(users / MAXCONN))
        how = (f"HAProxy measured with {t} at {n:,} users (bench --lb); at most {MAXCONN:,} "
               f"connections a process (maxconn: {LB_DESCRIPTORS_PER_CONNECTION} descriptors "
               f"each under the {OPEN_FILES:,} open-file limit)")  # fmt: skip
    else:
        value["shards"] = max(1, math.ceil(cores / REDIS_SHARD_LOAD))
        how = (f"Redis measured with {t} at {n:,} users (bench --lb --replay redis): it runs "
               f"commands on one core per shard, so one shard per {REDIS_SHARD_LOAD:.0%} of a "
               "core; memory is per live answer")  # fmt: skip
    return Figure(value, "projected", how)


def _rate_of(docs: list[dict[str, Any]], transport: str) -> float:
    """The per-user rate of the knee run figures.knees took for ``transport``."""
    rates = [
        d["config"].get("rate") or figures.RATE
        for d in docs
        if any(r["transport"] == transport and r.get("knee") for r in d.get("runs", []))
    ]
    return max(rates) if rates else figures.RATE  # fmt: skip


def _unmeasured(docs: list[dict[str, Any]], part: str, users: int) -> Figure:
    """A part of the production path no run in ``docs`` put under load."""
    if part == "lb":
        per_process = OPEN_FILES // LB_DESCRIPTORS_PER_CONNECTION
        return Figure(
            {"min_processes": math.ceil(users / (per_process * 0.99))},
            "not measured",
            "no run here had a load balancer in the path; only the descriptor "
            f"bound is known: {LB_DESCRIPTORS_PER_CONNECTION} per proxied connection under a "
            f"{OPEN_FILES:,} open-file limit. Its CPU per token is unknown",
        )
    return Figure(
        None,
        "not measured",
        "no run here had a shared replay log. Redis runs commands on one core "
        "per shard, so shards >= the log's commands per second over one core's, a rate no run "
        "here measured",
    )


def lines(p: dict[str, Any]) -> list[str]:
    """The plan as text."""
    out = [f"fleet for {p['users']:,} users at {p['rate']:g} tok/s = "
           f"{p['tokens_per_s']:,.0f} tokens/s"]  # fmt: skip
    for row in p["transports"]:
        out.append(f"\n{figures.NAMES.get(row['transport'], row['transport'])}:")
        for key, fig in row.items():
            if key == "transport":
                continue
            out.append(f"  {key.replace('_', ' '):<14} {fig.kind:<10} {_show(fig.value)}")
            out.append(f"  {'':<14} {'':<10} ({fig.how})")
        if "load" in row:
            n = row["load"].value["processes"]
            cmd = (f"tokenbench bench --cluster ray://HEAD:10001 --target URL --transport "
                   f"{row['transport']} --clients {p['users']} --rate {p['rate']:g} "
                   f"--loaders {n} --adaptive-ramp --ramp 10m")  # fmt: skip
            out.append(f"  {'run it with':<25} {cmd}")
    for key in ("load_balancer", "redis"):
        fig = p[key]
        out.append(f"\n{key.replace('_', ' ')}: {fig.kind}: {_show(fig.value)}\n  ({fig.how})")
    out.append("\nassumptions:")
    out += [f"  - {a}" for a in p["assumptions"]]
    return out


def _show(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict):
        if set(v) >= {"mean", "lo", "hi"}:
            return f"{_show(v['mean'])} [{_show(v['lo'])}, {_show(v['hi'])}]"
        return ", ".join(f"{k.replace('_', ' ')} {_show(x)}" for k, x in v.items())
    if isinstance(v, float) and v >= 1000:
        return f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int | float) else str(v)
