"""What every transport server shares: its configuration, its context, and its interface.

A transport's server module (named by its record in ``transports``) exposes exactly the
``TransportServer`` interface below. The supervisor starts N worker processes; each
binds its own ``SO_REUSEPORT`` socket on the same port, so the kernel spreads connections evenly
and no worker needs to know about another.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import transports
from servers.pacing.hub import Hub, get_hub
from servers.process.metrics import Metrics
from servers.source import replay, stops
from servers.source.answers import Answer
from servers.tokens.core import DEFAULT_REPLAY_TTL, DEFAULT_SECRET, Codec, Stream
from servers.tokens.llm import LlmShape

_SECRET = DEFAULT_SECRET.decode()


@dataclass
class ServerConfig:
    transport: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    replay_ttl: float = DEFAULT_REPLAY_TTL
    heartbeat: float = 15.0  # SSE comment / WebSocket ping / gRPC keepalive interval, seconds
    retry_ms: int = 1000  # SSE ``retry:`` sent to clients
    grace: float = 5.0  # graceful shutdown budget, seconds
    ws_compression: bool = False  # permessage-deflate (RFC 7692); uvicorn's default is on
    access_log: bool = False  # uvicorn's default is on
    backlog: int = 4096
    stack: str = "stock"  # the server stack (transports.Transport.stacks)
    gc: str = "stock"  # the cyclic collector's policy (servers/process/gcpolicy.py)
    flush_ms: float = 0.0  # write every token due within this window in one write (pacing.py)
    source: str = "derive"  # "derive", or "llm": tokens from the producer (source/replay.py)
    replay: str = "pod"  # with llm: "pod" (this process's memory) or "redis" (a shared log)
    producer: str | None = None  # host:port of the producer, with llm (topology/topology.py)
    redis: str | None = None  # redis://host:port, with replay redis (topology/topology.py)
    llm: LlmShape = field(default_factory=LlmShape)  # the producer's timing (replay windows)
    secret: str = field(default_factory=lambda: os.environ.get("TOKENBENCH_SECRET", _SECRET))
    metrics_path: str | None = None  # shared counter table, set by the supervisor
    slot: int = 0  # this worker's row in it
    # A second listener for browsers, where the wire is not one a browser speaks (gRPC: its
    # gRPC-Web front, servers/grpc/web.py). None: off; 0: a free port (the supervisor picks).
    web_port: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.llm, dict):
            self.llm = LlmShape(**self.llm)
        if self.source not in ("derive", "llm") or self.replay not in ("pod", "redis"):
            raise ValueError("source must be derive or llm, replay pod or redis")
        record = transports.get(self.transport)  # ValueError naming the choices
        if self.stack not in record.stacks:
            raise ValueError(f"{self.transport} has no {self.stack!r} stack: "
                             f"{', '.join(record.stacks)}")  # fmt: skip
        if self.gc not in ("stock", "tuned"):
            raise ValueError(f"gc must be stock or tuned, not {self.gc!r}")
        if not 0 <= self.flush_ms <= 1000:
            raise ValueError(f"flush-ms must be 0..1000, not {self.flush_ms:g}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} outside 0..65535")
        if self.web_port is not None and not record.web_front:
            raise ValueError(f"{self.transport} serves browsers on its own port: no --web-port")
        if self.web_port is not None and not 0 <= self.web_port <= 65535:
            raise ValueError(f"web-port {self.web_port} outside 0..65535")
        if not 1 <= self.workers <= 64:
            raise ValueError(f"workers must be 1..64, not {self.workers}")
        if self.heartbeat <= 0 or self.replay_ttl < 0 or self.grace < 0 or self.retry_ms < 0:
            raise ValueError("heartbeat must be > 0; replay-ttl, grace and retry must be >= 0")

    @property
    def hosts(self) -> list[str]:
        """Every address to listen on: ``--host 127.0.0.1,127.0.0.2`` lets clients spread
        over several destination addresses (grpcio cannot bind a client source address)."""
        return [h.strip() for h in self.host.split(",") if h.strip()]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        return cls(**json.loads(text))


class Context:
    """Per-worker state handed to a transport: codec, hub, metrics and config."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.codec = Codec(cfg.secret.encode())
        self.hub: Hub = get_hub()
        self.metrics = Metrics(cfg.transport, cfg.metrics_path, cfg.slot)
        stops_path = stops.table_path(cfg.metrics_path) if cfg.metrics_path else None
        self.stops = stops.Stops(stops_path, cfg.slot, cfg.workers)
        self.source = replay.make(cfg, self.stops)

    async def start(self) -> None:
        """Connect to the producer and the log, if this server relays them."""
        await self.source.start()

    async def create(self, tokens: int, rate: float) -> tuple[str, Stream]:
        """The prompt POST: a new stream id, its answer started (503 if the model is away)."""
        sid, stream = self.codec.new_stream(tokens, rate, time.time_ns())
        await self.source.create(sid, stream)
        return sid, stream

    def open(self, sid: str) -> Stream:
        """The stream for ``sid`` now, or ``ContractError`` (404 unknown, 410 expired)."""
        return self.codec.open(sid, time.time_ns(), self.cfg.replay_ttl, self.source.last_ns)

    async def stop(self, sid: str) -> None:
        """The stop button (docs/protocol.md, "Stop"): 404/410 as a read; 503 if the model is
        away. Stopping an answer that has ended, or was stopped, changes nothing."""
        await self.source.stop(sid, self.open(sid))

    async def feed(self, sid: str, stream: Stream, after: int) -> Stream | Answer:
        """What a reader resuming after ``after`` reads (``ContractError`` 404 or 503)."""
        return await self.source.open(sid, stream, after)


class TransportServer(Protocol):
    """The interface every ``servers.<transport>`` module provides."""

    NAME: str

    def settings(self, cfg: ServerConfig) -> dict[str, Any]:
        """Stack settings: ``effective`` (this run) and ``stack_defaults`` (out of the box)."""
        ...

    async def serve(self, ctx: Context, on_ready: Any) -> None:
        """Serve ``ctx.cfg.host:ctx.cfg.port`` until SIGTERM; call ``on_ready()`` once bound."""
        ...


def load(transport: str, stack: str = "stock") -> TransportServer:
    return transports.get(transport).server_module(stack)
