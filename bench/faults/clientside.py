"""The client side of one fault run: its fault proxies, streams and readers (``FaultClients``).

Rules of this module:
- It knows nothing of the server but its address: the server, and faults to it, stay with the
  orchestrator (bench.faults.scenarios). So the same object runs here, or on a Ray cluster's node
  as an actor (``tokenbench faults --cluster``), called the same way (``call``).
- Event times are this process's ``time.monotonic()``; ``now`` lets the orchestrator stamp a
  server fault on that clock. Latencies are on the server's clock (bench.load.clock).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import transports
from bench.faults.proxy import Fault, FaultProxy
from bench.load.clock import Clock, ClockDoc
from clients import ClientOptions, GaveUp, StreamError, create_stream, reader_class
from servers.tokens.core import Codec, Stream


@dataclass
class Timeline:
    """One client's events, in time.monotonic() seconds."""

    retries: list[tuple[float, str]] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    tokens: list[tuple[float, int, int]] = field(default_factory=list)  # (recv, seq, latency ns)
    wrong: int = 0
    error: str | None = None
    done: bool = False
    stream: Stream | None = None  # what it reads (its id decoded: created_ns, tokens, rate)
    started: float | None = None  # when its prompt POST answered: the user waits from here


@dataclass
class ClientsResult:
    lines: list[Timeline]
    fault_times: list[float | None]  # per client: when its connection fault fired
    window_s: float
    clock: ClockDoc
    ended: float | None = None  # when the window closed (time.monotonic(), as the timelines)
    ended_ns: int | None = None  # the same moment on the server's clock (tokens' due times)


def client_options(transport: str, mode: str, heartbeat: float) -> ClientOptions:
    if mode == "default":
        return ClientOptions(
            heartbeat=heartbeat, watchdog=False,
            retry_server_errors=reader_class(transport).stock_retries_server_errors,
            grpc_tuned=False, give_up_after=40.0,
        )  # fmt: skip
    return ClientOptions(heartbeat=heartbeat, poll_timeout=min(2 * heartbeat, 25.0),
                         give_up_after=40.0)  # fmt: skip


class FaultClients:
    """``clients`` streams, each read through its own fault proxy to the server."""

    def __init__(self, transport: str, mode: str, clients: int, tokens: int, rate: float,
                 heartbeat: float, plans: list[Fault | None]) -> None:  # fmt: skip
        self.transport, self.mode, self.clients = transport, mode, clients
        self.tokens, self.rate, self.heartbeat = tokens, rate, heartbeat
        self.plans = plans  # the fault of each connection attempt: plans[n], then none
        self.proxies: list[FaultProxy] = []
        self.lines = [Timeline() for _ in range(clients)]
        self.tasks: list[asyncio.Future[None]] = []
        self.clock = Clock()
        self.started = 0.0

    def now(self) -> float:
        return time.monotonic()

    def where(self) -> str:
        """This process's node address (Ray's), to tell whether it shares the server's machine.
        Called on a Ray actor, which also puts itself back at normal priority."""
        import os

        import ray

        from bench.load.cluster import normal_priority

        normal_priority(os.getpid())
        return str(ray.util.get_node_ip_address())

    async def start(self, server_url: str, host: str, port: int) -> None:
        """Proxies up, streams created, readers reading."""
        await self.clock.sync(self.transport, server_url)
        plans = self.plans

        def plan(n: int) -> Fault | None:
            return plans[n] if n < len(plans) else None

        for _ in range(self.clients):
            # Behind a load balancer: while the server is down, HTTP clients get 503.
            proxy = FaultProxy((host, port), plan, unavailable_503=True)
            await proxy.start()
            self.proxies.append(proxy)
        opts = client_options(self.transport, self.mode, self.heartbeat)
        codec, record = Codec(), transports.get(self.transport)
        for i, proxy in enumerate(self.proxies):
            info = await create_stream(self.transport, server_url, tokens=self.tokens,
                                       rate=self.rate)  # fmt: skip
            line = self.lines[i]
            line.started, line.stream = time.monotonic(), codec.decode(info["id"])
            url = record.url("127.0.0.1", proxy.port)
            task = self._read(url, info["id"], line.stream, opts, line, info.get("cookie"))
            self.tasks.append(asyncio.ensure_future(task))
        self.started = time.monotonic()

    async def finish(self, window_s: float) -> ClientsResult:
        """Wait at most ``window_s`` more for every stream to end; then stop. The window closes
        when the wait returns: what a reader had not received by then it never will."""
        try:
            _, pending = await asyncio.wait(self.tasks, timeout=window_s)
            ended, ended_ns = time.monotonic(), self.clock.now()
            for task in pending:
                task.cancel()
            fired = [p.fired_at[0] if p.fired_at else None for p in self.proxies]
        finally:
            for proxy in self.proxies:
                await proxy.stop()
        return ClientsResult(self.lines, fired, round(ended - self.started, 1), self.clock.doc(),
                             ended, ended_ns)  # fmt: skip

    async def _read(
        self,
        url: str,
        sid: str,
        stream: Any,
        opts: ClientOptions,
        line: Timeline,
        cookie: str | None = None,
    ) -> None:
        now_ns = self.clock.now

        def on_token(seq: int, t: int, text: str) -> None:
            line.tokens.append((time.monotonic(), seq, now_ns() - t))
            if text != stream.text(seq):
                line.wrong += 1

        reader = reader_class(self.transport)(url, sid, on_token, None, opts)
        reader.cookie = cookie  # a sticky load balancer's, from the prompt POST
        reader.on_retry = lambda reason: line.retries.append((time.monotonic(), reason))
        reader.on_connected = lambda: line.connects.append(time.monotonic())
        try:
            await reader.run()
            line.done = True
        except (StreamError, GaveUp) as exc:
            line.error = str(exc)


async def call(side: Any, method: str, *args: Any) -> Any:
    """``side.method(*args)`` on a ``FaultClients`` here, or on one that is a Ray actor."""
    fn = getattr(side, method)
    if hasattr(fn, "remote"):
        return await fn.remote(*args)
    out = fn(*args)
    return await out if asyncio.iscoroutine(out) else out
