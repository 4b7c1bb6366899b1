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
import itertools
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import transports
from bench.faults.proxy import Fault, FaultProxy
from bench.load.hist import Histogram
from clients import ClientOptions, GaveUp, StreamError, create_stream, reader_class
from servers.base import ServerConfig
from servers.core import Codec
from servers.supervisor import Supervisor

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


@dataclass
class Timeline:
    """One client's events, in time.monotonic() seconds."""

    retries: list[tuple[float, str]] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    tokens: list[tuple[float, int, int]] = field(default_factory=list)  # (recv, seq, latency ns)
    wrong: int = 0
    error: str | None = None
    done: bool = False


def client_options(transport: str, mode: str, heartbeat: float) -> ClientOptions:
    if mode == "default":
        return ClientOptions(
            heartbeat=heartbeat, watchdog=False,
            retry_server_errors=reader_class(transport).stock_retries_server_errors,
            grpc_tuned=False, give_up_after=40.0,
        )  # fmt: skip
    return ClientOptions(heartbeat=heartbeat, poll_timeout=2 * heartbeat, give_up_after=40.0)


def _percentiles(values: list[float]) -> dict[str, Any]:
    """p50 and max over the clients, and every client's value (their spread, for the report)."""
    if not values:
        return {"p50": None, "max": None, "values": []}
    return {"p50": round(statistics.median(values), 1), "max": round(max(values), 1),
            "values": [round(v, 1) for v in values]}  # fmt: skip


def summarize(
    name: str, transport: str, mode: str, lines: list[Timeline], fault_times: list[float | None],
    tokens: int, live_ms: float, window_s: float,
) -> dict[str, Any]:  # fmt: skip
    detect, reconnect, catchup = [], [], []
    lost = dup = ooo = unexpected = unrecovered = 0
    stall_ms: list[float] = []
    for line, fault_t in zip(lines, fault_times, strict=True):
        seqs = [s for _, s, _ in line.tokens]
        got = set(seqs)
        lost += tokens - len(got)
        dup += len(seqs) - len(got)
        ooo += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
        unexpected += line.wrong + sum(1 for s in got if not 0 <= s < tokens)
        if not line.done:
            unrecovered += 1
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(line.tokens)]
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
    saw = []
    if stall_ms and max(stall_ms) > 1000:
        saw.append(f"a stall of up to {max(stall_ms) / 1000:.1f} s")
    if any(line.error for line in lines):
        saw.append("an error: " + next(str(line.error) for line in lines if line.error))
    if dup:
        saw.append("duplicates")
    passed = lost == dup == ooo == unexpected == 0 and unrecovered == 0
    lat = Histogram()
    for line in lines:
        for _, _, ns in line.tokens:
            lat.record(ns // 1000)
    return {
        "scenario": name, "transport": transport, "mode": mode, "clients": len(lines),
        "detection_ms": _percentiles(detect), "reconnect_ms": _percentiles(reconnect),
        "catchup_ms": _percentiles(catchup), "detected": len(detect),
        "lost": lost, "duplicated": dup, "out_of_order": ooo, "unexpected": unexpected,
        "unrecovered": unrecovered, "max_stall_ms": round(max(stall_ms), 1) if stall_ms else None,
        "latency_ms": lat.summary_ms(),
        "user_saw": "; ".join(saw) or "nothing", "window_s": window_s, "passed": passed,
    }  # fmt: skip


async def _run(
    scenario: Scenario, transport: str, mode: str, clients: int, tokens: int, rate: float,
    heartbeat: float, window_s: float,
) -> dict[str, Any]:  # fmt: skip
    cfg = ServerConfig(transport=transport, port=0, heartbeat=heartbeat, grace=2.0, retry_ms=1000)
    sup = Supervisor(cfg)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sup.start)  # runs side by side must not stall each other
    proxies: list[FaultProxy] = []
    try:
        port = cfg.port
        record = transports.get(transport)
        fault = scenario.fault
        for _ in range(clients):

            def plan(n: int) -> Fault | None:
                if fault is None or n >= scenario.faulty:
                    return None
                if scenario.name == "reconnect-storm" and n > 0:
                    return Fault("close", after_bytes=0)  # cut before any data arrives
                return fault

            # Behind a load balancer: while the server is down, HTTP clients get 503.
            proxy = FaultProxy(("127.0.0.1", port), plan, unavailable_503=True)
            await proxy.start()
            proxies.append(proxy)
        opts = client_options(transport, mode, heartbeat)
        codec = Codec()
        lines = [Timeline() for _ in range(clients)]
        tasks = []
        for i, proxy in enumerate(proxies):
            info = await create_stream(transport, sup.url, tokens=tokens, rate=rate)
            stream = codec.decode(info["id"])
            tasks.append(asyncio.ensure_future(
                _read(transport, record.url("127.0.0.1", proxy.port), info["id"], stream,
                      opts, lines[i])
            ))  # fmt: skip
        start = time.monotonic()
        fault_times: list[float | None] = [None] * clients
        if scenario.server is not None:
            await asyncio.sleep(2.0)
            fault_times = [time.monotonic()] * clients
            await loop.run_in_executor(None, _server_fault, sup, scenario.server)
        _, pending = await asyncio.wait(tasks, timeout=window_s)
        for task in pending:
            task.cancel()
        if scenario.server is None:
            for i, proxy in enumerate(proxies):
                fault_times[i] = proxy.fired_at[0] if proxy.fired_at else None
        return summarize(
            scenario.name, transport, mode, lines, fault_times, tokens,
            live_ms=max(250.0, (fault.latency_ms + fault.jitter_ms) * 2 if fault else 250.0),
            window_s=round(time.monotonic() - start, 1),
        )  # fmt: skip
    finally:
        for proxy in proxies:
            await proxy.stop()
        await loop.run_in_executor(None, sup.stop)


async def _read(
    transport: str, url: str, sid: str, stream: Any, opts: ClientOptions, line: Timeline
) -> None:
    def on_token(seq: int, t: int, text: str) -> None:
        line.tokens.append((time.monotonic(), seq, time.time_ns() - t))
        if text != stream.text(seq):
            line.wrong += 1

    reader = reader_class(transport)(url, sid, on_token, None, opts)
    reader.on_retry = lambda reason: line.retries.append((time.monotonic(), reason))
    reader.on_connected = lambda: line.connects.append(time.monotonic())
    try:
        await reader.run()
        line.done = True
    except (StreamError, GaveUp) as exc:
        line.error = str(exc)


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
) -> list[dict[str, Any]]:  # fmt: skip
    """One scenario for each transport and mode. ``parallel``: the transports of one mode run
    side by side (each with its own server and proxies; a few streams each, so they barely
    compete). Server restarts always run one at a time: their recovery includes a server's
    start-up, which must not share the CPU with another's."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    sc = SCENARIOS[scenario]

    def one(transport: str, mode: str) -> Any:
        return _run(sc, transport, mode, clients, tokens, rate, heartbeat, window_s)

    async def side_by_side(mode: str) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(one(t, mode) for t in transports)))

    out: list[dict[str, Any]] = []
    if parallel and sc.server is None:
        for mode in modes:
            out.extend(asyncio.run(side_by_side(mode)))
        order = {t: i for i, t in enumerate(transports)}
        return sorted(out, key=lambda e: order[e["transport"]])
    for transport in transports:
        for mode in modes:
            out.append(asyncio.run(one(transport, mode)))
    return out
