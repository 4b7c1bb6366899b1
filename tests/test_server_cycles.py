"""The servers this project wrote (floor and lean stacks) leave no reference cycles behind,
streams ended or cut off.

Server workers may freeze their collector (``--gc tuned``, servers/process/gcpolicy.py): a cycle
that becomes garbage after a freeze is never freed. Every floor connection was one (its
httptools parser and transport hold it), and so was every flow (its ``emit`` closure holds it):
memory per connection grew with churn. Here the server runs in the test's own process, so the
collector, off and saving what it finds, sees its objects; none of them may be the server's.
Libraries' own cycles are not counted: uvicorn keeps every upgraded connection's HTTP protocol in
one with its parser (lean WebSocket), as it does on the stock stacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket

import pytest

import transports
from bench.load.loader import Loader
from bench.load.messages import LoaderConfig
from servers.base import Context, ServerConfig, load
from servers.pacing import hub, wheel

OWN = [(t.name, s) for t in transports.all_transports() for s in ("floor", "lean") if s in t.stacks]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("transport", "stack"), OWN)
async def test_streams_leave_no_cycle(
    transport: str, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the process's wheel and hub belong to one event loop: this test's own, fresh ones
    monkeypatch.setattr(wheel, "_wheel", None)
    monkeypatch.setattr(hub, "_hub", None)
    port = free_port()
    ctx = Context(ServerConfig(transport=transport, port=port, stack=stack, heartbeat=0.5))
    await ctx.start()
    ready = asyncio.Event()
    server = asyncio.ensure_future(load(transport, stack).serve(ctx, ready.set))
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(ready.wait(), 10)
    cfg = LoaderConfig(transport=transport, url=f"http://127.0.0.1:{port}", tokens=3,
                       rate=100.0, think=0.0, heartbeat=5.0, clock_sync=False)  # fmt: skip
    loader = Loader(cfg)
    if loader.pump is not None:
        loop.add_reader(loader.pump.fileno(), loader.pump.run)
    session = loader.reader_cls.open_session(cfg.url, loader.options)
    cut = Loader(LoaderConfig(**{**cfg.__dict__, "tokens": 500}))  # streams cut mid-answer
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(10):
            await loader.conversation(session, None)
        for _ in range(5):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(cut.conversation(session, None), 0.2)
        await asyncio.sleep(0.6)  # every close has reached the server
        gc.collect()
        kept = [type(o).__qualname__ for o in gc.garbage
                if type(o).__module__.startswith("servers.")]  # fmt: skip
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        if loader.pump is not None:
            loop.remove_reader(loader.pump.fileno())
        await loader.reader_cls.close_session(session)
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        for sig in (signal.SIGTERM, signal.SIGINT):  # serve's own, on this loop
            loop.remove_signal_handler(sig)
    assert loader.acc.streams_done == 10
    assert kept == [], f"{len(kept)} server objects in reference cycles: {set(kept)}"
