"""One server worker process: ``python -m servers.process.worker CONFIG_JSON READY_FD``.

Started by the supervisor, never by hand. It binds its own SO_REUSEPORT socket on the reserved
port, writes its pid to READY_FD once it accepts connections, and serves until SIGTERM, on the
event loop its transport's record names (grpc.aio supports only the stock asyncio loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys

import transports
from servers.base import Context, ServerConfig, load
from servers.process import gcpolicy


def die_with_parent() -> None:
    """Linux prctl(PR_SET_PDEATHSIG): a supervisor killed with -9 takes its workers along."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _log_slow_gc(threshold_s: float = 0.05) -> None:
    """TOKENBENCH_GC_LOG=1: report every garbage collection slower than 50 ms on stderr."""
    import gc
    import time

    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        if took >= threshold_s:
            print(f"gc pid={os.getpid()} gen={info['generation']} {took * 1000:.0f} ms "
                  f"objects={len(gc.get_objects())}", file=sys.stderr, flush=True)  # fmt: skip

    gc.callbacks.append(callback)


def main() -> None:
    cfg = ServerConfig.from_json(sys.argv[1])
    ready_fd, parent = int(sys.argv[2]), os.getppid()
    die_with_parent()
    if os.getppid() != parent:
        sys.exit(1)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if os.environ.get("TOKENBENCH_GC_LOG"):
        _log_slow_gc()
    module = load(cfg.transport, cfg.stack)

    def on_ready() -> None:
        os.write(ready_fd, f"{os.getpid()}\n".encode())
        os.close(ready_fd)

    async def run() -> None:
        ctx = Context(cfg)
        gcpolicy.apply(cfg.gc, ctx.metrics)
        await ctx.start()
        await module.serve(ctx, on_ready)

    # a stack's module may name its own loop (servers/grpc/lean.py runs on uvloop)
    if getattr(module, "LOOP", transports.get(cfg.transport).server_loop) == "uvloop":
        import uvloop

        uvloop.run(run())
    else:
        asyncio.run(run())
    # Drained and stopped: exit now. The interpreter's own teardown (some 0.17 s here, for
    # modules this process no longer needs) would only delay a restart or a rolling update.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
