"""One load-generator process: ``python -m bench.load.loader CONFIG_JSON`` (bench.load.fleet).

It runs simulated users on uvloop. A user is a conversation loop: POST a prompt, read the whole
answer while checking every token (seq contiguous, text exact, nothing twice), think, repeat. A
token's latency is its receive time minus its due time ``t`` from the payload, never minus a
send time (no coordinated omission). Time to first token runs from just before the POST.

Commands arrive as JSON lines on stdin: ``{"target": N, "ramp_s": R}`` starts or stops users
until N run (new ones staggered over R seconds, so streams do not tick in step), and
``{"stop": true}`` ends everything. Every second one JSON report goes to stdout: counters and
histograms for that second only, merged by the orchestrator. All sockets close with RST, so
churn leaves no TIME_WAIT; HTTP transports bind ``local_addr`` (one 127.0.0.x per loader).
The cyclic garbage collector runs as a tuned server worker's does (servers/process/gcpolicy.py):
with 10,000 users a stock full collection held a load process for seconds, its sockets unread,
and the latencies it then measured were its own (results/20261207-hold-floor).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import transports
from bench.load.accumulator import Accumulator, error_class
from bench.load.clock import Clock
from bench.load.messages import LoaderCommand, LoaderConfig
from bench.load.procstat import self_cpu_s, self_sys_s
from clients import ClientOptions, GaveUp, StreamError, fast
from clients.base import Retry
from servers.process import gcpolicy
from servers.tokens.core import Codec, ContractError, Stream


class Loader:
    def __init__(self, cfg: LoaderConfig) -> None:
        self.cfg = cfg
        self.record = transports.get(cfg.transport)
        self.fast = cfg.fast_path and fast.enabled() and self.record.fast_path is not None
        self.pump = fast.pump() if self.fast and cfg.compiled_loop else None
        self.clock = Clock(cfg.clock_shift_ns)  # on the server's clock once synced
        self.acc = Accumulator(clock=self.clock.now, tally=fast.tally() if self.fast else None)
        self.users: list[asyncio.Task[None]] = []
        self.codec = Codec()
        self.rng = random.Random(cfg.seed)
        self.options = ClientOptions(
            heartbeat=cfg.heartbeat, poll_timeout=cfg.poll_timeout, local_addr=cfg.local_addr,
            rst_close=True, **cfg.options,
        )  # fmt: skip
        self.reader_cls, self.create_fn, dozes = self.record.load_client(self.fast)
        self.doze_us = cfg.doze_us if dozes else 0
        self._next_conv = 0
        self.arrived = 0  # running users whose first stream has connected (the ramp's progress)
        # A report goes out at once (not at the next interval) when this many have arrived,
        # and when the last user of a stop has gone: the orchestrator waits on both.
        self.ready_at = 0

    async def create(self, session: Any, first: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        tokens = self.rng.randint(1, cfg.tokens) if first and cfg.stationary else cfg.tokens
        return await self.create_fn(
            cfg.url, tokens, cfg.rate, local_addr=cfg.local_addr, rst_close=True,
            session=session,
        )  # fmt: skip

    async def conversation(self, session: Any, arrive: Callable[[], None] | None) -> None:
        acc, cfg = self.acc, self.cfg
        now_ns = self.clock.now
        t_post = now_ns()
        acc.posts += 1
        try:
            info = await self.create(session, first=arrive is not None)
        except Retry as exc:
            acc.errors[error_class(exc.reason)] += 1
            await asyncio.sleep(self.rng.uniform(0.5, 1.5))
            return
        except StreamError:
            acc.errors["status"] += 1
            await asyncio.sleep(self.rng.uniform(0.5, 1.5))
            return
        try:
            stream = self.codec.decode(info["id"])  # to check texts; None if another key
        except ContractError:
            stream = None
        expected_text = stream.text if stream is not None else None
        timing = Stream(info["created_ns"], info["tokens"], info["rate"], 0)
        prev = [0]

        def on_token(seq: int, t: int, text: str) -> None:
            now = now_ns()
            a = self.acc  # the accumulator of the current interval
            a.latency.record((now - t) // 1000)
            if prev[0]:
                a.gap.record((now - prev[0]) // 1000)
            else:
                a.ttft.record((now - t_post) // 1000)
            prev[0] = now
            a.tokens += 1
            if expected_text is not None and expected_text(seq) != text:
                a.wrong += 1

        reader = self.reader_cls(cfg.url, info["id"], on_token, None, self.options, acc.stats)
        if self.fast:  # the same accounting, in C (clients/_fastpath.c)
            mode = self.record.fast_path
            seed = stream.seed if stream else None
            fast.tap_for(reader, mode, acc.tally, seed, t_post, self.pump)
        reader.session = session
        reader.cookie = info.get("cookie")  # a sticky load balancer's, from the prompt POST
        reader.on_connected = arrive
        conv = self._next_conv
        self._next_conv += 1
        acc.active[conv] = entry = [timing, 0]  # no token counted as expected yet
        done = stopped = refused = False
        try:
            await reader.run()
            self.acc.streams_done += 1
            done = True
        except GaveUp:
            self.acc.streams_failed += 1
        except StreamError:  # refused (a 404 through a proxy that dropped the upgrade...)
            self.acc.streams_failed += 1
            self.acc.errors["status"] += 1
            refused = True
        except asyncio.CancelledError:
            # Only set_target cancels a user (ramp-down, or the stop at the end of the run): we
            # ended the stream, not the server, and nothing was lost. A CancelledError nobody
            # asked for (a library's) ends the stream like any other error.
            task = asyncio.current_task()
            stopped = task is not None and task.cancelling() > 0
            raise
        finally:
            now = now_ns()
            a = self.acc
            a.expected_done += timing.due_count(now) - entry[1]
            self.account_end(a, timing, reader, now, done, stopped)
            del a.active[conv]
            # The reader and its tap refer to each other (reader.tap, the tap's slow path): a
            # cycle, which a frozen collector never frees (servers/process/gcpolicy.py). Broken
            # here, reference counting frees the conversation.
            reader.tap = reader.on_token = reader.on_connected = None
        if refused:  # as after a refused prompt: not a tight loop of refusals
            await asyncio.sleep(self.rng.uniform(0.5, 1.5))

    @staticmethod
    def account_end(
        a: Accumulator, timing: Stream, reader: Any, now: int, done: bool, stopped: bool
    ) -> None:
        """Count what a stream that ended at ``now`` owed and did not deliver: one call per
        stream, no work per token (``reader.cursor`` and ``delivered`` are synced from the
        compiled path at the end of every attempt). ``done``: the stream's end came, so every
        token was owed, and those missing (gaps) are ``lost``. ``stopped``: we cancelled it
        (ramp-down, end of run), it owed nothing. Any other end (gave up, refused, an error)
        owes the tokens due by ``now``: those missing below the highest seq read are ``lost``,
        those above it ``unread``; tokens not due yet are in neither (``streams_failed`` counts
        the stream). No token is counted twice: ``lost + unread`` is every owed token not read."""
        if stopped:
            return
        if done:
            a.lost += max(0, timing.tokens - reader.delivered)
            return
        top = min(reader.cursor, timing.tokens - 1)  # the highest seq read, -1 if none
        a.lost += max(0, top + 1 - reader.delivered)
        a.unread += max(0, timing.due_count(now) - top - 1)

    async def user(self, delay: float) -> None:
        await asyncio.sleep(delay)
        session = self.reader_cls.open_session(self.cfg.url, self.options)
        arrived = False

        def arrive() -> None:
            nonlocal arrived
            if not arrived:
                arrived = True
                self.arrived += 1
                if self.arrived == self.ready_at:
                    self.write_report()

        try:
            task = asyncio.current_task()
            while True:
                await self.conversation(session, None if arrived else arrive)
                if task is not None and task.cancelling():  # a library swallowed our cancel
                    raise asyncio.CancelledError
                if self.cfg.think > 0:
                    await asyncio.sleep(self.cfg.think * self.rng.uniform(0.5, 1.5))
        finally:
            if arrived:
                self.arrived -= 1
                if self.arrived == 0 and not self.users:
                    self.write_report()
            if session is not None:
                await self.reader_cls.close_session(session)

    def set_target(self, n: int, ramp_s: float) -> None:
        self.ready_at = math.ceil(0.99 * n)  # bench.load.ramp.fixed waits for 99 %
        while len(self.users) > n:
            self.users.pop().cancel()
        add = n - len(self.users)
        for i in range(add):
            self.users.append(asyncio.ensure_future(self.user(ramp_s * i / max(add, 1))))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[LoaderCommand] = asyncio.Queue()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def read_commands() -> None:
            while line := await reader.readline():
                commands.put_nowait(json.loads(line))
            commands.put_nowait({"stop": True})  # the orchestrator went away

        await self.sync_clock()
        freezer = gcpolicy.tune()
        if self.pump is not None:  # the compiled event loop: one wake for many sockets
            loop.add_reader(self.pump.fileno(), self.pump.run)
        command_task = asyncio.ensure_future(read_commands())
        doze_task = asyncio.ensure_future(self.doze()) if self.doze_us > 0 else None
        cfg = self.cfg
        next_report = time.monotonic() + cfg.interval
        stopping = False
        while not stopping:
            timeout = max(0.0, next_report - time.monotonic())
            try:
                cmd = await asyncio.wait_for(commands.get(), timeout)
            except TimeoutError:
                cmd = None
            if cmd is not None:
                if cmd.get("stop"):
                    stopping = True
                    self.set_target(0, 0)
                else:
                    self.set_target(int(cmd["target"]), float(cmd.get("ramp_s", 0)))
            if time.monotonic() >= next_report and not stopping:
                next_report += self.cfg.interval
                self.write_report()
        await asyncio.gather(*self.users, return_exceptions=True)
        if doze_task is not None:
            doze_task.cancel()  # its sleeps would lengthen the round trips read next
        await self.clock.check(cfg.transport, cfg.url, cfg.local_addr)
        self.write_report()  # the last one: the clock's reading after the run in it
        command_task.cancel()
        freezer.cancel()

    async def sync_clock(self) -> None:
        """Read the server's clock (bench.load.clock); from then on, every reading, the
        compiled path's too, is on it."""
        cfg = self.cfg
        if cfg.clock_sync:
            await self.clock.sync(cfg.transport, cfg.url, cfg.local_addr)
        fast.set_clock(self.clock.correction_ns)
        self.acc.last_ns = self.clock.now()

    def write_report(self) -> None:
        doc = self.acc.report(len(self.users), self_cpu_s(), self_sys_s())
        doc["loader"] = self.cfg.index
        doc["arrived"] = self.arrived
        doc["loop"] = "compiled" if self.pump is not None else "uvloop"
        doc["clock"] = self.clock.doc()
        sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    async def doze(self) -> None:
        """Read in batches: between loop turns, sleep ``doze_us`` so that each turn finds many
        sockets ready (one wake-up for many tokens, not one each). A token then waits at most
        ``doze_us`` longer to be read: latency can only read high, by at most that."""
        pause, sleep = self.doze_us / 1e6, time.sleep
        while True:
            if not self.users:  # waiting its turn (bench.load.run.run_interleaved): idle
                await asyncio.sleep(0.05)
                continue
            sleep(pause)
            await asyncio.sleep(0)


def main() -> None:
    cfg = LoaderConfig(**json.loads(sys.argv[1]))
    import uvloop

    if os.environ.get("TOKENBENCH_GC_OFF"):
        import gc

        gc.disable()
    profile = os.environ.get("TOKENBENCH_PROFILE")  # a path prefix: cProfile of this loader
    if not profile:
        uvloop.run(Loader(cfg).run())
        return
    import cProfile

    with cProfile.Profile() as prof:
        uvloop.run(Loader(cfg).run())
    prof.dump_stats(f"{profile}.loader{cfg.index}")


if __name__ == "__main__":
    main()
