"""The machine's yardstick: what the elementary work of a token costs on this machine, today.

This project's machine kind varies in speed from day to day by up to 3x, so a figure means
little without the speed it was measured at. Every bench and faults run measures, before and
after its load (a few seconds each):

- ``syscall_us``: the kernel's CPU for one small write and one read over loopback TCP (40-byte
  messages, one connection, the process's system time);
- ``python_us``: CPU for the Python a server spends framing one token (``Stream.payload`` and an
  SSE event, encoded), in a hot loop;
- ``unit_us``: their sum, the cost of a "reference token". A run is normalised by it:
  ``cpu per token / unit_us`` and ``users per core x unit_us`` compare across machines and days
  (docs/results-schema.md, ``machine.yardstick``).

Each figure is the median of five repeats, with their spread; a yardstick whose before and after
differ by more than 10 % says the machine changed speed during the run (``drift``).
"""

from __future__ import annotations

import resource
import socket
import statistics
import time
from typing import Any

from servers.core import Codec

REPEATS = 5
MESSAGE = b"x" * 40
SCHEMA = 1  # machine.yardstick.version


def _cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process: getrusage, finer than os.times' ticks."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def syscall_us(pairs: int = 20_000) -> float:
    """Kernel CPU per write + read of a small message on a loopback TCP connection."""
    server = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(server.getsockname())
    b, _ = server.accept()
    a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        send, recv = a.send, b.recv
        for _ in range(200):  # warm
            send(MESSAGE)
            recv(4096)
        _, s0 = _cpu()
        for _ in range(pairs):
            send(MESSAGE)
            recv(4096)
        _, s1 = _cpu()
    finally:
        for s in (a, b, server):
            s.close()
    return (s1 - s0) / pairs * 1e6


def python_us(tokens: int = 20_000) -> float:
    """User CPU per token of the Python a server runs to frame it (payload and SSE event)."""
    _, stream = Codec().new_stream(100_000, 40.0, 0)
    payload = stream.payload
    for seq in range(500):  # warm
        f"id: {seq}\ndata: {payload(seq)}\n\n".encode()
    u0 = time.process_time()
    for seq in range(tokens):
        f"id: {seq}\ndata: {payload(seq)}\n\n".encode()
    return (time.process_time() - u0) / tokens * 1e6


def _summary(values: list[float]) -> dict[str, float]:
    med = statistics.median(values)
    return {
        "median": round(med, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "spread": round((max(values) - min(values)) / med, 4) if med else 0.0,
    }


def measure() -> dict[str, Any]:
    """One calibration: each figure REPEATS times, interleaved (a burst of noise hits both)."""
    sys_v, py_v = [], []
    for _ in range(REPEATS):
        sys_v.append(syscall_us())
        py_v.append(python_us())
    sys_s, py_s = _summary(sys_v), _summary(py_v)
    return {
        "syscall_us": sys_s,
        "python_us": py_s,
        "unit_us": round(sys_s["median"] + py_s["median"], 4),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def combine(before: dict[str, Any], after: dict[str, Any] | None) -> dict[str, Any]:
    """``machine.yardstick``: both calibrations, the unit used (their mean), and the drift."""
    units = [before["unit_us"]] + ([after["unit_us"]] if after else [])
    unit = sum(units) / len(units)
    drift = abs(units[-1] - units[0]) / unit if len(units) == 2 else 0.0
    return {
        "version": SCHEMA,
        "before": before,
        "after": after,
        "unit_us": round(unit, 4),
        "drift": round(drift, 4),
        "drifted": drift > 0.10,
        "reference_unit_us": REFERENCE_UNIT_US,
    }


# Normalised figures are stated for a machine whose reference token costs this much: a round
# number near this project's VM on a good day, so that normalised and raw figures look alike.
REFERENCE_UNIT_US = 5.0


def speed(doc: dict[str, Any]) -> float | None:
    """How much slower this run's machine was than the reference (unit / reference), or None."""
    ys = doc.get("machine", {}).get("yardstick")
    if not ys or not ys.get("unit_us"):
        return None
    return ys["unit_us"] / ys.get("reference_unit_us", REFERENCE_UNIT_US)
