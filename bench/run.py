"""``tokenbench bench``: drive a transport through load steps and measure it.

Per transport: start the server (N workers, pinned to the server's cores) unless ``--target``
names one; start L loader processes (pinned to the other cores); for each step, ramp the users
to the step's count, then measure over the step's window: the loaders' per-second reports are
merged, and the server's processes are sampled every second from /proc. A step records what
the users saw (latency against due times, time to first token, gaps, goodput, errors, lost and
duplicated tokens) and what it cost (server CPU per 1,000 tokens, RSS, memory per connection,
open files, bytes per token; the load generator's own CPU per token). When the load generator
used 90 % of its cores, the step says so: its numbers are a bound on the harness, not on the
server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat
from bench.hist import Histogram
from bench.loader import ERROR_CLASSES, LoaderConfig, config_json
from servers import metrics as server_metrics
from servers.base import ServerConfig, load
from servers.supervisor import Supervisor

PER_LOADER = 12_000  # users per load process (one socket each; the hard limit is 20,000 files)
PER_WORKER = 12_000  # connections per server worker, for the same reason
SATURATED = 0.90  # a process group using this share of its cores is the bottleneck


@dataclass
class Step:
    clients: int
    ramp_s: float
    hold_s: float


@dataclass
class BenchConfig:
    transports: list[str]
    steps: list[Step]
    rate: float = 40.0
    tokens: int = 400
    think: float = 5.0
    workers: int | None = None
    loaders: int | None = None
    target: str | None = None
    out: Path = Path("results/run")
    find_knee: bool = False
    slo_ms: float = 250.0
    min_goodput: float = 0.99
    heartbeat: float = 15.0
    poll_timeout: float = 25.0
    pin: bool = True
    warmup_s: float = 2.0
    fast_path: bool = True  # load processes use clients/_fastpath.c (SSE, WebSocket) if built
    doze_us: int = 1000  # load processes read in batches (bench.loader Loader.doze); not gRPC
    knee_refine: int = 0  # --find-knee: bisection steps between the last held and first broken
    cooldown_s: float = 0.0  # after the settle, seconds before the window opens
    settle_s: float = 120.0  # at most this long after a ramp, wait for every user to connect
    quiet: bool = False
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_clients(self) -> int:
        return max(s.clients for s in self.steps)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``2m``, ``1.5m`` -> seconds."""
    t = text.strip().lower()
    scale = 60.0 if t.endswith("m") else 1.0
    t = t.rstrip("sm")
    try:
        value = float(t) * scale
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (try 30s or 2m)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a duration: {text!r}")
    return value


def parse_steps(ramp: str, clients: int, hold: float) -> list[Step]:
    """``--ramp``: a duration (one step to ``clients``) or stages ``N:DUR,N:DUR,...``.

    In a stage the users ramp to N over a third of DUR (at most 30 s), and the rest of DUR is
    the measured window; ``--hold`` seconds are added to the last stage's window.
    """
    if ":" not in ramp:
        return [Step(clients, parse_duration(ramp), hold)]
    steps = []
    for part in ramp.split(","):
        n, _, dur = part.partition(":")
        try:
            count = int(n.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"not a client count: {n!r} in --ramp {ramp!r}") from None
        if count < 1:
            raise ValueError(f"client counts must be >= 1 in --ramp {ramp!r}")
        seconds = parse_duration(dur)
        ramp_s = min(seconds / 3, 30.0)
        steps.append(Step(count, ramp_s, seconds - ramp_s))
    steps[-1].hold_s += hold
    return steps


def knee_steps(start: int, limit: int, factor: float, ramp_s: float, hold_s: float) -> list[Step]:
    out, n = [], max(1, start)
    while n < limit:
        out.append(Step(n, ramp_s, hold_s))
        n = max(n + 1, int(n * factor))
    out.append(Step(limit, ramp_s, hold_s))
    return out


def _pin(pids: list[int], cores: set[int] | None) -> None:
    if not cores:
        return
    for pid in pids:
        with contextlib.suppress(OSError):  # a process that already exited
            os.sched_setaffinity(pid, cores)


