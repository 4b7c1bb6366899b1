"""``tokenbench bench``: drive a transport through load steps and measure it.

Per transport: start the server (N workers, pinned to the server's cores) unless ``--target``
names one; start L loader processes (``bench.load.fleet``, pinned to the other cores); for each
step, ramp the users to the step's count, wait for them to connect, then measure over the
step's window: the loaders' reports are merged and the server's processes are sampled every
second from /proc (``bench.load.window``). With ``--find-knee`` the steps follow
``bench.load.knee``. With ``--lb`` or ``--source llm`` the server is a ``servers.topology.topology``
(backends, HAProxy, Redis, the producer), all on the server's cores: the backends are "the
server", and each other part's CPU and memory per step is recorded under ``hops``.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import transports
from bench.load import clock, hops, knee, procstat, ramp
from bench.load.config import BenchConfig, Step
from bench.load.driver import Driver, ProgressFn
from bench.load.fleet import Fleet, LoadFleet, on_cores, pin, tasks_outside
from bench.load.messages import LoaderConfig
from bench.load.window import EmptiedDoc, ServerCost, StepSummary, Window, summarize
from bench.results.queries import Variant
from servers.base import ServerConfig
from servers.process import gcpolicy
from servers.process import metrics as server_metrics
from servers.process.supervisor import Supervisor
from servers.topology.topology import Topology as Deployment

PROBE_TIMEOUT_S = 5.0
EMPTY_MAX_S = 10.0  # _empty: at most this long for the users and connections to go
QUIET_S = 0.1  # _empty: then this long with none, for the server's close work to end
OVER_CORES = 1.02  # server CPU over its cores' time by more than /proc's ticks explain


class TargetError(RuntimeError):
    """The server to measure cannot be reached, or does not speak the transport."""


def probe(transport: str, url: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Create one stream on ``url`` the way the load will, or raise ``TargetError`` at once:
    a refused connection, a host that does not resolve, a server that answers otherwise."""
    create = transports.get(transport).create_fn()

    async def once() -> None:
        await asyncio.wait_for(create(url, tokens=1, rate=1000.0, timeout=timeout), timeout)

    try:
        asyncio.run(once())
    except TimeoutError:
        raise TargetError(f"target {url}: no {transport} answer in {timeout:g} s") from None
    except Exception as exc:  # any failure means the same here: not a target to measure
        why = " ".join(str(exc).split())  # one line, whatever the server sent
        raise TargetError(f"target {url} does not serve {transport}: {why[:300]}") from None


STREAM_CHECK_S = 10.0  # the whole check: a prompt, a stream of three tokens, its end


def stream_check(transport: str, url: str, timeout: float = STREAM_CHECK_S) -> str | None:
    """Read one short stream end to end through what the load will dial: None when every
    token arrived, else what the client saw, in one line (a proxy that drops the WebSocket
    upgrade answers 404; an HTTP/1.1 listener fails gRPC's HTTP/2 preface). The prompt POST
    alone cannot tell: it is plain HTTP through any proxy."""
    from clients import ClientOptions, create_stream, reader_class

    got: list[int] = []

    async def once() -> None:
        doc = await create_stream(transport, url, tokens=3, rate=100.0)
        opts = ClientOptions(give_up_after=timeout / 2, backoff_max=0.2)
        reader = reader_class(transport)(url, doc["id"], lambda s, t, x: got.append(s), None,
                                         opts)  # fmt: skip
        reader.cookie = doc.get("cookie")
        await reader.run()

    try:
        asyncio.run(asyncio.wait_for(once(), timeout))
    except TimeoutError:
        return f"no stream end in {timeout:g} s ({len(got)} of 3 tokens)"
    except Exception as exc:  # what the client saw is the finding, whatever it was
        return " ".join(str(exc).split())[:300] or type(exc).__name__
    return None if got == [0, 1, 2] else f"tokens {got} of [0, 1, 2]"


def server_cores() -> set[int] | None:
    """The cores a pinned server runs on (None on one core)."""
    return _cores()[0]


