"""The ``granian`` stack: a transport's stock FastAPI app (``app(ctx)`` of its stock module) run
by granian, a Rust HTTP server, instead of uvicorn: "which server do we run FastAPI on".

Rules of this module:
- The app is the stock one, route for route and error for error, so the contract is the stock
  one by construction; only the server underneath differs (its HTTP parser, its writes, its
  WebSocket implementation).
- granian's embedded server (``granian.server.embed``) runs in this worker's event loop, one
  Rust runtime thread, and listens with SO_REUSEPORT on the supervisor's port like uvicorn does.
- WebSocket has no granian stack: granian sends no WebSocket pings (emmett-framework/granian#613,
  open), and the contract's WebSocket keepalive is the protocol's ping.
- SIGTERM drains the streams first (the hub), then stops the server after 0.3 s, so SSE
  responses end without ``end`` and polls answer at once, as on uvicorn (servers/http/app.py).
"""

from __future__ import annotations

import asyncio
import importlib
import signal
from collections.abc import Callable
from importlib import metadata
from typing import Any

import transports
from servers.base import Context, ServerConfig
from servers.topology.haproxy import listeners

NAME = "granian"
GRANIAN_DEFAULTS = {"backlog": 128, "runtime_threads": 1, "http": "auto", "websockets": True,
                    "log_access": False}  # fmt: skip


def settings(cfg: ServerConfig) -> dict[str, Any]:
    effective = {
        "server": f"granian {metadata.version('granian')} (embedded, asyncio loop)",
        "app": f"the stock FastAPI app of {transports.get(cfg.transport).server}",
        "backlog": cfg.backlog, "runtime_threads": 1, "http": "1", "websockets": True,
    }  # fmt: skip
    return {"effective": effective, "stack_defaults": GRANIAN_DEFAULTS}


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    cfg = ctx.cfg
    stock = importlib.import_module(transports.get(cfg.transport).server)
    servers = [Server(stock.app(ctx), address=host, port=cfg.port, interface=Interfaces.ASGI,
                      http=HTTPModes.http1, backlog=cfg.backlog, log_enabled=False)
               for host in cfg.hosts]  # fmt: skip
    before = listeners(cfg.port)
    tasks = [asyncio.ensure_future(s.serve()) for s in servers]
    loop = asyncio.get_running_loop()
    while listeners(cfg.port) < before + len(servers):
        if any(t.done() for t in tasks):
            await asyncio.gather(*tasks)  # raises why it stopped
            raise OSError(f"granian stopped before listening on {cfg.port}")
        await asyncio.sleep(0.02)
    on_ready()

    def stop() -> None:
        for s in servers:
            s.stop()

    def on_sigterm() -> None:
        if ctx.hub.draining:
            stop()
            return
        ctx.hub.drain()
        loop.call_later(0.3, stop)  # let the woken handlers write their last frames

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor sends SIGTERM
    await asyncio.gather(*tasks)
