"""Server memory per idle open connection, per transport (``tokenbench idle-memory``).

An idle connection is a reader that has its first token and is waiting for the next one, the
state most of 50,000 chat users are in between tokens (for long polling: one poll waiting). The
server runs as one worker; its RSS is sampled after a warm-up and again with N readers
connected, and the difference is divided by N. The readers are tokenbench's own clients, in this
process, from one source address.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import time
from dataclasses import dataclass

from bench.load import procstat
from clients import ClientOptions, create_stream, reader_class
from servers.base import ServerConfig
from servers.process import metrics
from servers.process.supervisor import Supervisor


@dataclass
class IdleResult:
    transport: str
    connections: int
    rss_before_bytes: int
    rss_connected_bytes: int
    rss_after_close_bytes: int
    bytes_per_connection: float
    open_after_close: int


def _open(sup: Supervisor) -> int:
    assert sup.metrics_file is not None
    rows = metrics.read_rows(sup.metrics_file, sup.cfg.workers)
    return sum(r["connections_open"] for r in rows)


async def _wait(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.1)
    return bool(pred())


async def _measure(transport: str, sup: Supervisor, n: int, settle: float) -> IdleResult:
    url = sup.url
    opts = ClientOptions(give_up_after=30)
    # Warm-up: a few full streams, so lazily built code paths are not counted per connection.
    warm = await create_stream(transport, url, tokens=20, rate=1000)
    for _ in range(5):
        reader = reader_class(transport)(url, warm["id"], lambda *a: None, None, opts)
        await reader.run()
    await asyncio.sleep(settle)
    before = procstat.sample(sup.pids).rss_bytes
    # One token due now, the next in 1000 s: every reader gets token 0, then idles.
    info = await create_stream(transport, url, tokens=2, rate=0.001)
    got = [0]

    def on_token(seq: int, t: int, text: str) -> None:
        got[0] += 1

    readers = [reader_class(transport)(url, info["id"], on_token, None, opts) for _ in range(n)]
    tasks = []
    for i, reader in enumerate(readers):
        tasks.append(asyncio.ensure_future(reader.run()))
        if i % 200 == 199:
            await asyncio.sleep(0.05)  # do not flood the listen backlog
    ok = await _wait(lambda: got[0] >= n and _open(sup) >= n, 60)
    if not ok:
        raise RuntimeError(f"{transport}: only {got[0]} of {n} readers got their first token")
    await asyncio.sleep(settle)
    connected = procstat.sample(sup.pids).rss_bytes
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
    await _wait(lambda: _open(sup) == 0, 10)
    await asyncio.sleep(settle)
    after = procstat.sample(sup.pids).rss_bytes
    return IdleResult(transport, n, before, connected, after, (connected - before) / n, _open(sup))


def measure(
    transport: str, connections: int = 2000, settle: float = 2.0, stack: str = "stock"
) -> IdleResult:
    sup = Supervisor(ServerConfig(transport=transport, port=0, workers=1, stack=stack))
    sup.start()
    try:
        return asyncio.run(_measure(transport, sup, connections, settle))
    finally:
        sup.stop()


def machine_line() -> str:
    return f"{platform.node()} {platform.machine()} Python {platform.python_version()}"
