"""Clocks: every server tells its time, and a load process whose clock is wrong by a known
amount (injected) measures the same latencies as one whose clock is right (bench.load.clock)."""

from __future__ import annotations

import asyncio

import pytest

import transports
from bench.load.clock import Clock, best, summarize
from bench.load.fleet import Fleet
from bench.load.messages import LoaderConfig
from bench.results.hist import Histogram
from tests.conftest import TRANSPORTS

SHIFT_NS = 400_000_000  # the skewed load process's clock reads 400 ms late


def test_the_offset_is_the_exchange_with_the_least_round_trip() -> None:
    # (sent, server, answered): the server is 1,000 ns ahead; the slow exchange says otherwise
    got = best([(0, 9_000, 20_000), (100, 1_150, 200), (300, 1_000, 500)])
    assert (got.offset_ns, got.rtt_ns, got.at_ns) == (1_000, 100, 100)
    with pytest.raises(ValueError):
        best([])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_server_tells_its_clock(servers, transport: str) -> None:
    """On one machine the true offset is 0, so the estimate is within half its round trip."""
    url = servers[transport].url
    clock = Clock()
    asyncio.run(clock.sync(transport, url))
    assert clock.before is not None, clock.error
    assert abs(clock.before.offset_ns) <= clock.before.rtt_ns // 2 + 1
    skewed = Clock(shift_ns=-SHIFT_NS)
    asyncio.run(skewed.sync(transport, url))
    assert skewed.before is not None
    assert abs(skewed.before.offset_ns - SHIFT_NS) <= skewed.before.rtt_ns // 2 + 1
    assert abs(skewed.now() - clock.now()) < 50_000_000  # both on the server's clock now


def test_a_server_without_a_clock_leaves_the_loader_on_its_own_and_says_so() -> None:
    clock = Clock()
    asyncio.run(clock.sync("sse", "http://127.0.0.1:9"))  # nothing listens on port 9
    assert clock.before is None and clock.offset_ns == 0 and clock.error
    doc = clock.doc()
    assert not doc["synced"] and doc["uncertainty_ns"] is None
    assert "own clock" in summarize([doc], 250.0)["warning"]


def _latencies(transport: str, url: str) -> tuple[list[Histogram], list[dict]]:
    """Two load processes at once, 20 users each for a few seconds, both clocks 400 ms late:
    the first does not read the server's clock, the second does. Their latencies and clocks."""
    binds = transports.get(transport).binds_source

    def config(k: int) -> LoaderConfig:
        return LoaderConfig(
            transport=transport, url=url, index=k, tokens=80, rate=40.0, think=0.2,
            interval=0.5, clock_shift_ns=SHIFT_NS, clock_sync=bool(k), seed=k,
            local_addr="127.0.0.1" if binds else None,
        )  # fmt: skip

    cfgs = [config(0), config(1)]
    fleet = Fleet(cfgs, None)
    hists, clocks = [Histogram(), Histogram()], [{}, {}]
    try:
        fleet.send([{"target": 20, "ramp_s": 0.5}] * 2)
        for _ in range(14):
            for r in fleet.poll(0.25):
                hists[r["loader"]].merge(Histogram.from_json(r["latency"]))
        for r in fleet.stop():
            hists[r["loader"]].merge(Histogram.from_json(r["latency"]))
            clocks[r["loader"]] = r["clock"]
    finally:
        fleet.stop()
    for h in hists:
        assert h.count > 500, f"only {h.count} tokens read"
    return hists, clocks


# SSE and WebSocket account in the compiled path (clients/_fastpath.c), gRPC and polling in Python.
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_shifted_loader_clock_is_corrected(servers, transport: str) -> None:
    (wrong, right), (unsynced, clock) = _latencies(transport, servers[transport].url)
    # Uncorrected, every latency reads 400 ms high; corrected, they are the few ms they are.
    assert wrong.percentile(50) / 1000 >= 0.9 * SHIFT_NS / 1e6
    assert right.percentile(50) / 1000 < 0.25 * SHIFT_NS / 1e6
    assert not unsynced["synced"] and unsynced["offset_ns"] is None
    assert clock["synced"] and clock["shift_ns"] == SHIFT_NS
    assert abs(clock["offset_ns"] + SHIFT_NS) <= clock["rtt_ns"] // 2 + 1
    assert clock["after_offset_ns"] is not None  # read again once the users ended
    assert abs(clock["drift_ns"]) < 50_000_000