def _cores() -> tuple[set[int] | None, set[int] | None]:
    """Server on the first half of the cores, load generator on the rest (2 cores: 1 and 1)."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    half = len(available) // 2
    return set(available[:half]), set(available[half:])


@dataclass
class Topology:
    """Where the load goes: the server (if ours) and each load process's URL and source."""

    sup: Supervisor | Deployment | None
    url: str
    urls: list[str]
    sources: list[str | None]
    settings: dict[str, Any] | None


def _topology(
    transport: str, cfg: BenchConfig, n_loaders: int, variant: Variant, cores: set[int] | None
) -> Topology:
    record = transports.get(transport)
    sources = [f"127.0.0.{10 + k}" for k in range(n_loaders)]
    if cfg.target:  # someone else's server, maybe not on loopback: no source addresses
        probe(transport, cfg.target)
        return Topology(None, cfg.target, [cfg.target] * n_loaders, [None] * n_loaders, None)
    # A client that cannot bind a source address spreads over destination addresses instead.
    hosts = "127.0.0.1" if record.binds_source else ",".join(["127.0.0.1", *sources])
    scfg = ServerConfig(
        transport=transport, host=hosts, port=0, workers=cfg.workers_for(), heartbeat=cfg.heartbeat,
        stack=variant.stack, gc=variant.gc, flush_ms=variant.flush_ms,
    )  # fmt: skip
    settings = record.server_module(variant.stack).settings(scfg)
    settings["effective"] = {**settings["effective"], **gcpolicy.settings(variant.gc),
                             "flush_ms": variant.flush_ms}  # fmt: skip
    sup: Supervisor | Deployment
    if cfg.deploy is not None and cfg.deploy.topology is not None:
        sup = Deployment(cfg.deploy.server(scfg), cfg.deploy.topology, cfg.out / f"{transport}-lb")
    else:
        sup = Supervisor(scfg)
    with on_cores(cores):  # every process of the server born on its cores (bench.load.fleet)
        sup.start()
    if isinstance(sup, Deployment):
        scfg.port = int(sup.url.rsplit(":", 1)[1])  # what the clients dial: the LB's port
    if record.binds_source:
        return Topology(sup, sup.url, [sup.url] * n_loaders, list(sources), settings)
    urls = [record.url(s, scfg.port) for s in sources]
    return Topology(sup, sup.url, urls, [None] * n_loaders, settings)


def _fleet(configs: list[LoaderConfig], cores: set[int] | None, cfg: BenchConfig) -> LoadFleet:
    """The load processes: here, or as Ray actors on the cluster's nodes (``--cluster``)."""
    if cfg.cluster is None:
        return Fleet(configs, cores)
    from bench.load.rayfleet import RayFleet

    return RayFleet(configs, cores, local_only=cfg.target is None)


def run_transport(
    transport: str, cfg: BenchConfig, say: ProgressFn, variant: Variant | None = None
) -> dict[str, Any]:
    """One transport's run, start to end."""
    return run_interleaved([(transport, variant or Variant())], cfg, say)[0]


def run_interleaved(
    items: list[tuple[str, Variant]], cfg: BenchConfig, say: ProgressFn
) -> list[dict[str, Any]]:
    """Several runs (the knee searches of ``--transport all``), one step of each in turn: their
    steps then share the same minutes, so a machine whose speed drifts slows them alike and
    their comparison stands (results/20261207-indep/knee-b: the machine slowed 13 % during
    the run, and SSE, searched first, held 36 % more users than the pass before it while long
    polling, searched last, held 18 % fewer). A knee step ends with no users (``_empty``), so a
    run waiting its turn holds none. The runs come back in ``items``' order."""
    budget = cfg.knee_budget_s if cfg.find_knee else 0.0
    deadline = time.monotonic() + budget if budget > 0 else None
    gens = [_steps(t, cfg, say, v, deadline) for t, v in items]
    out: list[dict[str, Any]] = [{} for _ in gens]
    active = list(range(len(gens)))
    try:
        while active:
            for k in list(active):
                try:
                    next(gens[k])
                except StopIteration as done:
                    out[k] = done.value
                    active.remove(k)
    finally:
        for g in gens:  # a run stopped early (an error, ^C) stops its server and load here
            g.close()
    return out


