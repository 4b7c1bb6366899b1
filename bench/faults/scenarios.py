"""Reconnect recovery under faults: ``tokenbench faults --transport T --scenario NAME``.

One scenario run: a server, N clients each behind its own fault proxy (so every fault belongs
to one client's timeline), a stream per client, and a fault at ``fault_at`` seconds: on the wire
(close, reset, black hole, a storm of empty reconnects, a cut mid-frame in tiny chunks, latency
with jitter, a slow reader) or to the whole server (graceful restart, kill -9 then restart).
Per client it times:

- detection: fault to the client noticing (its first failed attempt after the fault);
- reconnect: noticing to connected again;
- catch-up: connected to live again (the first token whose latency is within ``live_ms``);

and counts tokens lost, duplicated, out of order and unexpected (a wrong text), streams not
recovered within the window, and what the user saw: a stall, an error, duplicates.

Each transport runs in two modes. ``default`` is the client as it comes: a browser's EventSource
(the server's ``retry:``, no watchdog, gives up for good on any non-200 answer), a WebSocket or
long-poll reconnect loop without a watchdog, grpcio with its default keepalive settings.
``hardened`` adds the watchdog (two heartbeats of silence), keepalive settings and retries on
5xx.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.deploy import Deploy
from bench.faults import behind_lb
from bench.faults.clientside import ClientsResult, FaultClients, Timeline, call
from bench.faults.proxy import Fault
from bench.results.hist import Histogram
from servers.base import ServerConfig
from servers.process.supervisor import Supervisor
from servers.tokens.core import Stream
from servers.tokens.llm import LlmShape
from servers.topology.topology import Topology

MODES = ("default", "hardened")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    fault: Fault | None = None  # applied to each client's first ``faulty`` connections
    faulty: int = 1
    server: str | None = None  # "restart" or "kill"


# The per-connection faults fire at the first chunk after ``after_s`` seconds (see Fault).
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("close", "the connection closes cleanly (FIN) mid-stream",
                 Fault("close", after_s=2.0)),
        Scenario("reset", "the connection is reset (RST) mid-stream", Fault("reset", after_s=2.0)),
        Scenario("blackhole", "both directions go silent, no FIN, no RST (Wi-Fi to LTE)",
                 Fault("blackhole", after_s=2.0)),
        Scenario("reconnect-storm", "a drop, then five reconnects in a row cut before any data",
                 Fault("close", after_s=2.0), faulty=6),
        Scenario("truncate", "tiny 7-byte chunks, then a cut in the middle of a frame",
                 Fault("close", after_s=2.0, chunk_bytes=7, mid_chunk=True)),
        Scenario("latency", "300 ms one-way delay with 100 ms jitter, no drop",
                 Fault("none", latency_ms=300, jitter_ms=100)),
        Scenario("slow-reader", "the reader gets 1.5 kB/s while the stream needs about 2.8",
                 Fault("none", bytes_per_s=1500)),
        Scenario("restart", "the server drains on SIGTERM and comes back 1 s later",
                 server="restart"),
        Scenario("kill", "the server is killed (-9) and comes back 1 s later", server="kill"),
    )
}  # fmt: skip


def _percentiles(values: list[float]) -> dict[str, Any]:
    """p50 and max over the clients, and every client's value (their spread, for the report)."""
    if not values:
        return {"p50": None, "max": None, "values": []}
    return {"p50": round(statistics.median(values), 1), "max": round(max(values), 1),
            "values": [round(v, 1) for v in values]}  # fmt: skip


def contract_due(stream: Stream, end_ns: int) -> int:
    """Tokens of ``stream`` due by ``end_ns`` on the contract's schedule (``--source derive``)."""
    return stream.due_count(end_ns)


