"""One wake-up scheduler per process, so that no connection owns a timer per token.

Every reader waits for its next due time through ``Hub.sleep_until``. Waiters are grouped in
buckets of ``tick_ns`` (1 ms); the hub keeps a single loop timer armed for the earliest bucket,
and one timer callback wakes every reader whose bucket is due. A bucket is rounded up, so a
waiter is never woken before its time by the hub; the loop's own timer may still fire a little
early (libuv rounds to milliseconds), so callers re-read the clock before writing (docs/protocol.md:
"never sent before t").

On shutdown ``drain()`` wakes everyone with ``Draining`` so each transport can end its streams
the way its protocol prefers (WebSocket 1001, gRPC UNAVAILABLE, SSE end of response).
"""

from __future__ import annotations

import asyncio
import heapq
import time


class Draining(Exception):
    """The server is shutting down: end this stream so the client resumes elsewhere."""


class Hub:
    def __init__(self, tick_ns: int = 1_000_000) -> None:
        self.tick_ns = tick_ns
        self.draining = False
        self._buckets: dict[int, list[asyncio.Future[None]]] = {}
        self._keys: list[int] = []  # heap of bucket keys
        self._armed_key: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def sleep_until(self, wall_ns: int) -> asyncio.Future[None]:
        """A future done at or after ``wall_ns`` (``time.time_ns()`` scale)."""
        if self.draining:
            raise Draining()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut = loop.create_future()
        key = -(-wall_ns // self.tick_ns)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [fut]
            heapq.heappush(self._keys, key)
            if self._armed_key is None or key < self._armed_key:
                self._arm(key)
        else:
            bucket.append(fut)
        return fut

    def _arm(self, key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # in whole milliseconds, rounded up: uvloop's timers have 1 ms resolution and truncate,
        # so a sub-millisecond delay fired early and re-armed itself until its bucket (a spin)
        ms = -(-(key * self.tick_ns - time.time_ns()) // 1_000_000)
        assert self._loop is not None
        self._armed_key = key
        self._timer = self._loop.call_later(max(ms, 0) / 1e3, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed_key = None
        now_key = time.time_ns() // self.tick_ns
        keys, buckets = self._keys, self._buckets
        while keys and keys[0] <= now_key:
            for fut in buckets.pop(heapq.heappop(keys)):
                if not fut.done():
                    fut.set_result(None)
        if keys:
            self._arm(keys[0])

    def drain(self) -> None:
        """Wake every waiter with ``Draining``; later waits raise it at once."""
        self.draining = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for bucket in self._buckets.values():
            for fut in bucket:
                if not fut.done():
                    fut.set_exception(Draining())
        self._buckets.clear()
        self._keys.clear()
        self._armed_key = None


_hub: Hub | None = None


def get_hub() -> Hub:
    """The process's hub (one event loop per worker process)."""
    global _hub
    if _hub is None:
        _hub = Hub()
    return _hub