def _steps(
    transport: str,
    cfg: BenchConfig,
    say: ProgressFn,
    variant: Variant,
    deadline: float | None = None,
) -> Generator[None, None, dict[str, Any]]:
    """One run, yielding after each step; its document is the generator's return value. A knee
    search that would start a step (other than its first) after ``deadline``
    (``--knee-budget``) stops there, cut."""
    server_cores, loader_cores = _cores() if cfg.pin else (None, None)
    n_loaders = cfg.loaders_for()
    topo = _topology(transport, cfg, n_loaders, variant, server_cores)
    sup = topo.sup
    if isinstance(sup, Deployment) and (why := stream_check(transport, topo.url)):
        say(f"{transport}: no stream gets through {_front(sup)}: {why}; not measured")
        sup.stop()
        return {"transport": transport, "stack": variant.stack, "gc": variant.gc,
                "flush_ms": variant.flush_ms, "url": topo.url, "topology": sup.describe(),
                "works": False, "why": why, "steps": []}  # fmt: skip
    if sup is not None:  # each thread they started before the mask held, and any child
        pin(_server_pids(sup), server_cores)
    time.sleep(cfg.warmup_s)
    base = Driver.sample_of(sup)
    base_rss = base.rss_bytes if base else None
    parts_base = {n: procstat.sample(p) for n, p in sup.parts().items()} if sup else {}
    loader_cfgs = [
        LoaderConfig(
            transport=transport, url=topo.urls[k], index=k, local_addr=topo.sources[k],
            tokens=cfg.tokens, rate=cfg.rate_for(transport), think=cfg.think,
            heartbeat=cfg.heartbeat, poll_timeout=cfg.poll_timeout, seed=k,
            stationary=cfg.stationary or cfg.find_knee,
            doze_us=cfg.doze_us, fast_path=cfg.fast_path,  # the loader knows if it may doze
            compiled_loop=cfg.compiled_loop,
        )
        for k in range(n_loaders)
    ]  # fmt: skip
    try:
        fleet = _fleet(loader_cfgs, loader_cores, cfg)
    except BaseException:
        if sup is not None:
            sup.stop()
        raise
    drive = Driver(transport, cfg, fleet, sup, say)
    drive.parts_base = parts_base
    n_server_cores = len(server_cores or os.sched_getaffinity(0))
    n_loader_cores = len(loader_cores or os.sched_getaffinity(0))
    steps_out: list[StepSummary] = []
    ladder = [s.clients for s in cfg.steps]
    by_clients = {s.clients: s for s in cfg.steps}
    # The search bisects until its bracket is ``--knee-refine`` halvings of the ladder's factor
    # (read back from the ladder: the config keeps no --knee-factor) wide, at most
    # ``knee.max_bisects`` times, and never runs more than ``knee.step_cap`` steps.
    target = knee.target_ratio(knee.factor_of(ladder), cfg.knee_refine)
    bisects_left = knee.max_bisects(cfg.knee_refine)
    cap = knee.step_cap(len(ladder), cfg.knee_refine, cfg.knee_repeats)
    template = cfg.steps[0]
    escaped: int | None = None
    cut = False  # the budget stopped the search before it ended
    try:
        i = 0
        while True:
            if cfg.find_knee:
                done = [knee.Outcome(d["clients"], d["slo"]["held"]) for d in steps_out]
                planned = [c for c in ladder if c > max((o.clients for o in done), default=0)]
                nxt = knee.next_step(done, planned, bisects_left, cfg.knee_repeats, target,
                                     knee.factor_of(ladder))  # fmt: skip
                if nxt is None or i >= cap:
                    break
                if deadline is not None and i > 0 and time.monotonic() > deadline:
                    cut = True
                    say(f"{transport}: the knee budget ran out; the search stops here, unsettled")
                    break
                n, why = nxt
                bisects_left -= why == "bisect"
                step = by_clients.get(n) or Step(n, template.ramp_s, template.hold_s)
            elif i < len(cfg.steps):
                step = cfg.steps[i]
            else:
                break
            doc = _measure_step(drive, step, i, n_loaders, base_rss, n_server_cores,
                                n_loader_cores, pinned=server_cores is not None)  # fmt: skip
            doc["order"] = i
            if cfg.find_knee:
                doc["emptied"] = _empty(drive, i, n_loaders)
            steps_out.append(doc)
            say(_step_line(transport, i, 0 if cfg.find_knee else len(cfg.steps), doc))
            i += 1
            yield
        if sup is not None and server_cores:  # did any server thread leave its cores?
            escaped = sum(len(tasks_outside(p, server_cores)) for p in _server_pids(sup))
    finally:
        for r in fleet.stop():
            drive.note(r)
        if sup is not None:
            sup.stop()
    steps_out.sort(key=lambda d: d["clients"])  # bisection steps in their place on the axis
    run: dict[str, Any] = {
        "transport": transport,
        "stack": variant.stack,
        "gc": variant.gc,
        "flush_ms": variant.flush_ms,
        "url": topo.url,
        "topology": sup.describe() if isinstance(sup, Deployment) else None,
        "works": True if isinstance(sup, Deployment) else None,
        "why": None,
        "server_workers": None if cfg.target else cfg.workers_for(),
        "loaders": n_loaders,
        "server_cores": sorted(server_cores) if server_cores else None,
        "loader_cores": sorted(loader_cores) if loader_cores else None,
        "escaped_threads": escaped,
        "baseline_rss_bytes": base_rss,
        "server_settings": topo.settings,
        "steps": steps_out,
        "load_nodes": fleet.nodes(),
        "clocks": [drive.clocks[k] for k in sorted(drive.clocks)],
        "clock": clock.summarize(list(drive.clocks.values()), cfg.slo_ms),
    }
    if cfg.find_knee or len(cfg.steps) > 1:
        cores = len(server_cores) if server_cores else os.cpu_count() or 1
        searched = target if cfg.find_knee else None
        run["knee"] = _knee_doc(steps_out, cores, searched, cfg.knee_repeats, cut)
    return run