def llm_due(shape: LlmShape) -> Callable[[Stream, int], int]:
    """Tokens due by ``end_ns`` on the producer's schedule (``--source llm``:
    servers/tokens/llm.py),
    counted from ``created_ns``: the producer starts its clock when it hears of the stream, a
    few ms later, so this can only count one token early at the very end, never miss one."""

    def due(stream: Stream, end_ns: int) -> int:
        at = stream.created_ns
        for seq, gap in enumerate(shape.gaps(stream)):
            at += int(gap * 1e9)
            if at > end_ns:
                return seq
        return stream.tokens

    return due


def summarize(
    name: str, transport: str, mode: str, lines: list[Timeline], fault_times: list[float | None],
    tokens: int, live_ms: float, window_s: float, *, ended: float | None = None,
    ended_ns: int | None = None, due: Callable[[Stream, int], int] = contract_due,
) -> dict[str, Any]:  # fmt: skip
    """One entry of ``faults[]``. ``ended`` is when the window closed on the timelines' clock,
    ``ended_ns`` the same moment on the server's; ``due`` counts a stream's tokens due by then.
    Without them (an older caller) what they measure is None: ``unread``, and ``max_stall_ms``
    when a stream never finished."""
    detect, reconnect, catchup = [], [], []
    lost = dup = ooo = unexpected = unrecovered = 0
    unread: int | None = 0
    stall_ms: list[float] = []
    stall_known = True
    for line, fault_t in zip(lines, fault_times, strict=True):
        seqs = [s for _, s, _ in line.tokens]
        got = set(seqs)
        valid = {s for s in got if 0 <= s < tokens}
        top = max(valid, default=-1)
        lost += top + 1 - len(valid)  # gaps below the highest seq seen
        dup += len(seqs) - len(got)
        ooo += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
        unexpected += line.wrong + len(got) - len(valid)
        if not line.done:
            unrecovered += 1
        owed = _owed(line, tokens, ended_ns, due)
        if owed is None or unread is None:
            unread = None
        else:
            unread += max(0, owed - (top + 1))  # due above the highest seq seen, never came
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(line.tokens)]
        if not line.done:  # the user still waits: the stall runs to the window's end
            since = line.tokens[-1][0] if line.tokens else line.started
            if ended is None or since is None:
                stall_known = False
            else:
                gaps.append(max(0.0, ended - since))
        if gaps:
            stall_ms.append(max(gaps) * 1000)
        if fault_t is None:
            continue
        noticed = next((t for t, _ in line.retries if t >= fault_t), None)
        if noticed is None:
            continue
        detect.append((noticed - fault_t) * 1000)
        up = next((t for t in line.connects if t >= noticed), None)
        if up is None:
            continue
        reconnect.append((up - noticed) * 1000)
        live = next((t for t, _, lat in line.tokens if t >= up and lat <= live_ms * 1e6), None)
        if live is not None:
            catchup.append((live - up) * 1000)
    reasons = collections.Counter(reason for line in lines for _, reason in line.retries)
    max_stall = round(max(stall_ms), 1) if stall_ms and stall_known else None
    saw = []
    if reasons:
        saw.append(f"{sum(reasons.values())} reconnects ({reasons.most_common(1)[0][0]})")
    if max_stall is not None and max_stall > 1000:
        saw.append(f"a stall of up to {max_stall / 1000:.1f} s")
    if unread:
        saw.append(f"{unread} tokens due that never came")
    if lost:
        saw.append(f"{lost} tokens missing mid-answer")
    if any(line.error for line in lines):
        saw.append("an error: " + next(str(line.error) for line in lines if line.error))
    if dup:
        saw.append("duplicates")
    # Not passed unless every owed token is known to have come: unread None is no pass.
    passed = lost == dup == ooo == unexpected == 0 and unrecovered == 0 and unread == 0
    lat = Histogram()
    for line in lines:
        for _, _, ns in line.tokens:
            lat.record(ns // 1000)
    return {
        "scenario": name, "transport": transport, "mode": mode, "clients": len(lines),
        "detection_ms": _percentiles(detect), "reconnect_ms": _percentiles(reconnect),
        "catchup_ms": _percentiles(catchup), "detected": len(detect),
        "lost": lost, "unread": unread, "duplicated": dup, "out_of_order": ooo,
        "unexpected": unexpected, "unrecovered": unrecovered, "reconnects": sum(reasons.values()),
        "reconnect_reasons": dict(reasons.most_common(5)),
        "max_stall_ms": max_stall,
        "latency_ms": lat.summary_ms(),
        "user_saw": "; ".join(saw) or "nothing", "window_s": window_s, "passed": passed,
    }  # fmt: skip


def _owed(
    line: Timeline, tokens: int, ended_ns: int | None, due: Callable[[Stream, int], int]
) -> int | None:
    """Tokens a stream owed its reader by the window's end: all of them once it ended (its end
    comes after its last token), else those due by then; None if that is not known."""
    if line.done:
        return tokens
    if line.stream is None or ended_ns is None:
        return None
    return min(tokens, due(line.stream, ended_ns))


def _plans(scenario: Scenario | behind_lb.LbScenario) -> list[Fault | None]:
    """Each client's connection attempts' faults, in order: the first ``faulty`` get one."""
    if not isinstance(scenario, Scenario):
        return []
    fault = scenario.fault
    if fault is None:
        return []
    if scenario.name == "reconnect-storm":  # then cuts before any data arrives
        return [fault] + [Fault("close", after_bytes=0)] * (scenario.faulty - 1)
    return [fault] * scenario.faulty


def _server(
    scenario: Scenario | behind_lb.LbScenario, cfg: ServerConfig, deploy: Deploy | None,
    workdir: Path | None, idle_s: float = behind_lb.IDLE_S,
) -> tuple[Supervisor | Topology, float]:  # fmt: skip
    """The server a run faults (one, or a topology), and the clients' heartbeat."""
    if deploy is None or deploy.topology is None:
        return Supervisor(cfg), cfg.heartbeat
    cfg, topo = deploy.server(cfg), deploy.topology
    heartbeat = cfg.heartbeat
    if isinstance(scenario, behind_lb.LbScenario) and topo.lb is not None:
        cfg, lb = behind_lb.configure(scenario.name, cfg, topo.lb, idle_s)
        topo = dataclasses.replace(topo, lb=lb)
        heartbeat = behind_lb.client_heartbeat(scenario.name, heartbeat)
    where = (workdir or Path("results")) / f"{scenario.name}-{cfg.transport}"
    return Topology(cfg, topo, where), heartbeat


async def _run(
    scenario: Scenario | behind_lb.LbScenario, transport: str, mode: str, clients: int,
    tokens: int, rate: float, heartbeat: float, window_s: float, on_cluster: bool = False,
    stack: str = "stock", deploy: Deploy | None = None, workdir: Path | None = None,
    idle_s: float = behind_lb.IDLE_S,
) -> dict[str, Any]:  # fmt: skip
    """One run: the server here, its clients here or (``on_cluster``) on a Ray node."""
    cfg = ServerConfig(transport=transport, port=0, heartbeat=heartbeat, grace=2.0, retry_ms=1000,
                       stack=stack)  # fmt: skip
    sup, heartbeat = _server(scenario, cfg, deploy, workdir and workdir / mode, idle_s)
    served = sup.server if isinstance(sup, Topology) else sup.cfg  # what the backends run
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sup.start)  # runs side by side must not stall each other
    args = (transport, mode, clients, tokens, rate, heartbeat, _plans(scenario))
    side: Any = FaultClients(*args)
    if on_cluster:
        from bench.load import cluster

        side = await loop.run_in_executor(None, cluster.fault_clients, args)
    try:
        await call(side, "start", sup.url, "127.0.0.1", urlsplit(sup.url).port)
        fault_at: float | None = None
        if isinstance(sup, Topology) and isinstance(scenario, behind_lb.LbScenario):
            await asyncio.sleep(2.0)
            fault_at = await call(side, "now")
            if not await loop.run_in_executor(None, behind_lb.apply, scenario.name, sup):
                fault_at = None  # the model's pause is the fault: no moment to time from
        elif isinstance(scenario, Scenario) and scenario.server is not None:
            await asyncio.sleep(2.0)
            fault_at = await call(side, "now")  # on the clients' clock
            assert isinstance(sup, Supervisor)
            await loop.run_in_executor(None, _server_fault, sup, scenario.server)
        got: ClientsResult = await call(side, "finish", window_s)
        fault = getattr(scenario, "fault", None)
        entry = summarize(
            scenario.name, transport, mode, got.lines,
            [fault_at] * clients if fault_at is not None else got.fault_times, tokens,
            live_ms=max(250.0, (fault.latency_ms + fault.jitter_ms) * 2 if fault else 250.0),
            window_s=got.window_s, ended=got.ended, ended_ns=got.ended_ns,
            due=llm_due(served.llm) if served.source == "llm" else contract_due,
        )  # fmt: skip
        entry["clock"] = got.clock
        entry["retry_ms"] = served.retry_ms  # the SSE retry the deployment set (WHATWG HTML)
        if isinstance(sup, Topology):
            entry["topology"] = sup.describe()
        return entry
    finally:
        if on_cluster:
            from bench.load import cluster

            cluster.release(side)
        await loop.run_in_executor(None, sup.stop)


