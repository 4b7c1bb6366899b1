"""The floor stack's pacing: one timer wheel per process, and a flow per reader with no task.

Rules of this module:
- It is servers/pacing/loop.py's loop turned inside out: the same cursor, due times (never before
  ``t``: docs/protocol.md), backlog fairness, idle heartbeats, stops, drain and counters, but
  driven by callbacks. A reader is a ``Flow``, not a coroutine: no task, no future per token.
- The ``Wheel`` keeps flows in buckets of ``tick_ns`` (1 ms), rounded up, and one loop timer
  for the earliest bucket. On each tick it runs every flow whose bucket is due. A flow run
  hands everything it decided to write, in order, to its ``emit`` in one call: one
  ``transport.write`` per connection per tick.
- It knows streams and clocks, not wires: a transport gives a ``pacing.Framing`` and an
  ``emit``. A catching-up reader writes ``limit`` tokens per tick and lets the others run.
- ``pause()``/``resume()`` are the transport's ``pause_writing``/``resume_writing``: a paused
  flow writes nothing, so a stalled reader costs what the transport's buffer and the kernel
  hold (docs/protocol.md, "What a reader that stops reading costs the server").
- ``drain()`` (SIGTERM) ends every flow without its end frame; ``on_end(drained=True)`` lets
  the transport end the stream its own way, and the client resumes elsewhere.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from servers.base import Context
from servers.pacing.hub import Draining
from servers.pacing.loop import Framing
from servers.process import metrics as m
from servers.source.answers import Answer
from servers.tokens.core import FAIR_SHARE, Stream

F = TypeVar("F")
LOG_WAIT_NS = 1_000_000_000  # a flow on a producer's log looks again at least every second


class Wheel:
    """The process's scheduler of flows (one event loop per worker)."""

    def __init__(self, tick_ns: int = 1_000_000) -> None:
        self.tick_ns = tick_ns
        self.flows: set[Flow[object]] = set()
        self.draining = False
        self._buckets: dict[int, list[Flow[object]]] = {}
        self._keys: list[int] = []
        self._armed: int | None = None
        self._timer: asyncio.TimerHandle | None = None

    def schedule(self, flow: Flow[object], wall_ns: int) -> None:
        """Run ``flow`` at or after ``wall_ns``; a later call replaces an earlier one."""
        key = -(-wall_ns // self.tick_ns)
        flow.key = key
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [flow]
            heapq.heappush(self._keys, key)
            if self._armed is None or key < self._armed:
                self._arm(key)
        else:
            bucket.append(flow)

    def _arm(self, key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = key
        # in whole milliseconds, rounded up: the loop's timers have 1 ms resolution (libuv), and
        # a timer that fires before its bucket only arms itself again (a spin)
        ms = -(-(key * self.tick_ns - time.time_ns()) // 1_000_000)
        self._timer = asyncio.get_running_loop().call_later(max(ms, 0) / 1e3, self._tick)

    def _tick(self) -> None:
        self._timer = self._armed = None
        now = time.time_ns()
        now_key = now // self.tick_ns
        keys, buckets = self._keys, self._buckets
        while keys and keys[0] <= now_key:
            key = heapq.heappop(keys)
            for flow in buckets.pop(key):
                if flow.key == key:  # not rescheduled since
                    flow.key = None
                    flow.run(now)
        if keys:
            self._arm(keys[0])

    def drain(self) -> None:
        """SIGTERM: every flow ends now, without its end frame."""
        self.draining = True
        for flow in list(self.flows):
            flow.drain()


class Flow(Generic[F]):
    """One reader's stream, from ``after + 1`` to the end, on the wheel."""

    def __init__(
        self,
        ctx: Context,
        wheel: Wheel,
        stream: Stream | Answer,
        after: int,
        framing: Framing[F],
        emit: Callable[[list[F]], None],
        on_end: Callable[[bool], None],
        limit: int = FAIR_SHARE,
        idle_s: float | None = None,
    ) -> None:
        self.ctx, self.wheel, self.stream, self.framing = ctx, wheel, stream, framing
        self.emit, self.on_end, self.limit = emit, on_end, limit
        self.cursor = stream.cursor(after)
        self.idle_ns = None if idle_s is None else int(idle_s * 1e9)
        self.flush_ns = int(ctx.cfg.flush_ms * 1e6)
        self.whole = stream  # as opened: a stop cuts from it
        self.key: int | None = None  # its bucket on the wheel
        self.paused = self.closed = False
        self.last_write = 0
        self.follow = isinstance(stream, Stream) and not stream.stopped_ns

    def start(self) -> None:
        self.ctx.metrics.add(m.OPEN)
        self.wheel.flows.add(self)  # type: ignore[arg-type]
        if self.follow:
            assert isinstance(self.stream, Stream)
            self.ctx.stops.follow(self.stream.seed, self)
            if (known := self.ctx.stops.stopped.get(self.stream.seed)) is not None:
                self.stop(known)
        first = self.framing.start()
        self.last_write = now = time.time_ns()
        self.run(now, [] if first is None else [first])

    def run(self, now: int, out: list[F] | None = None) -> None:
        """Write what is due at ``now`` (one ``emit``), then wait on the wheel for the next."""
        if self.closed:
            return
        out = [] if out is None else out
        if self.paused:
            if out:
                self.emit(out)
            return
        cursor, framing = self.cursor, self.framing
        try:
            while not cursor.done:
                seqs = cursor.take(now, self.limit)
                if seqs:
                    self.ctx.metrics.add(m.TOKENS, len(seqs))
                    out.append(framing.tokens(self.stream, seqs))  # type: ignore[arg-type]
                    self.last_write = now
                    if len(seqs) == self.limit:  # a backlog: the others run first
                        self.emit(out)
                        self.wheel.schedule(self, now)  # type: ignore[arg-type]
                        return
                    continue
                if self.idle_ns is not None and now - self.last_write >= self.idle_ns:
                    out.append(framing.heartbeat())
                    self.last_write = now
                self._wait(now)
                if out:
                    self.emit(out)
                return
        except Draining:  # a log that cannot give what its end names: the resume decides
            if out:
                self.emit(out)
            self._finish(drained=True)
            return
        end = framing.end(self.stream)  # type: ignore[arg-type]
        if end is not None:
            out.append(end)
        self.emit(out)
        self._finish(drained=False)

    def _wait(self, now: int) -> None:
        wake = self.cursor.next_due_ns()
        if wake is None:  # a producer's log: woken when tokens arrive, or at a bound
            fut = asyncio.get_running_loop().create_future()
            fut.add_done_callback(lambda _: self.closed or self.run(time.time_ns()))
            self.cursor.watch(fut)  # type: ignore[union-attr]
            wake = now + LOG_WAIT_NS
        elif self.flush_ns:
            wake = -(-wake // self.flush_ns) * self.flush_ns
        if self.idle_ns is not None:
            wake = min(wake, self.last_write + self.idle_ns)
        self.wheel.schedule(self, wake)  # type: ignore[arg-type]

    def stop(self, stopped_ns: int) -> None:
        """``stops.Follower``: the user stopped this derived stream (the earliest stop wins)."""
        whole = self.whole
        assert isinstance(whole, Stream)
        self.stream = self.cursor.stream = whole.stopped(stopped_ns, self.cursor.next_seq)  # type: ignore[union-attr]
        if not self.closed and not self.paused:
            self.wheel.schedule(self, time.time_ns())  # type: ignore[arg-type]

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        if not self.closed:
            self.wheel.schedule(self, time.time_ns())  # type: ignore[arg-type]

    def drain(self) -> None:
        if not self.closed:
            self._finish(drained=True)

    def close(self) -> None:
        """The connection is gone: forget the flow."""
        if not self.closed:
            self._release()

    def _finish(self, drained: bool) -> None:
        if self.closed:  # its transport ended it in ``emit`` (a long poll's one answer)
            return
        on_end = self.on_end
        self._release()
        on_end(drained)

    def _release(self) -> None:
        self.closed = True
        self.key = None
        # ``emit`` and ``on_end`` are the transport's closures, which hold this flow: a cycle
        # per stream, never freed under a frozen collector (servers/process/gcpolicy.py)
        self.emit = self.on_end = _released
        self.wheel.flows.discard(self)  # type: ignore[arg-type]
        self.ctx.metrics.add(m.OPEN, -1)
        if self.follow:
            assert isinstance(self.whole, Stream)
            self.ctx.stops.unfollow(self.whole.seed, self)


def _released(_: object) -> None:
    """A closed flow's ``emit`` and ``on_end``."""


_wheel: Wheel | None = None


def get_wheel() -> Wheel:
    """The process's wheel."""
    global _wheel
    if _wheel is None:
        _wheel = Wheel()
    return _wheel