def _empty(drive: Driver, i: int, n_loaders: int) -> EmptiedDoc:
    """After a knee step: end every user and wait (at most ``EMPTY_MAX_S``) until none is
    connected and the server holds no connection, then ``QUIET_S`` more. Each step is then an
    independent trial from an idle server, as the repeats' majority assumes: an overloaded step
    used to leave its backlog to the next (results/20261207-twice: WebSocket broke at 826, 747
    and 675 right after 1,518 broke, and held 1,012 before it)."""
    t0 = time.monotonic()
    drive.fleet.send([{"target": 0, "ramp_s": 0.0} for _ in range(n_loaders)])
    while time.monotonic() - t0 < EMPTY_MAX_S and not drive.fleet.dead():
        drive.pump(0.1, i)
        counts = drive.server_counts()
        if drive.arrived() == 0 and (counts is None or counts["connections_open"] == 0):
            break
    counts = drive.server_counts()
    empty = drive.arrived() == 0 and (counts is None or counts["connections_open"] == 0)
    drive.pump(QUIET_S, i)
    return {"took_s": round(time.monotonic() - t0, 2), "empty": empty}


def _front(sup: Deployment) -> str:
    """The load balancer in front, in words: "nginx (profile defaults)"."""
    topo = sup.describe()
    profile = f" (profile {topo['profile']})" if topo.get("profile") else ""
    return f"{topo.get('lb') or 'the deployment'}{profile}"


