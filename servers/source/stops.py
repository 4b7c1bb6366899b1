"""The stop button for derived streams (``--source derive``): which answers a user stopped, and
when, known to every worker process of the server (docs/protocol.md, "Stop").

Rules of this module:
- A stop is ``(seed, stopped_ns)``: the answer ends with the tokens due at ``stopped_ns``
  (``core.Stream.stopped``), so every worker that learns of it ends the same stream the same way.
- Workers share a table beside the metrics table (``<metrics table>.stops``, made by the
  supervisor): each worker appends only to its own ring, so no locks; a single process keeps its
  ring in anonymous memory. A ring holds the last ``RING`` stops of its worker.
- An entry read while its writer laps the ring (the reader a whole ring behind) is dropped, not
  read torn: the head is read again after the entries.
- A worker learns of another's stops when a read opens (``get``), and every ``POLL_S`` while it
  has readers of derived streams (one timer per process, not per reader): a stop made on
  another worker reaches a reader within about ``POLL_S``.
- Readers are followed by stream seed; a stop wakes them (``Follower.stop``) instead of waiting
  for their next due token.
- With ``--source llm`` the producer stops the answer and the log carries the end
  (``servers/source/replay.py``): this table is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import struct
from pathlib import Path
from typing import Protocol

from servers.process.metrics import MAX_WORKERS

RING = 4096  # stops a worker remembers (others fall out of the ring: use --source llm for more)
POLL_S = 0.005
_HEAD = struct.Struct("<q")
_ENTRY = struct.Struct("<Qq")  # seed, stopped_ns
_ROW = _HEAD.size + RING * _ENTRY.size


class Follower(Protocol):
    def stop(self, stopped_ns: int) -> None:
        """The answer this reader reads was stopped at ``stopped_ns``."""
        ...


def table_path(metrics_path: str) -> str:
    return metrics_path + ".stops"


def create_table(path: Path, workers: int) -> None:
    """The shared table: one ring per worker slot (64 KiB each)."""
    path.write_bytes(b"\0" * (max(1, min(workers, MAX_WORKERS)) * _ROW))


class Stops:
    """This worker's view of every stop: its own, and what it read of the others' rings."""

    def __init__(self, path: str | None = None, slot: int = 0, workers: int = 1) -> None:
        self.shared = bool(path) and os.path.exists(path or "")  # one worker too: restarts
        if self.shared and not 0 <= slot < workers:
            raise ValueError(f"stop table slot {slot} outside its {workers} worker(s)")
        size = max(1, min(workers, MAX_WORKERS)) * _ROW if self.shared else _ROW
        if self.shared:
            fd = os.open(path or "", os.O_RDWR)
            try:
                self._map = mmap.mmap(fd, size)
            finally:
                os.close(fd)
        else:
            self._map = mmap.mmap(-1, size)
        self.slot = slot if self.shared else 0
        self.workers = workers if self.shared else 1
        self._seen = [0] * self.workers  # entries read from each ring
        self.stopped: dict[int, int] = {}  # seed -> stopped_ns
        self.followers: dict[int, list[Follower]] = {}
        self._poller: asyncio.Task[None] | None = None

    def stop(self, seed: int, stopped_ns: int) -> int:
        """Record a stop made on this worker; the earliest stop of an answer wins."""
        stopped_ns = min(stopped_ns, self.stopped.get(seed, stopped_ns))
        base = self.slot * _ROW
        (head,) = _HEAD.unpack_from(self._map, base)
        _ENTRY.pack_into(self._map, base + _HEAD.size + (head % RING) * _ENTRY.size,
                         seed, stopped_ns)  # fmt: skip
        _HEAD.pack_into(self._map, base, head + 1)  # the entry first, then the head
        self._apply(seed, stopped_ns)
        return stopped_ns

    def get(self, seed: int) -> int | None:
        """When this answer was stopped (ns), or None."""
        if self.shared:
            self.refresh()
        return self.stopped.get(seed)

    def refresh(self) -> None:
        """Read what the other workers appended since last time."""
        m = self._map
        for w in range(self.workers):
            base = w * _ROW
            (head,) = _HEAD.unpack_from(m, base)
            seen = self._seen[w]
            if head == seen:
                continue
            self._seen[w] = head  # its own ring too: a restarted worker relearns its stops
            got = [(i, *_ENTRY.unpack_from(m, base + _HEAD.size + (i % RING) * _ENTRY.size))
                   for i in range(max(seen, head - RING), head)]  # fmt: skip
            (now,) = _HEAD.unpack_from(m, base)  # entries the writer passed meanwhile may be torn
            for i, seed, ns in got:
                if i >= now - RING:
                    self._apply(seed, ns)

    def _apply(self, seed: int, stopped_ns: int) -> None:
        if seed in self.stopped and self.stopped[seed] <= stopped_ns:
            return
        self.stopped[seed] = stopped_ns
        if len(self.stopped) > 4 * RING * self.workers:  # forget the oldest half
            for key in list(self.stopped)[: len(self.stopped) // 2]:
                del self.stopped[key]
        for follower in self.followers.get(seed, ()):
            follower.stop(stopped_ns)

    def follow(self, seed: int, follower: Follower) -> None:
        self.followers.setdefault(seed, []).append(follower)
        if self.shared and self.workers > 1 and self._poller is None:
            self._poller = asyncio.ensure_future(self._poll())

    def unfollow(self, seed: int, follower: Follower) -> None:
        followers = self.followers.get(seed)
        if followers is not None:
            with contextlib.suppress(ValueError):
                followers.remove(follower)
            if not followers:
                del self.followers[seed]

    async def _poll(self) -> None:
        try:
            while self.followers:
                await asyncio.sleep(POLL_S)
                self.refresh()
        finally:
            self._poller = None
