"""Where a backend's tokens come from, and where a resume is answered from (``--source``,
``--replay``; docs/protocol.md, "Sources").

- ``derive`` (the default): any process derives any stream from its id (``core.Stream``). A
  benchmark convenience: a resume can never miss.
- ``llm`` + ``pod``: the producer (``servers.topology.producer``) sends the answer to the backend
  whose
  prompt POST started it, and only that backend holds it, in its memory, for ``replay_ttl``
  after its last token (what a FastAPI app without shared state does). A read on another
  backend is refused with 404 and says why: never a silent gap.
- ``llm`` + ``redis``: the producer writes each answer to a Redis stream (``tb:<id>``, entry id
  ``0-<seq+1>``); any backend answers a read from it: the backlog by ``XRANGE``, then the live
  tail by ``XREAD BLOCK`` (redis.io/docs/latest/commands/xread), one blocking read per group of
  answers, not per reader; a backend follows an answer once for all its readers (a poller's
  next poll finds it current, with no new read of the log). Redis unreachable is 503 (gRPC
  UNAVAILABLE): clients retry.

Stop (docs/protocol.md, "Stop"): ``derive`` records it in the worker's stop table
(``servers/source/stops.py``); ``llm`` sends ``stop <id>`` to the producer, which ends the answer
in its
log (pod: a ``<id> end <t_ns> <final>`` line; redis: an entry ``0-<final+1>`` with fields ``t``
and ``e``), so every reader of it, on any backend, ends where the model stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any, Protocol

from servers.source.answers import Answer
from servers.source.stops import Stops
from servers.tokens.core import ContractError, ErrorKind, Stream
from servers.tokens.llm import LlmShape
from servers.topology.producer import redis_key

TAIL_KEYS = 256  # answers one XREAD BLOCK follows
TAIL_BLOCK_MS = 25  # how long one XREAD waits: a newly followed answer joins within this


class Source(Protocol):
    async def start(self) -> None: ...

    async def create(self, sid: str, stream: Stream) -> None:
        """The prompt POST made ``sid``: have its tokens produced."""
        ...

    async def open(self, sid: str, stream: Stream, after: int) -> Stream | Answer:
        """What a reader resuming after ``after`` reads: a derived stream or an answer."""
        ...

    def last_ns(self, stream: Stream) -> int:
        """When the answer's last token is due at the latest (the replay window starts then)."""
        ...

    async def stop(self, sid: str, stream: Stream) -> None:
        """The user pressed stop: end the answer where its generation is now."""
        ...


class Derive:
    def __init__(self, stops: Stops) -> None:
        self.stops = stops

    async def start(self) -> None:
        return None

    async def create(self, sid: str, stream: Stream) -> None:
        return None

    async def open(self, sid: str, stream: Stream, after: int) -> Stream:
        stopped_ns = self.stops.get(stream.seed)
        return stream if stopped_ns is None else stream.stopped(stopped_ns, after + 1)

    async def stop(self, sid: str, stream: Stream) -> None:
        now = time.time_ns()
        if self.stops.get(stream.seed) is not None:
            return  # stopped already (on any worker): the first stop stands
        if stream.due_count(now) < stream.tokens:  # else the answer had ended: nothing to stop
            self.stops.stop(stream.seed, now)

    def last_ns(self, stream: Stream) -> int:
        return stream.last_due_ns


class ProducerLink(asyncio.Protocol):
    """This backend process's connection to the producer: ``start`` out, tokens in (pod)."""

    def __init__(self, on_token: Any, on_end: Any) -> None:
        self.on_token, self.on_end = on_token, on_end
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        on_token = self.on_token
        for line in lines:
            sid, seq, t, text = line.decode().split(" ", 3)
            if seq == "end":
                self.on_end(sid, int(text), int(t))
            else:
                on_token(sid, int(seq), int(t), text)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class _Llm:
    """What both replays share: the producer link, the LLM's timing, the replay window."""

    def __init__(self, producer: str, shape: LlmShape, replay_ttl: float) -> None:
        host, _, port = producer.rpartition(":")
        self.addr = (host, int(port))
        self.shape, self.replay_ttl = shape, replay_ttl
        self.link: ProducerLink | None = None
        self.linking: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._connect()
        self.linking = asyncio.ensure_future(self._keep_linked())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, self.link = await loop.create_connection(
            lambda: ProducerLink(self.on_token, self.on_end), *self.addr
        )

    async def _keep_linked(self) -> None:
        while True:
            assert self.link is not None
            await self.link.lost
            self.link = None
            self.on_link_lost()
            while self.link is None:
                with contextlib.suppress(OSError):
                    await self._connect()
                if self.link is None:
                    await asyncio.sleep(0.2)

    def on_token(self, sid: str, seq: int, t: int, text: str) -> None:
        return None

    def on_end(self, sid: str, final: int, t: int) -> None:
        return None

    def on_link_lost(self) -> None:
        print("backend: lost the producer; reconnecting", file=sys.stderr, flush=True)

    async def create(self, sid: str, stream: Stream) -> None:
        link = self.link
        if link is None or link.transport is None or link.transport.is_closing():
            raise ContractError(ErrorKind.UNAVAILABLE, "the model is unreachable; retry")
        link.transport.write(f"start {sid}\n".encode())

    async def stop(self, sid: str, stream: Stream) -> None:
        link = self.link
        if link is None or link.transport is None or link.transport.is_closing():
            raise ContractError(ErrorKind.UNAVAILABLE, "the model is unreachable; retry")
        link.transport.write(f"stop {sid}\n".encode())

    def last_ns(self, stream: Stream) -> int:
        return stream.created_ns + int(self.shape.longest_s(stream) * 1e9)