def _knee_doc(
    steps: list[StepSummary],
    cores: int,
    target: float | None = None,
    repeats: int = 1,
    cut: bool = False,
) -> dict[str, Any] | None:
    """The knee (bench.load.knee) with its bracket and every run: ``target`` is the bracket
    width the search aimed at (None: no search, the steps were given). ``settled`` says the
    bracket [clients, broke_at) got that narrow with each edge run ``repeats`` times; an
    unsettled bracket is no capacity estimate and must never be reported as a knee by itself.
    ``runs`` lets a reader refit; ``fit`` is ``knee.fit`` of them (None when they are
    separated: then the bracket alone is the answer)."""
    done = [knee.Outcome(d["clients"], d["slo"]["held"]) for d in steps]
    best, broke_at = knee.knee_of(done)
    if best is None:
        return None
    at = [d for d in steps if d["clients"] == best]
    k = at[-1]
    held, runs = knee.runs_of(done, best)
    out = {
        "clients": best,
        "clients_per_server_core": round(best / cores, 1),
        "tokens_per_s": k["tokens_per_s"],
        "latency_p99_ms": k["latency_ms"]["p99"],
        "limited_by": k["limited_by"],
        "broke_at": broke_at,
        "held_runs": [held, runs],  # the knee held in this many of its runs
        "server_cores": cores,
    }
    if broke_at is not None:
        out["broke_runs"] = list(knee.runs_of(done, broke_at))
    out["settled"] = target is not None and not cut and knee.settled(done, target, repeats)
    if cut:
        out["cut"] = True  # --knee-budget ran out before the search ended
    out["target_ratio"] = None if target is None else round(target, 4)
    runs_table = knee.table(done)
    out["runs"] = [list(r) for r in runs_table]
    got = knee.fit(runs_table)
    if got is None:
        out["fit"] = None
    else:
        hi = None if math.isinf(got[2]) else round(got[2], 1)  # null: unbounded above
        out["fit"] = {"users": round(got[0], 1), "lo": round(got[1], 1), "hi": hi}
    return out


def _measure_step(
    drive: Driver, step: Step, i: int, n_loaders: int, base_rss: int | None, server_cores: int,
    loader_cores: int, pinned: bool = False,
) -> StepSummary:  # fmt: skip
    """Ramp to the step's users, settle, cool down, then measure one window."""
    fleet, cfg = drive.fleet, drive.cfg
    # Ramp: reports are read (progress, CPU baselines) but not measured (bench.load.ramp).
    if step.adaptive:
        ramped = ramp.adaptive(drive, step, i, n_loaders)
    else:
        ramped = ramp.fixed(drive, step, i, n_loaders, cfg.settle_s)
    if cfg.cooldown_s > 0:  # let a backlog built up while connecting drain first
        drive.pump(cfg.cooldown_s, i)
    # The window is measured as ``cfg.windows`` back-to-back sub-windows: the step's figures
    # come from all of it, their spread from the sub-windows (docs/results-schema.md).
    whole = Window()
    start, counts_start = drive.server_sample(), drive.server_counts()
    parts_start = drive.parts_sample()
    t_start = time.monotonic()
    parts: list[dict[str, Any]] = []
    rss_max = files_max = 0
    prev, counts_prev = start, counts_start
    for _ in range(max(1, cfg.windows)):
        part, t0 = Window(), time.monotonic()
        rss, files = drive.pump(step.hold_s / max(1, cfg.windows), i, whole, part)
        rss_max, files_max = max(rss_max, rss), max(files_max, files)
        cur, counts = drive.server_sample(), drive.server_counts()
        cost_k = _cost(prev, cur, counts_prev, counts, rss, files, base_rss, server_cores)
        parts.append(_part(summarize(step, part, time.monotonic() - t0, cost_k, cfg, loader_cores)))
        prev, counts_prev = cur, counts
        if fleet.dead():
            break
    seconds = time.monotonic() - t_start
    if fleet.dead():
        raise RuntimeError(f"load process(es) {fleet.dead()} died; see stderr above")
    w = whole
    cost = _cost(start, prev, counts_start, counts_prev, rss_max, files_max, base_rss,
                 server_cores)  # fmt: skip
    # a load process silent over four report intervals is behind, not merely late
    check = n_loaders if seconds >= 4 * LoaderConfig.interval else 0
    doc = summarize(step, w, seconds, cost, cfg, loader_cores, loaders=check)
    doc["windows"] = parts
    doc["server"]["gc"] = _gc_doc(counts_start, counts_prev)
    doc["server"]["cpu_over_cores"] = _over_cores(cost, seconds, server_cores if pinned else None)
    counted = cost.tokens_sent if cost and cost.tokens_sent else w.sums["tokens"]
    if (h := hops.cost(drive.parts_base, parts_start, drive.parts_sample(), counted, seconds,
                       doc["streaming"])) is not None:  # fmt: skip
        doc["hops"] = h
    if cost is None:  # a --target server: its connections are what our users hold
        doc["server"]["connections"] = None
    doc["ramp"] = {**ramped.doc(), "cooldown_s": cfg.cooldown_s}
    return doc