class Fleet:
    """The loader processes and their per-second reports."""

    def __init__(self, configs: list[LoaderConfig], cores: set[int] | None) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.loader", config_json(c)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            for c in configs
        ]
        _pin([p.pid for p in self.procs], cores)
        self._buf = {p.stdout.fileno(): "" for p in self.procs if p.stdout}

    def send(self, messages: list[dict[str, Any]]) -> None:
        for proc, msg in zip(self.procs, messages, strict=True):
            if proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.write(json.dumps(msg) + "\n")
                    proc.stdin.flush()
                except BrokenPipeError:
                    pass

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        fds = [p.stdout.fileno() for p in self.procs if p.stdout and p.poll() is None]
        if not fds:
            time.sleep(timeout)
            return []
        ready, _, _ = select.select(fds, [], [], timeout)
        reports = []
        for fd in ready:
            chunk = os.read(fd, 1 << 20).decode()
            self._buf[fd] += chunk
            *lines, self._buf[fd] = self._buf[fd].split("\n")
            reports += [json.loads(line) for line in lines if line.strip()]
        return reports

    def dead(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p.poll() not in (None, 0)]

    def stop(self) -> None:
        self.send([{"stop": True}] * len(self.procs))
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Window:
    """Merge of loader reports and server samples over one measured window."""

    def __init__(self) -> None:
        self.latency, self.ttft, self.gap = Histogram(), Histogram(), Histogram()
        self.sums: dict[str, int] = {}
        self.errors = dict.fromkeys(ERROR_CLASSES, 0)
        self.users: dict[int, int] = {}
        self.streaming: dict[int, int] = {}
        self.cpu: dict[int, list[float]] = {}  # loader -> [first, last] cumulative CPU
        self.fast_path: dict[int, bool] = {}  # loader -> read through clients/_fastpath.c
        self.sys: dict[int, list[float]] = {}  # loader -> [first, last] cumulative system CPU

    def add(self, r: dict[str, Any], prev_cpu: float | None, prev_sys: float | None = None) -> None:
        for name in ("latency", "ttft", "gap"):
            getattr(self, name).merge(Histogram.from_json(r[name]))
        for key in (
            "tokens",
            "expected",
            "requests",
            "reconnects",
            "duplicated",
            "out_of_order",
            "lost",
            "wrong_text",
            "streams_done",
            "streams_failed",
            "bytes_received",
        ):
            self.sums[key] = self.sums.get(key, 0) + int(r.get(key, 0))
        for cls, n in r["errors"].items():
            self.errors[cls] = self.errors.get(cls, 0) + n
        i = r["loader"]
        self.fast_path[i] = bool(r.get("fast_path"))
        self.users[i] = r["users"]
        self.streaming[i] = r["streaming"]
        start = prev_cpu if prev_cpu is not None else r["cpu_s"]
        self.cpu.setdefault(i, [start, start])[1] = r["cpu_s"]
        sys_s = r.get("sys_s", 0.0)
        start = prev_sys if prev_sys is not None else sys_s
        self.sys.setdefault(i, [start, start])[1] = sys_s


def _saturated(util: float) -> bool:
    return util >= SATURATED


