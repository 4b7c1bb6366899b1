"""nginx in front (servers/topology/nginx.py), a real nginx on free ports: what each transport gets
through the configuration a team writes first (``defaults``) and the documented one, and
what an edge that cuts idle streams does with heartbeats off and on. A missing nginx skips,
except in CI (CI=true), which installs it (.ci/run) and so fails instead."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import ClientOptions, StreamError, create_stream, reader_class
from servers.base import ServerConfig
from servers.topology import nginx
from servers.topology.haproxy import LbConfig, LbError
from servers.topology.topology import Topology, TopologyConfig
from tests.conftest import TRANSPORTS
from tests.test_topology import need

HARDENED = ClientOptions(heartbeat=1.0, give_up_after=10.0, backoff_max=0.2)


@pytest.fixture
def started() -> Iterator[list[Topology]]:
    running: list[Topology] = []
    yield running
    for topo in running:
        topo.stop()


def front(running: list[Topology], tmp: Path, transport: str, profile: str,
          heartbeat: float = 1.0, idle_s: float = 60.0) -> Topology:  # fmt: skip
    need("nginx")
    cfg = ServerConfig(transport=transport, port=0, heartbeat=heartbeat, grace=1.0)
    lb = LbConfig(kind="nginx", profile=profile, idle_timeout_s=idle_s)
    topo = Topology(cfg, TopologyConfig(1, lb), tmp)
    running.append(topo)
    topo.start()
    return topo


async def lags(transport: str, url: str, tokens: int, rate: float,
               options: ClientOptions) -> tuple[list[float], int]:  # fmt: skip
    """Each token's lag behind its due time (ms), and the client's reconnects."""
    doc = await create_stream(transport, url, tokens=tokens, rate=rate)
    out: list[float] = []
    reader = reader_class(transport)(
        url, doc["id"], lambda s, t, x: out.append((time.time_ns() - t) / 1e6), None, options
    )
    await reader.run()
    return out, reader.stats.reconnects


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_transport_streams_through_the_documented_profile(
    transport: str, tmp_path: Path, started: list[Topology]
) -> None:
    topo = front(started, tmp_path, transport, "documented")
    got, reconnects = asyncio.run(lags(transport, topo.url, 30, 20.0, HARDENED))
    assert len(got) == 30 and reconnects == 0
    # paced, not held back: most tokens arrive close to their due time (margins for a slow VM)
    assert sorted(got)[len(got) // 2] < 500


def test_the_defaults_profile_is_proxy_pass_alone(tmp_path: Path) -> None:
    lb = LbConfig(kind="nginx", profile="defaults")
    text = nginx.render(lb, ["127.0.0.1"], 8080, [("127.0.0.1", 9000)], False, tmp_path)
    block = text.split("location / {")[1].split("}")[0].split()
    assert block == ["proxy_pass", "http://pods;"]
    cut = nginx.render(LbConfig(kind="nginx", profile="defaults", idle_timeout_s=100), ["h"], 1,
                       [("h", 2)], False, tmp_path)  # fmt: skip
    assert "proxy_read_timeout 100000ms;" in cut  # the edge's idle cut, the one change


# Through the defaults: what breaks, and the setting that fixes it (servers/topology/nginx.py).
DEFAULTS = {
    "sse": None,  # works: the servers send X-Accel-Buffering: no (sse-starlette's default)
    "ws": "404",  # no Upgrade/Connection to the backend: proxy_http_version 1.1 + the headers
    "grpc": "HTTP/2",  # an HTTP/1.1 listener: listen ... http2 and grpc_pass
    "poll": None,  # one short request at a time: nothing to fix
}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_what_the_defaults_profile_breaks(
    transport: str, tmp_path: Path, started: list[Topology]
) -> None:
    topo = front(started, tmp_path, transport, "defaults")
    once = ClientOptions(heartbeat=1.0, give_up_after=2.0, backoff_max=0.2)
    breaks = DEFAULTS[transport]
    if breaks is None:
        got, _ = asyncio.run(lags(transport, topo.url, 20, 20.0, once))
        assert len(got) == 20 and sorted(got)[10] < 500
        return
    with pytest.raises(Exception) as info:  # StreamError or GaveUp, per client
        asyncio.run(asyncio.wait_for(lags(transport, topo.url, 5, 20.0, once), 30))
    assert breaks in str(info.value), info.value
    if transport == "ws":
        assert isinstance(info.value, StreamError)


def test_sse_servers_ask_nginx_not_to_buffer(tmp_path: Path, started: list[Topology]) -> None:
    """Why SSE survives the defaults: the response says X-Accel-Buffering: no (nginx docs,
    proxy_buffering); a server that does not would be held back by nginx's buffers."""
    topo = front(started, tmp_path, "sse", "defaults")
    doc = asyncio.run(create_stream("sse", topo.url, tokens=2, rate=50.0))
    path = f"/v1/streams/{doc['id']}/sse"
    with urllib.request.urlopen(topo.backends[0].url + path, timeout=10) as r:
        assert r.headers["X-Accel-Buffering"] == "no"
    with urllib.request.urlopen(topo.url + path, timeout=10) as r:  # nginx acts on it, drops it
        assert r.headers["X-Accel-Buffering"] is None and r.read().count(b"\nid: ") >= 1


