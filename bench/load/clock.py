"""A load process's clock, corrected to the server's (docs/protocol.md, "Time").

Rules of this module:
- Latency is a receive time minus a token's ``t``, which is on the server's clock. On one machine
  both are one clock; across machines a skew of 5 ms is 5 ms of error in every latency. So a load
  process reads the server's clock NTP style (RFC 5905, section 8) before and after its run,
  keeps the exchange with the smallest round trip, and adds that offset to every clock reading.
- An offset is known to within half its round trip; a drift between the two readings adds its
  size to that. ``ClockDoc`` records all of it per load process, in results.json.
- ``shift_ns`` makes a process's clock wrong on purpose (tests): the correction must remove it.
- Nothing here knows a transport: the registry's ``clock`` function does the exchange.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, TypedDict

import transports

EXCHANGES = 16  # per reading; the smallest round trip of them counts
UNCERTAINTY_SHARE_OF_SLO = 0.1  # a run whose clocks are less sure than this says so


@dataclass(frozen=True)
class Offset:
    offset_ns: int  # the server's clock minus this process's (uncorrected) clock
    rtt_ns: int  # round trip of the exchange it came from: the offset is good to rtt / 2
    at_ns: int  # when, on this process's uncorrected clock


def best(exchanges: list[tuple[int, int, int]]) -> Offset:
    """The offset from (sent, server time, answered) triples: the one with the least round trip."""
    if not exchanges:
        raise ValueError("no clock exchanges")
    a, s, b = min(exchanges, key=lambda e: e[2] - e[0])
    return Offset(s - (a + b) // 2, b - a, a)


class Clock:
    """This process's wall clock in ns: ``time.time_ns()`` plus ``shift_ns`` (a test's skew),
    plus ``offset_ns`` once ``sync`` has read the server's."""

    def __init__(self, shift_ns: int = 0) -> None:
        self.shift_ns = shift_ns
        self.offset_ns = 0
        self.before: Offset | None = None
        self.after: Offset | None = None
        self.error: str | None = None

    def raw(self) -> int:
        return time.time_ns() + self.shift_ns

    def now(self) -> int:
        return time.time_ns() + self.shift_ns + self.offset_ns

    @property
    def correction_ns(self) -> int:
        """What every reading adds to ``time.time_ns()`` (the compiled path's clock too)."""
        return self.shift_ns + self.offset_ns

    async def read(self, transport: str, url: str, local_addr: str | None = None) -> Offset | None:
        """One reading of the server's clock, or None (with ``error`` set) if it has none."""
        exchange = transports.get(transport).clock_fn()
        try:
            return best(await exchange(url, EXCHANGES, self.raw, local_addr=local_addr))
        except Exception as exc:  # an outside server without the route: uncorrected, and said
            self.error = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            return None

    async def sync(self, transport: str, url: str, local_addr: str | None = None) -> None:
        """The reading before the run: from now on, readings are on the server's clock."""
        self.before = await self.read(transport, url, local_addr)
        if self.before is not None:
            self.offset_ns = self.before.offset_ns

    async def check(self, transport: str, url: str, local_addr: str | None = None) -> None:
        """The reading after the run: how far the clocks drifted apart meanwhile."""
        self.after = await self.read(transport, url, local_addr)

    def doc(self) -> ClockDoc:
        b, a = self.before, self.after
        drift = a.offset_ns - b.offset_ns if a and b else None
        span = (a.at_ns - b.at_ns) if a and b else 0
        rtts = [o.rtt_ns for o in (b, a) if o is not None]
        return {
            "synced": b is not None,
            "offset_ns": b.offset_ns if b else None,
            "rtt_ns": b.rtt_ns if b else None,
            "after_offset_ns": a.offset_ns if a else None,
            "after_rtt_ns": a.rtt_ns if a else None,
            "drift_ns": drift,
            "drift_ppm": round(drift / span * 1e6, 3) if drift is not None and span > 0 else None,
            "uncertainty_ns": max(rtts) // 2 + abs(drift or 0) if rtts else None,
            "shift_ns": self.shift_ns,
            "error": self.error,
        }


class ClockDoc(TypedDict):
    """One load process's clock in results.json (``Clock.doc``)."""

    synced: bool  # its latencies are on the server's clock
    offset_ns: int | None  # server minus loader, before the run (the correction applied)
    rtt_ns: int | None
    after_offset_ns: int | None  # the same, read after the run
    after_rtt_ns: int | None
    drift_ns: int | None
    drift_ppm: float | None
    uncertainty_ns: int | None  # half the worst round trip, plus the drift
    shift_ns: int  # a skew injected on purpose (tests), 0 in real runs
    error: str | None  # why the server's clock could not be read


def summarize(docs: list[ClockDoc], slo_ms: float) -> dict[str, Any]:
    """A run's clocks: the worst uncertainty, and a warning when it exceeds a tenth of the SLO
    or a load process ran on its own clock."""
    known = [d["uncertainty_ns"] for d in docs if d["uncertainty_ns"] is not None]
    worst_ms = max(known) / 1e6 if known else None
    limit_ms = slo_ms * UNCERTAINTY_SHARE_OF_SLO
    warnings = []
    unsynced = [i for i, d in enumerate(docs) if not d["synced"]]
    if unsynced:
        why = next((d["error"] for d in docs if d["error"]), "no reading")
        warnings.append(f"load process(es) {unsynced} on their own clock ({why})")
    if worst_ms is not None and worst_ms > limit_ms:
        warnings.append(
            f"clock uncertainty {worst_ms:.1f} ms is over a tenth of the {slo_ms:g} ms SLO"
        )
    offsets = [d["offset_ns"] for d in docs if d["offset_ns"] is not None]
    return {
        "uncertainty_ms": round(worst_ms, 3) if worst_ms is not None else None,
        "limit_ms": limit_ms,
        "max_abs_offset_ms": round(max(map(abs, offsets)) / 1e6, 3) if offsets else None,
        "warning": "; ".join(warnings) or None,
    }