class PodReplay(_Llm):
    """Answers held in this process's memory, started here or not at all."""

    def __init__(self, producer: str, shape: LlmShape, replay_ttl: float) -> None:
        super().__init__(producer, shape, replay_ttl)
        self.answers: dict[str, Answer] = {}

    async def create(self, sid: str, stream: Stream) -> None:
        await super().create(sid, stream)
        self.answers[sid] = Answer(stream, sid)
        self._forget_old()

    def on_token(self, sid: str, seq: int, t: int, text: str) -> None:
        answer = self.answers.get(sid)
        if answer is not None and answer.add(seq, t, text):
            answer.wake()

    def on_end(self, sid: str, final: int, t: int) -> None:
        answer = self.answers.get(sid)
        if answer is not None:
            answer.stop(final, t)

    async def open(self, sid: str, stream: Stream, after: int) -> Answer:
        answer = self.answers.get(sid)
        if answer is None:
            raise ContractError(ErrorKind.NOT_FOUND, "answer not held by this backend (replay "
                                "pod: only the backend that created it can serve it)")  # fmt: skip
        return answer

    async def stop(self, sid: str, stream: Stream) -> None:
        await self.open(sid, stream, -1)  # 404 here as for a read: the producer's other pod
        await super().stop(sid, stream)

    def _forget_old(self) -> None:
        """Drop answers whose replay window has passed (checked at most once per 1,000)."""
        if len(self.answers) % 1000:
            return
        now = time.time_ns()
        ttl = int(self.replay_ttl * 1e9)
        self.answers = {
            k: a for k, a in self.answers.items() if now <= self.last_ns(a.stream) + ttl
        }


class RedisReplay(_Llm):
    """Answers read from the shared log, by any backend."""

    def __init__(self, producer: str, shape: LlmShape, replay_ttl: float, url: str) -> None:
        super().__init__(producer, shape, replay_ttl)
        import redis.asyncio as aioredis

        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=2.0)
        self.tails: list[Tail] = []
        self.following: dict[str, Answer] = {}  # answers a tail keeps current, by id

    async def open(self, sid: str, stream: Stream, after: int) -> Answer:
        from redis.exceptions import RedisError

        held = self.following.get(sid)
        if held is not None and not held.complete and not held.broken and held.base <= after + 1:
            return held  # followed already: current up to the tail's last read
        if len(self.following) >= 4 * TAIL_KEYS:
            self.following = {k: a for k, a in self.following.items() if not a.complete}
        answer = Answer(stream, redis_key(sid), base=after + 1)
        try:
            backlog = await self.redis.xrange(answer.key, min=f"0-{after + 2}", max="+")
        except (OSError, RedisError):
            raise ContractError(
                ErrorKind.UNAVAILABLE, "the replay log is unreachable; retry"
            ) from None
        for entry_id, fields in backlog:
            take(answer, entry_id, fields)
        if answer.broken or (not backlog and time.time_ns() > self.last_ns(stream)):
            raise ContractError(ErrorKind.GONE, f"the replay log no longer holds seq {after + 1} "
                                "of this answer (Redis lost it)")  # fmt: skip
        if not answer.complete:
            tail = next((t for t in self.tails if len(t.keys) < TAIL_KEYS), None)
            if tail is None:
                tail = Tail(self.redis)
                self.tails.append(tail)
            tail.follow(answer)
            self.following[sid] = answer
        return answer


def take(answer: Answer, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
    """One entry of the log: a token, or the end of a stopped answer (field ``e``)."""
    seq = int(entry_id.split(b"-")[1]) - 1
    if b"e" in fields:
        answer.stop(int(fields[b"e"]), int(fields[b"t"]))
    else:
        answer.add(seq, int(fields[b"t"]), fields[b"x"].decode())


class Tail:
    """One ``XREAD BLOCK`` loop over up to ``TAIL_KEYS`` answers; each gets what is new."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.keys: dict[bytes, list[Answer]] = {}
        self.more = asyncio.Event()
        self.task = asyncio.ensure_future(self.run())

    def follow(self, answer: Answer) -> None:
        self.keys.setdefault(answer.key.encode(), []).append(answer)
        self.more.set()

    async def run(self) -> None:
        from redis.exceptions import RedisError

        while True:
            if not self.keys:
                self.more.clear()
                await self.more.wait()
            streams = {k: f"0-{min(a.available for a in v)}" for k, v in self.keys.items()}
            try:
                got = await self.redis.xread(streams, count=1000, block=TAIL_BLOCK_MS)
            except (OSError, RedisError):
                await asyncio.sleep(0.2)  # the log is away: readers wait, heartbeats go on
                continue
            for key, entries in got or ():
                for answer in self.keys.get(key, ()):
                    for entry_id, fields in entries:
                        take(answer, entry_id, fields)
                    answer.wake()
            for key in [k for k, v in self.keys.items() if all(a.complete for a in v)]:
                del self.keys[key]


def make(cfg: Any, stops: Stops) -> Source:
    """The source a server's configuration asks for (``ServerConfig``)."""
    if cfg.source == "derive":
        return Derive(stops)
    if not cfg.producer or (cfg.replay == "redis" and not cfg.redis):
        raise ValueError("source llm needs the producer's address (and Redis's, with replay "
                         "redis): servers.topology.topology starts them and tells the "
                         "backends")  # fmt: skip
    if cfg.replay == "pod":
        return PodReplay(cfg.producer, cfg.llm, cfg.replay_ttl)
    return RedisReplay(cfg.producer, cfg.llm, cfg.replay_ttl, cfg.redis)