def _cost(
    a: procstat.Sample | None, b: procstat.Sample | None, counts_a: dict[str, int] | None,
    counts_b: dict[str, int] | None, rss_max: int, files_max: int, base_rss: int | None,
    cores: int,
) -> ServerCost | None:  # fmt: skip
    if a is None or b is None:
        return None
    sent = None
    if counts_a and counts_b:
        sent = counts_b["tokens_sent_total"] - counts_a["tokens_sent_total"]
    conns = counts_b["connections_open"] if counts_b else None
    return ServerCost(a, b, rss_max, files_max, base_rss, conns, sent, cores)


def _server_pids(sup: Supervisor | Deployment) -> list[int]:
    """The server's processes: its workers and, through a topology, every other part."""
    return sup.pids + [p for ps in sup.parts().values() for p in ps]


def _over_cores(cost: ServerCost | None, seconds: float, cores: int | None) -> bool | None:
    """Server CPU over the window beyond what ``cores`` give (some thread ran elsewhere);
    ``None`` when not pinned or not measured."""
    if cost is None or cores is None or seconds <= 0:
        return None
    return cost.end.cpu_s - cost.start.cpu_s > seconds * cores * OVER_CORES


def _gc_doc(a: dict[str, int] | None, b: dict[str, int] | None) -> dict[str, Any] | None:
    """The server's garbage collections in the window, summed over its workers
    (servers/process/gcpolicy.py): how many paused how long, their total, the full ones."""
    if not a or not b:
        return None
    d = {k: b[k] - a.get(k, 0) for k in b if k.startswith("gc_")}
    names = [n for n in server_metrics.NAMES if n.startswith("gc_pauses_")]
    edges = [f"<{e} ms" for e in server_metrics.PAUSE_BUCKETS_MS] + [
        f">={server_metrics.PAUSE_BUCKETS_MS[-1]} ms"]  # fmt: skip
    return {
        "pauses": {edge: d[n] for edge, n in zip(edges, names, strict=True)},
        "pause_ms_total": round(d["gc_pause_us_total"] / 1000, 1),
        "full": d["gc_full_total"],
        "frozen": b["gc_frozen"],
    }


# What a sub-window keeps: the headline figures whose spread the report states.
PART_FIELDS = ("tokens_per_s", "goodput", "requests_per_s")


def _part(d: StepSummary) -> dict[str, Any]:
    """A sub-window's figures (no histograms: those are the step's, merged)."""
    out: dict[str, Any] = {k: d[k] for k in PART_FIELDS}  # type: ignore[literal-required]
    out["window_s"] = d["window_s"]
    out["p50_ms"] = d["latency_ms"]["p50"]
    out["p99_ms"] = d["latency_ms"]["p99"]
    out["tokens"] = d["tokens"]
    out["cpu_s_per_1k_tokens"] = d["server"]["cpu_s_per_1k_tokens"]
    out["mem_per_conn_bytes"] = d["server"]["mem_per_conn_bytes"]
    out["loadgen_cpu_us_per_token"] = d["loadgen"]["cpu_us_per_token"]
    out["held"] = d["slo"]["held"]
    return out


def _step_line(transport: str, i: int, n: int, d: dict[str, Any]) -> str:
    mark = "held" if d["slo"]["held"] else "BROKE"
    bound = f"  LIMITED BY {d['limited_by'].upper()}" if d["limited_by"] else ""
    gen = d["loadgen"]
    if gen.get("silent"):
        bound += f" ({gen['silent']} OF {gen['silent'] + gen['processes']} LOAD PROCESSES SILENT)"
    if gen.get("costlier_than_server"):
        bound += "  LOADGEN COSTLIER THAN SERVER"
    return (
        f"{transport:<4} step {i + 1}{f'/{n}' if n else ''}: {d['clients']:>6} clients  "
        f"{d['tokens_per_s']:>9,.0f} tok/s  "
        f"p99 {d['latency_ms']['p99']:>8.1f} ms  goodput {d['goodput'] or 0:.3f}  "
        f"lost {d['lost']}  dup {d['duplicated']}  SLO {mark}{bound}"
    )
