"""The simulated LLM (``--source llm``): one process that generates each answer exactly once.

``python -m servers.topology.producer CONFIG_JSON READY_FD``, started by
``servers.topology.topology``, never by
hand. Backends connect over TCP and send ``start <id>`` lines (docs/protocol.md, "Sources"). The
producer emits the answer's tokens with an LLM's timing (``servers.tokens.llm.LlmShape``), ``t``
being
the emission time, into the replay log of the run:

- ``pod``: back over the connection of the backend that started the answer, one line a token,
  ``<id> <seq> <t_ns> <text as JSON>``. That backend alone holds it; if its connection goes,
  the answer is abandoned, as an LLM call dies with the pod that made it.
- ``redis``: ``XADD tb:<id> 0-<seq+1> t <t_ns> x <text as JSON>`` (Redis Streams, an explicit
  id so that a stream offset is a seq), trimmed by length and expired ``replay_ttl`` after the
  last write. Writes that fail (Redis restarting) are kept and retried in order: the model does
  not stop because the log is away.

A second ``start`` for an answer already started is ignored: each answer is made once.

``stop <id>`` (the user pressed stop, on any backend): the answer's generation is cancelled
and its end goes into the log after the last token made: ``<id> end <t_ns> <final>`` to the
pod that started it, or ``XADD tb:<id> 0-<final+1> t <t_ns> e <final>``; ``t`` is when the
model stopped. A stop for an answer that has ended, or is unknown here, is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from servers.pacing.hub import Hub
from servers.tokens import texts
from servers.tokens.core import DEFAULT_REPLAY_TTL, MAX_TOKENS, Codec, ContractError
from servers.tokens.llm import LlmShape

REDIS_PREFIX = "tb:"


@dataclass
class ProducerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    replay: str = "pod"  # "pod" or "redis"
    redis: str | None = None  # redis://host:port, with replay "redis"
    shape: LlmShape = field(default_factory=LlmShape)
    replay_ttl: float = DEFAULT_REPLAY_TTL
    secret: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.shape, dict):
            self.shape = LlmShape(**self.shape)
        if self.replay not in ("pod", "redis"):
            raise ValueError(f"replay must be pod or redis, not {self.replay!r}")
        if self.replay == "redis" and not self.redis:
            raise ValueError("replay redis needs a Redis URL")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def redis_key(sid: str) -> str:
    return REDIS_PREFIX + sid


class Producer:
    def __init__(self, cfg: ProducerConfig) -> None:
        self.cfg = cfg
        self.codec = Codec(cfg.secret.encode())
        self.hub = Hub()
        self.started: dict[str, float] = {}  # id -> monotonic start, for "made once"
        self.tasks: set[asyncio.Task[None]] = set()
        self.pending: list[tuple[str, int, int, str | None]] = []  # Redis writes (None: end)
        self.making: dict[str, tuple[asyncio.Task[None], BackendConnection]] = {}
        self.made: dict[str, int] = {}  # tokens emitted so far, of the answers being made
        # stops of valid ids not started here (yet): a start that comes later ends at 0 tokens
        self.early: dict[str, int] = {}
        self.keep_s: dict[str, int] = {}  # a stopped answer's log lives to its replay window
        self.flushing = False
        self.redis: Any = None
        self.log_down = False
        self.flusher: asyncio.Future[None] | None = None

    async def setup(self) -> None:
        if self.cfg.replay == "redis":
            import redis.asyncio as aioredis

            self.redis = aioredis.Redis.from_url(self.cfg.redis)

    def start(self, sid: str, conn: BackendConnection) -> None:
        if sid in self.started:
            return
        try:
            stream = self.codec.decode(sid)
        except ContractError:
            print(f"producer: refused an unknown id from {conn.peer}", file=sys.stderr)
            return
        self.started[sid] = time.monotonic()
        if (stopped_ns := self.early.pop(sid, None)) is not None:  # stopped before it began
            self._end(sid, stream, conn, 0, stopped_ns)
            return
        task = asyncio.ensure_future(self.generate(sid, stream, conn))
        self.making[sid] = (task, conn)
        self.made[sid] = 0
        task.add_done_callback(lambda _: (self.making.pop(sid, None), self.made.pop(sid, None)))
        self.tasks.add(task)
        conn.answers.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(conn.answers.discard)

    async def generate(self, sid: str, stream: Any, conn: BackendConnection) -> None:
        due = time.time_ns()
        for seq, gap in enumerate(self.cfg.shape.gaps(stream)):
            due += int(gap * 1e9)
            if due > time.time_ns():
                await self.hub.sleep_until(due)
            text = texts.text_json(stream.seed, seq)
            self.made[sid] = seq + 1
            self.emit(sid, conn, seq, time.time_ns(), text)

    def emit(self, sid: str, conn: BackendConnection, seq: int, t: int, text: str | None) -> None:
        """Token ``seq`` (``text`` None: the end, after ``seq`` tokens) into the run's log."""
        if self.cfg.replay == "pod":
            conn.emit(sid, "end" if text is None else seq, t, str(seq) if text is None else text)
            return
        self.pending.append((sid, seq, t, text))
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    def stop(self, sid: str) -> None:
        """The user stopped ``sid``: no more tokens; its end goes after the last one made. A
        stop that comes before its start (another backend's link was faster) is kept."""
        making = self.making.pop(sid, None)
        if making is None:
            if sid not in self.started and len(self.early) < 100_000:
                with contextlib.suppress(ContractError):
                    self.codec.decode(sid)  # only ids of ours
                    self.early[sid] = time.time_ns()
            return  # else ended already
        task, conn = making
        task.cancel()
        self._end(sid, self.codec.decode(sid), conn, self.made.pop(sid, 0), time.time_ns())

    def _end(self, sid: str, stream: Any, conn: BackendConnection, final: int, at: int) -> None:
        """Write the end of a stopped answer; its log is kept to the answer's replay window
        (its latest possible end plus ``replay_ttl``), not ``replay_ttl`` from the stop."""
        left_s = (stream.created_ns + self.cfg.shape.longest_s(stream) * 1e9 - at) / 1e9
        self.keep_s[sid] = int(self.cfg.replay_ttl + max(0.0, left_s)) + 1
        self.emit(sid, conn, final, at, None)

    def _flush_soon(self) -> None:
        self.flusher = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Write what is pending to Redis in one pipeline a loop turn; on failure retry."""
        from redis.exceptions import RedisError  # here: redis loads only where it is used

        while self.pending:
            batch, self.pending = self.pending, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for sid, seq, t, text in batch:
                        fields = {"t": t, "e": seq} if text is None else {"t": t, "x": text}
                        pipe.xadd(redis_key(sid), fields, id=f"0-{seq + 1}",  # type: ignore[arg-type]
                                  maxlen=MAX_TOKENS, approximate=True)  # fmt: skip
                    for sid in {b[0] for b in batch}:
                        keep = self.keep_s.get(sid, int(self.cfg.replay_ttl) + 1)
                        pipe.expire(redis_key(sid), keep)
                    await pipe.execute(raise_on_error=False)  # a retried XADD may exist already
            except (OSError, RedisError) as exc:
                self.pending = batch + self.pending
                if not self.log_down:
                    print(f"producer: Redis unavailable ({type(exc).__name__}); retrying",
                          file=sys.stderr, flush=True)  # fmt: skip
                self.log_down = True
                await asyncio.sleep(0.2)
                continue
            self.log_down = False
        self.flusher: asyncio.Future[None] | None = None
        self.flushing = False

    async def prune(self) -> None:
        """Forget answers long finished, so "made once" stays bounded."""
        keep = self.cfg.replay_ttl + 3600
        while True:
            await asyncio.sleep(30)
            cutoff = time.monotonic() - keep
            self.started = {k: v for k, v in self.started.items() if v > cutoff}
            self.keep_s = {k: v for k, v in self.keep_s.items() if k in self.started}
            self.early = {k: v for k, v in self.early.items() if v > time.time_ns() - 3600e9}


class BackendConnection(asyncio.Protocol):
    """One backend process's connection: ``start`` lines in, token lines out (pod replay)."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.out: list[str] = []
        self.answers: set[asyncio.Task[None]] = set()
        self.peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = str(transport.get_extra_info("peername"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            op, _, arg = line.decode("ascii", "replace").partition(" ")
            if op == "start" and arg:
                self.producer.start(arg.strip(), self)
            elif op == "stop" and arg:
                self.producer.stop(arg.strip())
        if len(self.buf) > 4096:  # not a backend
            assert self.transport is not None
            self.transport.close()

    def emit(self, sid: str, seq: int | str, t: int, text: str) -> None:
        if not self.out:
            asyncio.get_running_loop().call_soon(self._write)
        self.out.append(f"{sid} {seq} {t} {text}\n")

    def _write(self) -> None:
        out, self.out = self.out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write("".join(out).encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.producer.cfg.replay == "pod":
            for task in list(self.answers):  # the pod that asked is gone: so is its answer
                task.cancel()


async def main_async(cfg: ProducerConfig, ready_fd: int) -> None:
    producer = Producer(cfg)
    await producer.setup()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: BackendConnection(producer), cfg.host, cfg.port)
    port = server.sockets[0].getsockname()[1]
    os.write(ready_fd, f"{port}\n".encode())
    os.close(ready_fd)
    pruner = asyncio.ensure_future(producer.prune())
    stop = loop.create_future()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    pruner.cancel()
    server.close()
    with contextlib.suppress(Exception):
        if producer.pending:
            await asyncio.wait_for(producer.flush(), 2.0)


def main() -> None:
    from servers.process.worker import die_with_parent

    cfg = ProducerConfig(**json.loads(sys.argv[1]))
    die_with_parent()
    import uvloop

    uvloop.run(main_async(cfg, int(sys.argv[2])))


if __name__ == "__main__":
    main()
