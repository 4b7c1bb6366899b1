"""The machine's yardstick: what the elementary work of a token costs on this machine, today.

This project's machine kind varies in speed from day to day by up to 3x, so a figure means
little without the speed it was measured at. Every bench and faults run measures, before and
after its load (a few seconds each):

- ``syscall_us``: the kernel's CPU for one small write and one read over loopback TCP (40-byte
  messages, one connection, the process's system time);
- ``python_us``: CPU for the Python a server spends framing one token (``Stream.payload`` and an
  SSE event, encoded), in a hot loop;
- ``unit_us``: their sum, the CPU cost of a "reference token". CPU per token is normalised by
  it (``cpu per token / unit_us``);
- ``wall_us``: the wall time both loops took per token, on the server's cores. It also sees what
  CPU time cannot: a hypervisor's steal, a slower clock, another process on the same core.
  Capacity (users per core) is normalised by it (``users per core x wall_us``).

Both are stated against a reference machine (``REFERENCE_*``), so normalised figures look like
raw ones on a good day (docs/results-schema.md, ``machine.yardstick``).

Each figure is measured five times, interleaved; median, minimum, maximum and spread are kept.
The units use the minimum: interference only ever adds time, so the fastest repeat is the
machine's speed (the reasoning of Python's ``timeit``). A yardstick whose before and after
differ by more than 10 % says the machine changed speed during the run (``drift``), and the
figures normalised by it are flagged unstable in the report.

``TOKENBENCH_YARDSTICK=quick`` (the test suite's) measures a tenth as long, twice: the doc then
says ``quick``, and its figures are a smoke check, not a yardstick.
"""

from __future__ import annotations

import os
import resource
import socket
import statistics
import time
from typing import Any

from bench.results.machine import combine as combine  # measuring records; results read
from servers.tokens.core import Codec

QUICK = os.environ.get("TOKENBENCH_YARDSTICK") == "quick"
REPEATS = 2 if QUICK else 5
PAIRS = 2_000 if QUICK else 20_000  # write + read pairs, and tokens framed, per repeat
MESSAGE = b"x" * 40


def _cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process: getrusage, finer than os.times' ticks."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def syscall_us(pairs: int = PAIRS) -> tuple[float, float]:
    """(kernel CPU, wall time) per write + read of a small message on loopback TCP, µs."""
    server = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(server.getsockname())
    b, _ = server.accept()
    a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        send, recv = a.send, b.recv
        for _ in range(200):  # warm
            send(MESSAGE)
            recv(4096)
        (_, s0), w0 = _cpu(), time.perf_counter()
        for _ in range(pairs):
            send(MESSAGE)
            recv(4096)
        (_, s1), w1 = _cpu(), time.perf_counter()
    finally:
        for s in (a, b, server):
            s.close()
    return (s1 - s0) / pairs * 1e6, (w1 - w0) / pairs * 1e6


def python_us(tokens: int = PAIRS) -> tuple[float, float]:
    """(CPU, wall time) per token of the Python a server runs to frame it, µs."""
    _, stream = Codec().new_stream(100_000, 40.0, 0)
    payload = stream.payload
    for seq in range(500):  # warm
        f"id: {seq}\ndata: {payload(seq)}\n\n".encode()
    u0, w0 = time.process_time(), time.perf_counter()
    for seq in range(tokens):
        f"id: {seq}\ndata: {payload(seq)}\n\n".encode()
    return (time.process_time() - u0) / tokens * 1e6, (time.perf_counter() - w0) / tokens * 1e6


def _summary(values: list[float]) -> dict[str, float]:
    med = statistics.median(values)
    return {
        "median": round(med, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "spread": round((max(values) - min(values)) / med, 4) if med else 0.0,
    }


def measure(cores: set[int] | None = None) -> dict[str, Any]:
    """One calibration, on ``cores`` (the server's, where it will run) if given: each figure
    REPEATS times, interleaved, so that a burst of noise hits both."""
    sys_v, py_v, wall_v = [], [], []
    saved = os.sched_getaffinity(0)
    if cores:
        os.sched_setaffinity(0, cores)
    try:
        for _ in range(REPEATS):
            (k, kw), (py, pw) = syscall_us(), python_us()
            sys_v.append(k)
            py_v.append(py)
            wall_v.append(kw + pw)
    finally:
        os.sched_setaffinity(0, saved)
    sys_s, py_s, wall_s = _summary(sys_v), _summary(py_v), _summary(wall_v)
    return {
        "syscall_us": sys_s,
        "python_us": py_s,
        "unit_us": round(sys_s["min"] + py_s["min"], 4),
        "wall_us": wall_s,
        "cores": sorted(cores) if cores else None,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **({"quick": True} if QUICK else {}),
    }