def _server_fault(sup: Supervisor, kind: str) -> None:
    """Restart the whole server on the same port: drained (SIGTERM) or killed (-9)."""
    if kind == "kill":
        sup.kill()
    else:
        sup.stop()
    time.sleep(1.0)
    sup.start()


def run(
    scenario: str, transports: list[str], modes: list[str], clients: int = 5, tokens: int = 400,
    rate: float = 40.0, heartbeat: float = 2.0, window_s: float = 40.0, parallel: bool = False,
    on_cluster: bool = False, stack: str = "stock", deploy: Deploy | None = None,
    workdir: Path | None = None, idle_s: float = behind_lb.IDLE_S,
) -> list[dict[str, Any]]:  # fmt: skip
    """One scenario for each transport and mode. ``parallel``: the transports of one mode run
    side by side (each with its own server and proxies; a few streams each, so they barely
    compete). Server restarts always run one at a time: their recovery includes a server's
    start-up, which must not share the CPU with another's. A scenario behind the load balancer
    (bench.faults.behind_lb) runs on ``deploy``'s topology, its files under ``workdir``."""
    sc: Scenario | behind_lb.LbScenario
    if scenario in SCENARIOS:
        sc = SCENARIOS[scenario]
    elif scenario in behind_lb.SCENARIOS:
        sc = behind_lb.SCENARIOS[scenario]
        tokens = sc.tokens or max(tokens, sc.min_tokens)
    else:
        known = ", ".join([*SCENARIOS, *behind_lb.SCENARIOS])
        raise ValueError(f"unknown scenario {scenario!r}: one of {known}")

    def one(transport: str, mode: str) -> Any:
        return _run(sc, transport, mode, clients, tokens, rate, heartbeat, window_s, on_cluster,
                    stack, deploy, workdir, idle_s)  # fmt: skip

    async def side_by_side(mode: str) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(one(t, mode) for t in transports)))

    out: list[dict[str, Any]] = []
    if parallel and isinstance(sc, Scenario) and sc.server is None:
        for mode in modes:
            out.extend(asyncio.run(side_by_side(mode)))
        order = {t: i for i, t in enumerate(transports)}
        return sorted(out, key=lambda e: order[e["transport"]])
    for transport in transports:
        for mode in modes:
            out.append(asyncio.run(one(transport, mode)))
    return out
