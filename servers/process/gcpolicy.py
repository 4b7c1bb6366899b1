"""How a server worker's cyclic garbage collector runs: ``--gc stock|tuned``, and its pauses.

Rules of this module:
- ``stock`` is CPython's default (thresholds 700, 10, 10). A full collection traverses every
  tracked object; a worker holding 10,000 connections tracks millions of them, and one full
  collection stops every stream in it for about a second.
- ``tuned`` keeps long-lived objects out of collections (Python docs, ``gc.freeze``): after
  start-up, and then every ``FREEZE_EVERY_S``, ``gc.freeze()`` moves every object alive so far
  to the permanent generation, which no collection traverses. New objects are still collected,
  in generations 0 and 1 (thresholds raised so they run less often) until the next freeze, and a
  connection's objects are frozen within seconds of its start. (A first version collected
  generation 1 before each freeze: measured, that was a 10 to 100 ms pause every 2 s at 10,000
  connections, worse than the stock collector.) The price: a reference cycle that becomes garbage
  after it was frozen is not reclaimed. Objects freed by reference counting (almost all of a
  closed connection's) are freed as always. ``gc_frozen`` in the counters shows the growth.
  It is read every ``COUNT_EVERY`` freezes, not each: ``gc.get_freeze_count()`` walks the
  permanent generation (33 ms at 3 million objects here, every stream of the worker waiting).
- Every collection's pause is counted in the worker's shared counters, by bucket
  (``PAUSE_BUCKETS_MS``), so the bench reads a pause distribution per step, summed over workers.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from servers.process import metrics as m

POLICIES = ("stock", "tuned")
FREEZE_EVERY_S = 2.0
TUNED_THRESHOLDS = (50_000, 50, 1_000)  # generation 0, 1, 2 (gc.set_threshold)
COUNT_EVERY = 15  # freezes between two reads of the frozen count (30 s)


def pause_bucket(ms: float) -> int:
    """The counter index of a pause of ``ms`` milliseconds."""
    for i, edge in enumerate(m.PAUSE_BUCKETS_MS):
        if ms < edge:
            return m.GC_PAUSES + i
    return m.GC_PAUSES + len(m.PAUSE_BUCKETS_MS)


def count_pauses(metrics: m.Metrics) -> None:
    """Time every collection (gc.callbacks) into ``metrics``: its bucket, and the total."""
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        us = (time.perf_counter() - started[0]) * 1e6
        metrics.add(pause_bucket(us / 1000))
        metrics.add(m.GC_PAUSE_US, int(us))
        if info.get("generation") == 2:
            metrics.add(m.GC_FULL)

    gc.callbacks.append(callback)


def apply(policy: str, metrics: m.Metrics) -> asyncio.Task[None] | None:
    """Set the policy in this worker, on its running loop; the freezer task, if any."""
    if policy not in POLICIES:
        raise ValueError(f"unknown gc policy {policy!r}: one of {', '.join(POLICIES)}")
    count_pauses(metrics)
    if policy == "stock":
        return None
    return tune(lambda frozen: metrics.add(m.GC_FROZEN, frozen - metrics.get(m.GC_FROZEN)))


def tune(on_freeze: Callable[[int], None] | None = None) -> asyncio.Task[None]:
    """``tuned`` in this process, on its running loop (a server worker, a load process); the
    freezer task. ``on_freeze`` gets the frozen count after the first freeze, then after every
    ``COUNT_EVERY``-th."""
    gc.set_threshold(*TUNED_THRESHOLDS)
    return asyncio.ensure_future(_freezer(on_freeze))


async def _freezer(on_freeze: Callable[[int], None] | None) -> None:
    n = 0
    while True:
        gc.freeze()  # O(1): the generations' lists are spliced onto the permanent one
        if on_freeze is not None and n % COUNT_EVERY == 0:
            on_freeze(gc.get_freeze_count())  # O(frozen objects): rarely (module rules)
        n += 1
        await asyncio.sleep(FREEZE_EVERY_S)


def settings(policy: str) -> dict[str, Any]:
    """What results.json records of the policy."""
    if policy == "stock":
        return {"gc": "stock", "thresholds": list(gc.get_threshold())}
    return {"gc": "tuned", "thresholds": list(TUNED_THRESHOLDS), "freeze_every_s": FREEZE_EVERY_S}
