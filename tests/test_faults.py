"""Fault scenarios: every transport resumes with nothing lost where the contract promises it."""

from __future__ import annotations

import pytest

from bench.faults import scenarios as faults
from bench.faults.scenarios import Timeline
from tests.conftest import TRANSPORTS

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_mid_stream_loses_nothing(transport: str) -> None:
    (entry,) = faults.run("close", [transport], ["hardened"], clients=2, tokens=160,
                          heartbeat=0.5, window_s=20)  # fmt: skip
    assert entry["lost"] == entry["duplicated"] == entry["out_of_order"] == 0, entry
    assert entry["unexpected"] == 0 and entry["unrecovered"] == 0, entry
    assert entry["detected"] == 2 and entry["passed"], entry
    assert entry["reconnect_ms"]["max"] is not None


@pytest.mark.parametrize("transport", ["sse", "grpc"])
def test_blackhole_needs_a_watchdog(transport: str) -> None:
    hardened, default = (
        faults.run("blackhole", [transport], [mode], clients=1, tokens=240, heartbeat=0.5,
                   window_s=12)[0]
        for mode in ("hardened", "default")
    )  # fmt: skip
    assert hardened["passed"] and hardened["detection_ms"]["max"] < 3000, hardened
    # As they come, neither EventSource nor grpcio notices a silent connection in 12 s.
    assert default["detected"] == 0 and default["unrecovered"] == 1, default


def test_server_restart_is_resumed() -> None:
    (entry,) = faults.run("restart", ["ws"], ["hardened"], clients=2, tokens=200,
                          heartbeat=0.5, window_s=25)  # fmt: skip
    assert entry["passed"], entry


def test_summary_counts_from_timelines() -> None:
    line = Timeline()
    line.retries = [(10.5, "connection lost")]
    line.connects = [9.0, 10.7]
    line.tokens = [(9.1, 0, 1_000_000), (10.0, 1, 1_000_000), (10.8, 1, 900_000_000),
                   (10.9, 2, 5_000_000), (11.0, 4, 1_000_000)]  # fmt: skip
    line.done = True
    entry = faults.summarize("x", "sse", "hardened", [line], [10.2], 5, live_ms=250, window_s=2)
    assert entry["detection_ms"]["p50"] == pytest.approx(300, abs=1)
    assert entry["reconnect_ms"]["p50"] == pytest.approx(200, abs=1)
    assert entry["catchup_ms"]["p50"] == pytest.approx(200, abs=1)  # 10.8 was late; 10.9 live
    assert (entry["duplicated"], entry["lost"]) == (1, 1)  # seq 1 twice, seq 3 never
    assert not entry["passed"]
