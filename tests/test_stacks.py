"""Stacks, write windows and the collector policy (issue 12): what each option changes on the
wire and in the counters. The contract and resilience suites run on both stacks (conftest)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ServerHandle, wait_for


def _chunks(srv: ServerHandle, tokens: int, rate: float) -> list[int]:
    """Read one SSE stream over a raw socket: the number of events in each HTTP chunk."""
    from urllib.request import Request, urlopen

    body = json.dumps({"tokens": tokens, "rate": rate}).encode()
    req = Request(srv.url + "/v1/streams", body, {"Content-Type": "application/json"})
    sid = json.loads(urlopen(req, timeout=5).read())["id"]
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(f"GET /v1/streams/{sid}/sse HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n0\r\n\r\n" not in data:
        got = sock.recv(65536)
        if not got:
            break
        data += got
    sock.close()
    rest = data.split(b"\r\n\r\n", 1)[1]
    counts = []
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunk, rest = rest[:size], rest[size + 2 :]
        counts.append(chunk.count(b'\ndata: {"seq"'))
    return [c for c in counts if c]


@pytest.mark.parametrize("stack", ["stock", "lean"])
def test_a_write_window_puts_several_tokens_in_one_write(server_factory, stack: str) -> None:
    # 40 tok/s is a token every 25 ms: one per write without a window, about four in 100 ms.
    plain = server_factory("sse", "--stack", stack)
    flushed = server_factory("sse", "--stack", stack, "--flush-ms", "100")
    one = _chunks(plain, 40, 40.0)
    four = _chunks(flushed, 40, 40.0)
    assert sum(one) == sum(four) == 40
    assert sum(one) / len(one) <= 1.5, one
    assert sum(four) / len(four) >= 2.5, four


def test_every_collection_is_counted_by_its_pause() -> None:
    import gc

    from servers.process import gcpolicy
    from servers.process import metrics as m

    metrics = m.Metrics("sse")
    before = len(gc.callbacks)
    gcpolicy.count_pauses(metrics)
    try:
        gc.collect()
        assert sum(metrics.get(m.GC_PAUSES + i) for i in range(5)) >= 1
        assert metrics.get(m.GC_FULL) >= 1 and metrics.get(m.GC_PAUSE_US) > 0
    finally:
        del gc.callbacks[before:]
    assert (
        gcpolicy.pause_bucket(0.5) == m.GC_PAUSES and gcpolicy.pause_bucket(5000) == m.GC_PAUSES + 4
    )


def test_tuned_freezes_and_stock_does_not(server_factory) -> None:
    tuned = server_factory("ws", "--gc", "tuned")
    stock = server_factory("ws")
    assert wait_for(lambda: tuned.counters()["gc_frozen"] > 1000, 10)
    time.sleep(0.5)
    assert stock.counters()["gc_frozen"] == 0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, timeout=240)  # fmt: skip


def test_a_stack_a_transport_lacks_is_a_one_line_error(tmp_path: Path) -> None:
    for args in (
        ["serve", "ws", "--stack", "granian", "--port", "0"],
        ["serve", "sse", "--gc", "sometimes", "--port", "0"],
        ["bench", "--transport", "sse", "--flush-ms", "0,x", "--out", str(tmp_path)],
        ["bench", "--transport", "sse", "--stack", "fast", "--out", str(tmp_path)],
    ):
        r = _cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("error: "), r.stderr


def test_a_sweep_of_stacks_and_windows_is_reported_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    r = _cli("bench", "--transport", "sse", "--stack", "lean,floor", "--flush-ms", "0,100",
             "--clients", "60", "--ramp", "1s", "--hold", "2", "--windows", "1", "--quiet",
             "--no-yardstick", "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    got = {(run["transport"], run["stack"], run["flush_ms"]) for run in doc["runs"]}
    assert got == {
        ("sse", "lean", 0.0),
        ("sse", "lean", 100.0),
        ("sse", "floor", 0.0),
        ("sse", "floor", 100.0),
    }
    for run in doc["runs"]:
        st = run["steps"][0]
        assert st["lost"] == 0 and st["tokens"] > 500, run
        assert st["server"]["gc"]["pauses"], st["server"]
        assert run["server_settings"]["effective"]["flush_ms"] == run["flush_ms"]
        if run["flush_ms"]:  # a token waits for its window: never less than 0, at most ~100 ms
            assert st["latency_ms"]["p50"] > 5
    rep = _cli("report", str(out), "--out", str(tmp_path / "rep"))
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "rep" / "REPORT.md").read_text()
    assert "## Tokens per write" in text and "| SSE | lean | 100 |" in text
    assert (tmp_path / "rep" / "flush_curve.png").stat().st_size > 10_000


def test_granian_runs_the_stock_app_of_sse_and_polling_and_not_websocket() -> None:
    import transports
    from servers.base import ServerConfig, load

    assert "granian" in transports.get("sse").stacks and "granian" in transports.get("poll").stacks
    assert "granian" not in transports.get("ws").stacks  # granian sends no WebSocket pings
    settings = load("sse", "granian").settings(ServerConfig("sse", stack="granian"))
    assert settings["effective"]["server"].startswith("granian ")
    with pytest.raises(ValueError, match="no 'granian' stack"):
        ServerConfig("ws", stack="granian")
