"""The native wire beside a web front: what the translation costs the server.

Where a transport's browsers go through a web front (``Transport.web_front``: gRPC's gRPC-Web,
servers/grpc/web.py), the same server is read, after the tabs, by as many native clients
(the registry's reader, clients/) with the same tokens and rate, and its CPU per token is
measured the same way, from /proc. Server CPU is read in clock ticks (10 ms), so the figure
is only as fine as 10 ms over the tokens read: give runs thousands of tokens.
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

import transports
from bench.load import procstat
from clients.base import stream


class Native(TypedDict):
    transport: str
    streams: int
    tokens: int
    server_cpu_us_per_token: float | None


async def measure(transport: str, url: str, pids: list[int], streams: int, tokens: int,
                  rate: float) -> Native:  # fmt: skip
    create = transports.get(transport).create_fn()
    ids = [(await create(url, tokens=tokens, rate=rate))["id"] for _ in range(streams)]
    cpu0 = procstat.sample(pids).cpu_s

    async def read(sid: str) -> int:
        return sum([1 async for _ in stream(transport, url, sid)])

    got = sum(await asyncio.gather(*[read(sid) for sid in ids]))
    cpu = procstat.sample(pids).cpu_s - cpu0
    per = round(cpu * 1e6 / got, 2) if got else None
    return Native(transport=transport, streams=streams, tokens=got, server_cpu_us_per_token=per)


def wanted(transport: str, fault: str) -> bool:
    return transports.get(transport).web_front and fault == "none"
