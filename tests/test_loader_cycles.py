"""A load process's conversations leave no reference cycles behind.

Load processes freeze their collector (servers/process/gcpolicy.py): a cycle that becomes
garbage after a freeze is never freed, so a conversation that ended in one leaked its reader,
tap and connection (about 6 MB a second at 1,000 conversations a second). Here conversations
run with the collector off and saving what it finds; what it finds must be none of theirs.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

import transports
from bench.load.loader import Loader
from bench.load.messages import LoaderConfig
from clients.base import Reader
from clients.http import HttpConnection
from tests.conftest import ServerHandle


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", [t.name for t in transports.all_transports()])
async def test_a_conversation_leaves_no_cycle(server_factory, transport: str) -> None:
    srv: ServerHandle = server_factory(transport)
    # a short heartbeat: the silence watchdog's timer (1 s) fires within the test (its closure
    # was one of the cycles), yet no healthy 30 ms answer trips it on a slow machine
    cfg = LoaderConfig(transport=transport, url=srv.url, tokens=3, rate=100.0, think=0.0,
                       heartbeat=0.5, clock_sync=False)  # fmt: skip
    loader = Loader(cfg)
    loop = asyncio.get_running_loop()
    if loader.pump is not None:
        loop.add_reader(loader.pump.fileno(), loader.pump.run)
    session = loader.reader_cls.open_session(cfg.url, loader.options)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(20):
            await loader.conversation(session, None)
        await asyncio.sleep(1.3)  # every watchdog timer has fired or was cancelled
        gc.collect()
        kept = [type(o).__name__ for o in gc.garbage if isinstance(o, Reader | HttpConnection)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        if loader.pump is not None:
            loop.remove_reader(loader.pump.fileno())
        await loader.reader_cls.close_session(session)
    assert loader.acc.streams_done == 20
    assert kept == [], f"{len(kept)} conversation objects in reference cycles: {set(kept)}"