def test_nginx_refuses_a_bad_configuration_in_one_line(tmp_path: Path) -> None:
    need("nginx")
    lb = nginx.Nginx(LbConfig(kind="nginx"), tmp_path / "nginx.conf")
    with pytest.raises(LbError) as info:
        lb.start("events {}\nhttp { nonsense on; }\n", 1)
    assert "nginx refused" in str(info.value) and "\n" not in str(info.value)
    assert lb.pids == []


# An edge that cuts idle streams (proxy_read_timeout, grpc_read_timeout): a stream with gaps of
# 1 s behind a cut at 0.6 s, heartbeats off (30 s) and on (0.15 s); the client resumes.
@pytest.mark.parametrize("heartbeat", [30.0, 0.15], ids=["heartbeats-off", "heartbeats-on"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_idle_cut_and_what_heartbeats_save(
    transport: str, heartbeat: float, tmp_path: Path, started: list[Topology]
) -> None:
    topo = front(started, tmp_path, transport, "documented", heartbeat=heartbeat, idle_s=0.6)
    opts = ClientOptions(heartbeat=heartbeat, give_up_after=10.0, backoff_max=0.2)
    got, reconnects = asyncio.run(lags(transport, topo.url, 3, 1.0, opts))
    assert len(got) == 3  # resumed whole either way
    # long polling's server-side wait (25 s asked) outlasts the cut whatever the heartbeat
    cut = heartbeat > 1 or transport == "poll"
    assert (reconnects > 0) == cut, reconnects
    if transport == "poll":  # the fix: a wait under the proxy's read timeout
        short = ClientOptions(heartbeat=heartbeat, give_up_after=10.0, poll_timeout=0.3)
        assert asyncio.run(lags(transport, topo.url, 3, 1.0, short))[1] == 0


def test_bench_records_a_transport_the_proxy_does_not_carry(tmp_path: Path) -> None:
    """No 120 s wait for users that can never connect: one stream is read end to end first,
    and a transport that does not get through is recorded as such, with what the client saw."""
    need("nginx")
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "bench", "--transport", "ws", "--lb", "nginx",
         "--lb-profile", "defaults", "--users", "2", "--ramp", "0.5s", "--hold", "0.5",
         "--windows", "1", "--think", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["works"] is False and "404" in run["why"] and run["steps"] == []
    assert run["topology"]["lb"] == "nginx" and run["topology"]["profile"] == "defaults"
    assert "no stream got through" in done.stdout


def test_a_relative_workdir_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  started: list[Topology]) -> None:  # fmt: skip
    """bench writes under results/<run>/, a relative path: nginx must not resolve it twice."""
    monkeypatch.chdir(tmp_path)
    topo = front(started, Path("relative/run"), "sse", "documented")
    got, _ = asyncio.run(lags("sse", topo.url, 3, 50.0, HARDENED))
    assert len(got) == 3
