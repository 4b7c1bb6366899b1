"""Server counters shared by all worker processes, and their Prometheus text.

Each worker owns one row of a small shared-memory table (a file under /dev/shm made by the
supervisor) and only ever writes its own row, so no locks are needed; ``/metrics`` on any worker
sums every row, so one scrape reports the whole server. A single process uses anonymous memory.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("connections_open", "gauge", "Streaming connections (or waiting polls) open now."),
    ("tokens_sent_total", "counter", "Tokens written to clients."),
    ("resumes_total", "counter", "Stream reads that started after seq 0 (a resume)."),
    ("errors_total", "counter", "Requests answered with an error status."),
    ("requests_total", "counter", "Stream reads, polls and stream creations handled."),
    ("streams_created_total", "counter", "Streams created by the prompt POST or CreateStream."),
    ("gc_pauses_under_1ms_total", "counter", "Garbage collections that took under 1 ms."),
    ("gc_pauses_under_10ms_total", "counter", "Garbage collections of 1 to 10 ms."),
    ("gc_pauses_under_100ms_total", "counter", "Garbage collections of 10 to 100 ms."),
    ("gc_pauses_under_1s_total", "counter", "Garbage collections of 100 ms to 1 s."),
    ("gc_pauses_over_1s_total", "counter", "Garbage collections of 1 s or more."),
    ("gc_pause_us_total", "counter", "Time spent in garbage collections, microseconds."),
    ("gc_full_total", "counter", "Full (generation 2) collections."),
    ("gc_frozen", "gauge", "Objects frozen (--gc tuned: gc.freeze), read every 30 s."),
)
PAUSE_BUCKETS_MS = (1, 10, 100, 1000)  # the gc_pauses_* counters' upper edges
NAMES = tuple(c[0] for c in COUNTERS)
MAX_WORKERS = 256
_ROW = len(COUNTERS) * 8


def table_size() -> int:
    return MAX_WORKERS * _ROW


def create_table(path: Path) -> None:
    path.write_bytes(b"\0" * table_size())


class Metrics:
    """Attribute access to this worker's row: ``metrics.tokens_sent_total += n``."""

    def __init__(self, transport: str, path: str | None = None, slot: int = 0) -> None:
        if not 0 <= slot < MAX_WORKERS:
            raise ValueError(f"worker slot {slot} outside 0..{MAX_WORKERS - 1}")
        if path:
            fd = os.open(path, os.O_RDWR)
            try:
                self._map = mmap.mmap(fd, table_size())
            finally:
                os.close(fd)
        else:
            self._map = mmap.mmap(-1, table_size())
        self._all = memoryview(self._map).cast("q")
        self._base = slot * len(COUNTERS)
        self.transport = transport

    def add(self, index: int, n: int = 1) -> None:
        self._all[self._base + index] += n

    def get(self, index: int) -> int:
        """This worker's own value of a counter."""
        return self._all[self._base + index]

    def total(self, name: str) -> int:
        i = NAMES.index(name)
        n = len(COUNTERS)
        return sum(self._all[row * n + i] for row in range(MAX_WORKERS))

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        lines = []
        label = f'{{transport="{self.transport}"}}'
        for name, kind, help_text in COUNTERS:
            lines.append(f"# HELP tokenbench_{name} {help_text}")
            lines.append(f"# TYPE tokenbench_{name} {kind}")
            lines.append(f"tokenbench_{name}{label} {self.total(name)}")
        return "\n".join(lines) + "\n"


# Indices for the hot path: ``metrics.add(TOKENS, n)``.
OPEN, TOKENS, RESUMES, ERRORS, REQUESTS, CREATED = range(6)
GC_PAUSES = 6  # the first of len(PAUSE_BUCKETS_MS) + 1 pause buckets
GC_PAUSE_US, GC_FULL, GC_FROZEN = range(GC_PAUSES + len(PAUSE_BUCKETS_MS) + 1, len(COUNTERS))


def reset_slot(path: Path, slot: int) -> None:
    """Zero a dead worker's row, so its open connections stop counting."""
    with open(path, "r+b") as f:
        f.seek(slot * _ROW)
        f.write(b"\0" * _ROW)


def read_rows(path: str | Path, workers: int) -> list[dict[str, int]]:
    """Every worker's counters, from the table file (for the bench and tests; read-only)."""
    data = Path(path).read_bytes()
    view = memoryview(data).cast("q")
    n = len(COUNTERS)
    return [dict(zip(NAMES, view[row * n : row * n + n], strict=True)) for row in range(workers)]
