"""The pacing loop every transport shares: which tokens to write, when, and when to stop.

Rules of this module:
- It knows streams and clocks, not wires. A transport hands it a ``Framing`` (how an opening,
  a batch of tokens, a heartbeat and the end are framed) and writes each frame the loop yields,
  in order; nothing here touches a socket.
- Cursor, due times (never before ``t``: docs/protocol.md), hub wake-ups, backlog fairness,
  idle heartbeats, draining and the server's counters live here and nowhere else.
- A batch holds every token due now, at most ``limit``. A reader catching up on a backlog gets
  ``limit`` tokens per write and then lets the other connections run (one loop turn).
- ``idle_s``: a heartbeat frame when nothing was written for that long (SSE's comment, or a
  long poll's empty answer at its timeout). None: the transport keeps alive by itself (WebSocket
  ping, HTTP/2 PING).
- ``--flush-ms F`` (``ServerConfig.flush_ms``): a reader waits for the next multiple of F ms
  after its next due time, so each write carries every token that fell due in the last F ms
  (and every connection of the process wakes on the same grid). A token then waits at most F ms;
  latency, measured against ``t``, shows it.
- ``--source llm``: the stream is an ``answers.Answer`` (tokens the producer emitted, as they
  arrive) instead of a derived ``core.Stream``; its cursor has no due time for a token not yet
  produced, so the reader waits for the answer to grow (or the heartbeat, or the drain).
- Stop (docs/protocol.md, "Stop"): a derived stream's reader follows its seed in
  ``ctx.stops``; a stop there truncates the stream the reader holds and wakes it, so the end
  frame goes out at once. An answer from the producer ends through its log instead.
- On shutdown (``Draining``) the loop stops without the end frame and sets ``drained``, so the
  transport can end the stream its own way (WebSocket 1001, gRPC UNAVAILABLE, SSE end of
  response); the client resumes elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Generic, Protocol, TypeVar

from servers.base import Context
from servers.pacing.hub import Draining
from servers.process import metrics as m
from servers.source.answers import Answer
from servers.tokens.core import FAIR_SHARE, Stream

F = TypeVar("F")


class Framing(Protocol[F]):
    """How one transport frames what the loop decides to write."""

    def start(self) -> F | None:
        """The opening frame (SSE's ``retry:``), or None."""
        ...

    def tokens(self, stream: Stream, seqs: range) -> F:
        """One write carrying tokens ``seqs`` (never empty), in order."""
        ...

    def heartbeat(self) -> F:
        """Written after ``idle_s`` without a write."""
        ...

    def end(self, stream: Stream) -> F | None:
        """Written after the last token (None: the stream just ends)."""
        ...


class Pacer(Generic[F]):
    """One reader's stream, from ``after + 1`` to the end: ``async for frame in pacer.frames()``.

    A consumer that stops early must close the iterator (``contextlib.aclosing``), so that the
    connection stops counting as open at once.
    """

    def __init__(
        self,
        ctx: Context,
        stream: Stream | Answer,
        after: int,
        framing: Framing[F],
        limit: int = FAIR_SHARE,
        idle_s: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.ctx, self.stream, self.framing = ctx, stream, framing
        self.cursor = stream.cursor(after)
        self.limit = limit
        self.idle_ns = None if idle_s is None else int(idle_s * 1e9)
        self.on_wait = on_wait  # called once, before the first wait for a due time
        self.drained = False
        self.ended = False  # the end frame was handed out
        self.flush_ns = int(ctx.cfg.flush_ms * 1e6)
        self.waiting: asyncio.Future[None] | None = None  # the current wait for a due time
        self.whole = stream  # as opened: an earlier stop learned later cuts from it again

    def stop(self, stopped_ns: int) -> None:
        """``stops.Follower``: the user stopped this derived stream at ``stopped_ns`` (an
        earlier stop than one applied already cuts again: the earliest wins everywhere)."""
        whole = self.whole
        assert isinstance(whole, Stream)
        self.stream = self.cursor.stream = whole.stopped(stopped_ns, self.cursor.next_seq)  # type: ignore[union-attr]
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(None)

    async def frames(self) -> AsyncIterator[F]:
        ctx, stream, cursor, framing = self.ctx, self.stream, self.cursor, self.framing
        hub, metrics, limit, idle_ns = ctx.hub, ctx.metrics, self.limit, self.idle_ns
        flush_ns = self.flush_ns
        metrics.add(m.OPEN)
        follow = isinstance(stream, Stream) and not stream.stopped_ns
        if follow:
            ctx.stops.follow(stream.seed, self)
            if (known := ctx.stops.stopped.get(stream.seed)) is not None:
                self.stop(known)  # stopped between the read's opening and now
        try:
            first = framing.start()
            if first is not None:
                yield first
            last_write = time.time_ns()
            while not cursor.done:
                now = time.time_ns()
                seqs = cursor.take(now, limit)
                if seqs:
                    metrics.add(m.TOKENS, len(seqs))
                    yield framing.tokens(self.stream, seqs)
                    last_write = now
                    if len(seqs) > 1:  # a catching-up reader lets the others run
                        if hub.draining:
                            raise Draining()
                        await asyncio.sleep(0)
                    continue
                if idle_ns is not None and now - last_write >= idle_ns:
                    yield framing.heartbeat()
                    last_write = now
                    continue
                if self.on_wait is not None:
                    self.on_wait()
                    self.on_wait = None
                wake = cursor.next_due_ns()
                if wake is None:  # a log: wait for the next token to arrive
                    # at most 1 s: a future woken early stays in its hub bucket until then
                    until = now + 1_000_000_000
                    fut = hub.sleep_until(min(until, last_write + idle_ns) if idle_ns else until)
                    cursor.watch(fut)
                    await fut
                    if flush_ns:  # then on the write grid, as for a derived stream
                        await hub.sleep_until(-(-time.time_ns() // flush_ns) * flush_ns)
                    continue
                if flush_ns:
                    wake = -(-wake // flush_ns) * flush_ns
                if idle_ns is not None:
                    wake = min(wake, last_write + idle_ns)
                self.waiting = hub.sleep_until(wake)
                await self.waiting
            end = framing.end(self.stream)
            self.ended = True
            if end is not None:
                yield end
        except Draining:
            self.drained = True
        finally:
            metrics.add(m.OPEN, -1)
            if follow:
                ctx.stops.unfollow(stream.seed, self)