def summarize(
    step: Step,
    w: Window,
    seconds: float,
    srv0: procstat.Sample | None,
    srv1: procstat.Sample | None,
    srv_rss_max: int,
    srv_files_max: int,
    base_rss: int | None,
    conns: int | None,
    server_tokens: int | None,
    cfg: BenchConfig,
    server_cores: int,
    loader_cores: int,
) -> dict[str, Any]:
    s = w.sums
    tokens = s.get("tokens", 0)
    expected = s.get("expected", 0)
    gen_cpu = sum(last - first for first, last in w.cpu.values())
    gen_util = gen_cpu / seconds / max(loader_cores, 1) if seconds else 0.0
    server: dict[str, Any] = {
        "cpu_s_per_1k_tokens": None,
        "cpu_util": None,
        "rss_bytes": None,
        "mem_per_conn_bytes": None,
        "open_files": None,
        "connections": conns,
        "tokens_sent": server_tokens,
    }
    wire = None
    if srv0 is not None and srv1 is not None:
        cpu = srv1.cpu_s - srv0.cpu_s
        counted = server_tokens if server_tokens else tokens
        server["cpu_s_per_1k_tokens"] = round(cpu / counted * 1000, 6) if counted else None
        server["cpu_util"] = round(cpu / seconds / max(server_cores, 1), 4) if seconds else None
        server["rss_bytes"] = srv_rss_max
        server["open_files"] = srv_files_max
        held = conns if conns is not None else sum(w.streaming.values())
        if base_rss is not None and held:
            server["mem_per_conn_bytes"] = round((srv_rss_max - base_rss) / held)
        io = (srv1.read_bytes - srv0.read_bytes) + (srv1.written_bytes - srv0.written_bytes)
        wire = round(io / tokens, 1) if tokens else None
        server["written_bytes_per_token"] = (
            round((srv1.written_bytes - srv0.written_bytes) / tokens, 1) if tokens else None
        )
    gen_sys = sum(last - first for first, last in w.sys.values())
    gen = {
        "cpu_us_per_token": round(gen_cpu / tokens * 1e6, 2) if tokens else None,
        "sys_us_per_token": round(gen_sys / tokens * 1e6, 2) if tokens else None,
        "cpu_util": round(gen_util, 4),
        "processes": len(w.cpu),
        "fast_path": bool(w.fast_path) and all(w.fast_path.values()),
        "saturated": _saturated(gen_util),
    }
    goodput = round(tokens / expected, 5) if expected else None
    server_sat = server["cpu_util"] is not None and _saturated(server["cpu_util"])
    limited_by = "loadgen" if gen["saturated"] else ("server" if server_sat else None)
    lat = w.latency.summary_ms()
    failed = s.get("streams_failed", 0)
    held_slo = (
        w.latency.count > 0
        and lat["p99"] <= cfg.slo_ms
        and goodput is not None
        and goodput >= cfg.min_goodput
        and s.get("lost", 0) == 0
        and failed == 0
    )
    return {
        "clients": step.clients,
        "users": sum(w.users.values()),
        "streaming": sum(w.streaming.values()),
        "window_s": round(seconds, 2),
        "latency_ms": lat,
        "ttft_ms": w.ttft.summary_ms(),
        "gap_p99_ms": round(w.gap.percentile(99) / 1000, 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1) if seconds else 0.0,
        "expected_per_s": round(expected / seconds, 1) if seconds else 0.0,
        "goodput": goodput,
        "requests_per_s": round(s.get("requests", 0) / seconds, 1) if seconds else 0.0,
        "wire_bytes_per_token": wire,
        "client_bytes_per_token": round(s.get("bytes_received", 0) / tokens, 1) if tokens else None,
        "errors": w.errors,
        "reconnects": s.get("reconnects", 0),
        "lost": s.get("lost", 0),
        "duplicated": s.get("duplicated", 0),
        "out_of_order": s.get("out_of_order", 0),
        "wrong_text": s.get("wrong_text", 0),
        "streams_done": s.get("streams_done", 0),
        "streams_failed": failed,
        "server": server,
        "loadgen": gen,
        "limited_by": limited_by,
        "slo": {"p99_ms": cfg.slo_ms, "min_goodput": cfg.min_goodput, "held": held_slo},
        "histograms": {
            "latency_us": w.latency.to_json(),
            "ttft_us": w.ttft.to_json(),
            "gap_us": w.gap.to_json(),
        },
    }


ProgressFn = Callable[[str], None]


