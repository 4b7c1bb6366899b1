"""The floor stack's pacing (servers/pacing/wheel.py) and the hub's timer: in process, on a real
loop.

Margins are wide: a token is checked against its due time (never before it), and counts of
timer runs against an order of magnitude, never against a duration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import uvloop

from servers.base import Context, ServerConfig
from servers.pacing.hub import Hub
from servers.pacing.wheel import Flow, Wheel
from servers.process import metrics as m
from servers.sse.stock import EventStream
from servers.tokens.core import Stream

pytestmark = pytest.mark.timeout(30)


class Tokens:
    """A framing that records what a flow hands out: (kind, seqs, written at)."""

    def start(self) -> tuple[str, tuple[int, ...]]:
        return ("start", ())

    def tokens(self, stream: Stream, seqs: range) -> tuple[str, tuple[int, ...]]:
        return ("tokens", tuple(seqs))

    def heartbeat(self) -> tuple[str, tuple[int, ...]]:
        return ("heartbeat", ())

    def end(self, stream: Stream) -> tuple[str, tuple[int, ...]]:
        return ("end", (stream.tokens,))


class Run:
    def __init__(self, tokens: int, rate: float, *, after: int = -1, created_ns: int | None = None,
                 idle_s: float | None = None, limit: int = 100) -> None:  # fmt: skip
        self.ctx = Context(ServerConfig("sse"))
        self.wheel = Wheel()
        self.stream = Stream(created_ns or time.time_ns(), tokens, rate, 42)
        self.writes: list[tuple[int, list[tuple[str, tuple[int, ...]]]]] = []
        self.ended: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.flow = Flow(self.ctx, self.wheel, self.stream, after, Tokens(), self.emit,
                         self.ended.set_result, limit=limit, idle_s=idle_s)  # fmt: skip

    def emit(self, frames: list[tuple[str, tuple[int, ...]]]) -> None:
        self.writes.append((time.time_ns(), frames))

    def seqs(self) -> list[int]:
        return [s for _, frames in self.writes for kind, seqs in frames if kind == "tokens"
                for s in seqs]  # fmt: skip


async def test_every_token_once_in_order_never_before_its_due_time_then_the_end() -> None:
    run = Run(tokens=30, rate=200)
    run.flow.start()
    assert await asyncio.wait_for(run.ended, 5) is False  # ended, not drained
    assert run.seqs() == list(range(30))
    for at, frames in run.writes:
        for kind, seqs in frames:
            if kind == "tokens":
                assert all(run.stream.due_ns(s) <= at for s in seqs)
    assert run.writes[0][1][0] == ("start", ()) and run.writes[-1][1][-1] == ("end", (30,))
    assert run.ctx.metrics.get(m.OPEN) == 0 and run.ctx.metrics.get(m.TOKENS) == 30
    assert not run.wheel.flows


async def test_a_backlog_goes_out_a_share_per_tick_and_one_write_each() -> None:
    past = time.time_ns() - 10_000_000_000  # 10 s ago at 100 tok/s: 250 due at once
    run = Run(tokens=250, rate=100, created_ns=past, limit=100)
    run.flow.start()
    await asyncio.wait_for(run.ended, 5)
    sizes = [len(seqs) for _, frames in run.writes for kind, seqs in frames if kind == "tokens"]
    assert sizes == [100, 100, 50]  # each tick's share, then the rest with the end
    assert len(run.writes) == 3  # one emit (one transport.write) per tick


async def test_a_stop_ends_the_flow_at_once_and_a_pause_holds_writes() -> None:
    run = Run(tokens=400, rate=40)  # 10 s long
    run.flow.start()
    await asyncio.sleep(0.2)
    run.flow.pause()
    paused = len(run.writes)
    await asyncio.sleep(0.2)
    assert len(run.writes) == paused  # a stalled reader gets nothing more
    run.flow.resume()
    await asyncio.sleep(0.05)
    assert len(run.writes) > paused  # what fell due meanwhile, at once
    run.flow.stop(time.time_ns())
    await asyncio.wait_for(run.ended, 1)
    end = run.writes[-1][1][-1]
    assert end[0] == "end" and end[1][0] == len(run.seqs()) < 400


async def test_an_idle_flow_beats_and_drain_ends_it_without_its_end() -> None:
    run = Run(tokens=3, rate=0.5, idle_s=0.1)  # a token every 2 s
    run.flow.start()
    await asyncio.sleep(0.45)
    beats = [f for _, frames in run.writes for f in frames if f[0] == "heartbeat"]
    assert 2 <= len(beats) <= 5
    run.wheel.drain()
    assert await asyncio.wait_for(run.ended, 1) is True  # drained
    assert all(kind != "end" for _, frames in run.writes for kind, _ in frames)
    assert run.ctx.metrics.get(m.OPEN) == 0


async def test_a_connection_that_leaves_is_forgotten() -> None:
    run = Run(tokens=400, rate=40)
    run.flow.start()
    await asyncio.sleep(0.1)
    run.flow.close()
    written = len(run.writes)
    await asyncio.sleep(0.2)
    assert len(run.writes) == written and not run.ended.done()
    assert run.ctx.metrics.get(m.OPEN) == 0 and not run.wheel.flows


async def test_sse_frames_on_the_wheel_are_the_stock_bytes() -> None:
    ctx = Context(ServerConfig("sse"))
    stream = Stream(time.time_ns() - 1_000_000_000, 5, 100, 7)  # all due
    out: list[bytes] = []
    done = asyncio.get_running_loop().create_future()
    flow = Flow(ctx, Wheel(), stream, -1, EventStream(1000), lambda f: out.append(b"".join(f)),
                done.set_result)  # fmt: skip
    flow.start()
    await asyncio.wait_for(done, 1)
    framing = EventStream(1000)
    assert out == [framing.start() + framing.tokens(stream, range(5)) + framing.end(stream)]


@pytest.mark.parametrize("scheduler", ["hub", "wheel"])
def test_a_timer_that_fires_early_does_not_spin(scheduler: str) -> None:
    """On uvloop (the servers' loop) timers truncate to whole milliseconds, so a wake 0.3 ms
    into the next millisecond fired early; the timer then re-armed itself until its bucket,
    hundreds of times. Now it sleeps whole milliseconds, rounded up: once or twice a wake."""
    fires = 0

    def counting(real: Callable[[], None]) -> Callable[[], None]:
        def counted() -> None:
            nonlocal fires
            fires += 1
            real()

        return counted

    async def wakes() -> None:
        if scheduler == "hub":
            hub = Hub()
            hub._fire = counting(hub._fire)  # type: ignore[method-assign]
            for _ in range(20):
                target = (time.time_ns() // 1_000_000 + 1) * 1_000_000 + 300_000
                await hub.sleep_until(target)
                assert time.time_ns() >= target
        else:
            run = Run(tokens=20, rate=1000)
            run.wheel._tick = counting(run.wheel._tick)  # type: ignore[method-assign]
            run.flow.start()
            await asyncio.wait_for(run.ended, 5)

    uvloop.run(wakes())
    assert fires <= 60, fires  # 20 wakes; a spin ran hundreds
