"""What the extra hops cost (``bench --lb``, ``--source llm``): the load balancer, Redis and
the producer, each measured apart from the backends over a step's window.

Per part: CPU per token delivered (µs), its share of a core, its memory, and its memory per
live stream above what it held before the load (a stream is one client connection at the LB,
one live answer in Redis). The backends are "the server" of the step, as without a topology.
"""

from __future__ import annotations

from typing import Any

from bench.load import procstat


def cost(
    base: dict[str, procstat.Sample], start: dict[str, procstat.Sample],
    end: dict[str, procstat.Sample], tokens: int, seconds: float, streams: int,
) -> dict[str, dict[str, Any]] | None:  # fmt: skip
    """Each part's figures over one window, or None when there are no parts."""
    if not end:
        return None
    out: dict[str, dict[str, Any]] = {}
    for name, b in end.items():
        a = start.get(name)
        if a is None:
            continue
        cpu = max(0.0, b.cpu_s - a.cpu_s)
        above = b.rss_bytes - base[name].rss_bytes if name in base else None
        out[name] = {
            "processes": b.alive,
            "cpu_us_per_token": round(cpu / tokens * 1e6, 2) if tokens else None,
            "cpu_util": round(cpu / seconds, 4) if seconds > 0 else None,
            "rss_bytes": b.rss_bytes,
            "mem_per_stream_bytes": round(above / streams) if above is not None and streams
            else None,
        }  # fmt: skip
    return out
