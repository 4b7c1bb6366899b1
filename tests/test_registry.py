"""The transport registry: one record per transport, and a new transport is one record more.

A throwaway transport (tests/plugin: NDJSON over chunked HTTP, its own server and client module
and nothing else) goes through ``tokenbench serve``, a reader with resume, a fault run and a
small bench run, in subprocesses that learn of it only from ``TOKENBENCH_PLUGINS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import transports
from bench import results
from bench.faults.proxy import Fault, FaultProxy
from clients import ClientOptions, create_stream, reader_class
from servers.tokens.core import Codec
from tests.conftest import start_server

pytestmark = pytest.mark.timeout(120)


def test_the_four_are_registered_once_with_what_differs() -> None:
    assert transports.names()[:4] == ("sse", "ws", "grpc", "poll")
    assert {t.name for t in transports.all_transports() if not t.binds_source} == {"grpc"}
    assert {t.name: t.fast_path for t in transports.all_transports() if t.fast_path} == {
        "sse": "sse", "ws": "ws", "grpc": "grpc", "poll": "poll",
    }  # fmt: skip
    # a load process reads gRPC with its own h2 client while the compiled path is on
    assert transports.get("grpc").load_client(True)[0].__name__ == "H2GrpcReader"
    assert transports.get("grpc").load_client(False)[0].__name__ == "GrpcReader"
    assert transports.get("sse").load_client(True)[0].__name__ == "SSEReader"
    with pytest.raises(ValueError, match="unknown transport 'pigeon': one of sse, ws, grpc, poll"):
        transports.get("pigeon")
    assert [t.name for t in transports.select("grpc, sse")] == ["grpc", "sse"]


def test_no_module_outside_a_transport_branches_on_its_name() -> None:
    """wrk's rule: what differs is in the record. Only a transport's own modules, the registry
    and the verdicts (claims about SSE and WebSocket by name, on one server, behind the LB and
    through the proxies)
    may spell the names out."""
    root = Path(__file__).resolve().parent.parent
    own = {"servers/sse/stock.py", "servers/ws/stock.py", "servers/grpc/stock.py",
    "servers/poll/stock.py",
           "clients/sse.py", "clients/ws.py", "clients/rpc.py", "clients/poll.py",
           "clients/h2grpc.py", "clients/h2conn.py", "clients/grpccall.py",
           "transports/__init__.py", "bench/report/verdicts.py",
           "bench/report/behind_lb.py", "bench/report/proxies.py"}  # fmt: skip
    pattern = ("== \"sse\"", "== \"ws\"", "== \"grpc\"", "== \"poll\"", "!= \"sse\"", "!= \"grpc\"",
               "in (\"sse\"", "(\"sse\", \"ws\"")  # fmt: skip
    found = []
    for path in sorted(root.glob("*/**/*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith((".venv/", "tests/", "build/", "proto/")) or rel in own:
            continue
        text = path.read_text()
        found += [f"{rel}: {p}" for p in pattern if p in text]
    assert not found, found


@pytest.fixture
def ndjson(monkeypatch: pytest.MonkeyPatch) -> Iterator[transports.Transport]:
    import tests.plugin

    monkeypatch.setenv("TOKENBENCH_PLUGINS", "tests.plugin")
    transports.register(tests.plugin.NDJSON)
    yield tests.plugin.NDJSON
    transports.unregister("ndjson")


async def test_a_new_transport_serves_reads_resumes_and_survives_a_fault(ndjson) -> None:
    srv = start_server("ndjson", "--heartbeat", "0.5")
    try:
        info = await create_stream("ndjson", srv.url, tokens=120, rate=400)
        expected = Codec().decode(info["id"])
        got: list[tuple[int, str]] = []
        proxy = FaultProxy(("127.0.0.1", srv.port), {0: Fault("reset", after_bytes=2001)}.get)
        port = await proxy.start()
        opts = ClientOptions(heartbeat=0.5, backoff_initial=0.02, give_up_after=20)
        reader = reader_class("ndjson")(
            ndjson.url("127.0.0.1", port), info["id"], lambda s, t, x: got.append((s, x)),
            None, opts,
        )  # fmt: skip
        try:
            await reader.run()
        finally:
            await proxy.stop()
        assert got == [(s, expected.text(s)) for s in range(120)]
        assert proxy.fired == [(0, "reset")] and reader.stats.reconnects == 1
        assert srv.counters()["resumes_total"] == 0  # a plugin counts what it chooses to
        assert "Traceback" not in srv.stderr()
    finally:
        srv.stop()
        srv.stderr_path.unlink(missing_ok=True)


def test_a_new_transport_runs_through_bench_and_faults(ndjson, tmp_path: Path) -> None:
    env = {**os.environ, "TOKENBENCH_PLUGINS": "tests.plugin"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                              text=True, timeout=100, env=env)  # fmt: skip

    out = tmp_path / "bench"
    proc = cli("bench", "--transport", "ndjson", "--clients", "30", "--ramp", "1s", "--hold",
               "3", "--tokens", "60", "--think", "0.2", "--out", str(out), "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = results.load(out)["runs"]
    (step,) = run["steps"]
    assert run["transport"] == "ndjson" and step["tokens"] > 0
    assert step["lost"] == step["duplicated"] == step["wrong_text"] == 0, step
    assert step["loadgen"]["fast_path"] is False  # it has no compiled path, and says so
    out = tmp_path / "faults"
    proc = cli("faults", "--transport", "ndjson", "--scenario", "close", "--mode", "hardened",
               "--clients", "2", "--tokens", "160", "--window", "20",
               "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (entry,) = json.loads((out / "results.json").read_text())["faults"]
    assert entry["transport"] == "ndjson" and entry["passed"], entry