def _cores() -> tuple[set[int] | None, set[int] | None]:
    """Server on the first half of the cores, load generator on the rest (2 cores: 1 and 1)."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    half = len(available) // 2
    return set(available[:half]), set(available[half:])


def run_transport(transport: str, cfg: BenchConfig, say: ProgressFn) -> dict[str, Any]:
    server_cores, loader_cores = _cores() if cfg.pin else (None, None)
    n_loaders = cfg.loaders or max(1, math.ceil(cfg.max_clients / PER_LOADER))
    n_workers = cfg.workers or max(1, math.ceil(cfg.max_clients / PER_WORKER))
    sources = [f"127.0.0.{10 + k}" for k in range(n_loaders)]
    sup: Supervisor | None = None
    settings: dict[str, Any] | None = None
    if cfg.target:
        url = cfg.target
        urls = [url] * n_loaders
    else:
        hosts = "127.0.0.1," + ",".join(sources) if transport == "grpc" else "127.0.0.1"
        scfg = ServerConfig(
            transport=transport, host=hosts, port=0, workers=n_workers, heartbeat=cfg.heartbeat
        )
        settings = load(transport).settings(scfg)
        sup = Supervisor(scfg)
        sup.start()
        _pin(sup.pids, server_cores)
        url = sup.url
        port = scfg.port
        scheme = "grpc" if transport == "grpc" else "http"
        urls = (
            [f"{scheme}://{s}:{port}" for s in sources]
            if transport == "grpc"
            else [url] * n_loaders
        )

    time.sleep(cfg.warmup_s)
    base = Driver.sample_of(sup)
    base_rss = base.rss_bytes if base else None
    loader_cfgs = [
        LoaderConfig(
            transport=transport,
            url=urls[k],
            index=k,
            local_addr=None if transport == "grpc" or cfg.target else sources[k],
            tokens=cfg.tokens,
            rate=cfg.rate,
            think=cfg.think,
            heartbeat=cfg.heartbeat,
            poll_timeout=cfg.poll_timeout,
            seed=k,
            doze_us=0 if transport == "grpc" else cfg.doze_us,  # grpc.aio stalls if the loop sleeps
            fast_path=cfg.fast_path,
        )
        for k in range(n_loaders)
    ]
    fleet = Fleet(loader_cfgs, loader_cores)
    drive = Driver(transport, cfg, fleet, sup, say)
    steps_out: list[dict[str, Any]] = []
    plan = list(cfg.steps)
    refine = cfg.knee_refine if cfg.find_knee else 0
    try:
        i = -1
        while i + 1 < len(plan):
            i += 1
            step = plan[i]
            share = [
                step.clients // n_loaders + (1 if k < step.clients % n_loaders else 0)
                for k in range(n_loaders)
            ]
            fleet.send([{"target": n, "ramp_s": step.ramp_s} for n in share])
            # Ramp: reports are read (progress, CPU baselines) but not measured. Then settle:
            # the window opens once 99 % of users have connected (a server slower to accept
            # than the ramp asks is measured at its full count, not half-ramped), or after
            # settle_s; the time it took is recorded.
            ramp_t0 = time.monotonic()
            drive.pump(step.ramp_s, i, None)
            need, give_up = math.ceil(0.99 * step.clients), ramp_t0 + step.ramp_s + cfg.settle_s
            while drive.arrived() < need and time.monotonic() < give_up:
                drive.pump(0.5, i, None)
                if fleet.dead():
                    break
            ramp_took, arrived = time.monotonic() - ramp_t0, drive.arrived()
            if cfg.cooldown_s > 0:  # let a backlog built up while connecting drain first
                drive.pump(cfg.cooldown_s, i, None)
            w = Window()
            srv0, counts0 = drive.server_sample(), drive.server_counts()
            t0 = time.monotonic()
            rss_max, files_max = drive.pump(step.hold_s, i, w)
            seconds = time.monotonic() - t0
            srv1, counts1 = drive.server_sample(), drive.server_counts()
            if fleet.dead():
                raise RuntimeError(f"load process(es) {fleet.dead()} died; see stderr above")
            conns = counts1["connections_open"] if counts1 else None
            sent = (
                counts1["tokens_sent_total"] - counts0["tokens_sent_total"]
                if counts0 and counts1
                else None
            )
            doc = summarize(
                step,
                w,
                seconds,
                srv0,
                srv1,
                rss_max,
                files_max,
                base_rss,
                conns,
                sent,
                cfg,
                len(server_cores or os.sched_getaffinity(0)),
                len(loader_cores or os.sched_getaffinity(0)),
            )
            doc["ramp"] = {
                "planned_s": step.ramp_s,
                "took_s": round(ramp_took, 2),
                "users_connected": arrived,
                "cooldown_s": cfg.cooldown_s,
            }
            doc["order"] = i
            steps_out.append(doc)
            say(_step_line(transport, i, len(plan) if not cfg.find_knee else 0, doc))
            if not cfg.find_knee:
                continue
            held = [d["clients"] for d in steps_out if d["slo"]["held"]]
            broke = [d["clients"] for d in steps_out if not d["slo"]["held"]]
            if not broke:
                continue
            lo, hi = max((c for c in held if c < min(broke)), default=0), min(broke)
            plan = plan[: i + 1]  # past the first break only bisection steps follow
            mid = round(math.sqrt(lo * hi)) if lo else 0
            if refine > 0 and lo < mid < hi:
                refine -= 1
                plan.append(Step(mid, step.ramp_s, step.hold_s))
    finally:
        fleet.stop()
        if sup is not None:
            sup.stop()
    steps_out.sort(key=lambda d: d["clients"])  # bisection steps in their place on the axis
    broke_at = min((d["clients"] for d in steps_out if not d["slo"]["held"]), default=None)
    knee = max(
        (d for d in steps_out if d["slo"]["held"] and d["clients"] < (broke_at or math.inf)),
        key=lambda d: d["clients"],
        default=None,
    )
    run: dict[str, Any] = {
        "transport": transport,
        "url": url,
        "server_workers": None if cfg.target else n_workers,
        "loaders": n_loaders,
        "server_cores": sorted(server_cores) if server_cores else None,
        "loader_cores": sorted(loader_cores) if loader_cores else None,
        "baseline_rss_bytes": base_rss,
        "server_settings": settings,
        "steps": steps_out,
    }
    if cfg.find_knee or len(cfg.steps) > 1:
        cores = len(server_cores) if server_cores else os.cpu_count() or 1
        run["knee"] = (
            None
            if knee is None
            else {
                "clients": knee["clients"],
                "clients_per_server_core": round(knee["clients"] / cores, 1),
                "tokens_per_s": knee["tokens_per_s"],
                "latency_p99_ms": knee["latency_ms"]["p99"],
                "limited_by": knee["limited_by"],
                "broke_at": broke_at,
            }
        )
    return run


@dataclass
class Driver:
    """One transport's run in motion: its load processes, its server (if ours), the progress."""

    transport: str
    cfg: BenchConfig
    fleet: Fleet
    sup: Supervisor | None
    say: ProgressFn
    started: float = field(default_factory=time.monotonic)
    last_cpu: dict[int, float] = field(default_factory=dict)  # loader -> last cumulative CPU
    last_arrived: dict[int, int] = field(default_factory=dict)  # loader -> users connected
    last_sys: dict[int, float] = field(default_factory=dict)  # loader -> last system CPU

    def arrived(self) -> int:
        """Users (over all loaders) whose first stream has connected, as last reported."""
        return sum(self.last_arrived.values())

    @staticmethod
    def sample_of(sup: Supervisor | None) -> procstat.Sample | None:
        return procstat.sample(sup.pids) if sup is not None else None

    def server_sample(self) -> procstat.Sample | None:
        return self.sample_of(self.sup)

    def server_counts(self) -> dict[str, int] | None:
        sup = self.sup
        if sup is None or sup.metrics_file is None:
            return None
        rows = server_metrics.read_rows(sup.metrics_file, sup.cfg.workers)
        return {k: sum(r[k] for r in rows) for k in server_metrics.NAMES}

    def pump(self, seconds: float, step: int, w: Window | None) -> tuple[int, int]:
        """Read reports for ``seconds`` (into ``w`` if measuring); sample the server each second.

        Returns the peak server RSS and open files seen.
        """
        fleet, cfg = self.fleet, self.cfg
        end = time.monotonic() + seconds
        rss_max = files_max = 0
        prev = self.server_sample()
        tick = time.monotonic()
        second_tokens = 0
        second_hist = Histogram()
        while (left := end - time.monotonic()) > 0:
            for r in fleet.poll(min(left, 0.25)):
                if w is not None:
                    w.add(r, self.last_cpu.get(r["loader"]), self.last_sys.get(r["loader"]))
                self.last_cpu[r["loader"]] = r["cpu_s"]
                self.last_arrived[r["loader"]] = r.get("arrived", 0)
                self.last_sys[r["loader"]] = r.get("sys_s", 0.0)
                second_tokens += r["tokens"]
                second_hist.merge(Histogram.from_json(r["latency"]))
            if fleet.dead():
                return rss_max, files_max
            now = time.monotonic()
            if now - tick < 1.0:
                continue
            cur = self.server_sample()
            if cur is not None:
                rss_max, files_max = max(rss_max, cur.rss_bytes), max(files_max, cur.open_files)
            if not cfg.quiet:
                counts = self.server_counts()
                cpu = (cur.cpu_s - prev.cpu_s) / (now - tick) if cur and prev else 0.0
                conns = counts["connections_open"] if counts else "-"
                self.say(
                    f"  {now - self.started:6.0f}s {self.transport:<4} "
                    f"step {step + 1} {'measure' if w is not None else 'ramp   '} "
                    f"conns {conns:>6} tok/s {second_tokens / (now - tick):>9,.0f} "
                    f"p99 {second_hist.percentile(99) / 1000:>8.1f} ms srv cpu {cpu:>4.0%} "
                    f"rss {(cur.rss_bytes if cur else 0) / 2**20:>6.0f} MiB"
                )
            prev, tick, second_tokens, second_hist = cur, now, 0, Histogram()
        if rss_max == 0 and (cur := self.server_sample()) is not None:
            rss_max, files_max = cur.rss_bytes, cur.open_files
        return rss_max, files_max


def _step_line(transport: str, i: int, n: int, d: dict[str, Any]) -> str:
    mark = "held" if d["slo"]["held"] else "BROKE"
    bound = f"  LIMITED BY {d['limited_by'].upper()}" if d["limited_by"] else ""
    return (
        f"{transport:<4} step {i + 1}{f'/{n}' if n else ''}: {d['clients']:>6} clients  "
        f"{d['tokens_per_s']:>9,.0f} tok/s  "
        f"p99 {d['latency_ms']['p99']:>8.1f} ms  goodput {d['goodput'] or 0:.3f}  "
        f"lost {d['lost']}  dup {d['duplicated']}  SLO {mark}{bound}"
    )


def config_doc(cfg: BenchConfig) -> dict[str, Any]:
    doc = dataclasses.asdict(cfg)
    doc["out"] = str(cfg.out)
    return doc
