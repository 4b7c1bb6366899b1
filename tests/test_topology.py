"""The production topology with real processes: HAProxy in front of backends on their own
ports, the producer (--source llm), redis-server for the shared log. Everything is started on
free ports and stopped by the fixtures; a missing binary skips, except in CI (CI=true), which
installs both (.ci/run) and so fails instead."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import ClientOptions, StreamError, create_stream, stream
from servers.base import ServerConfig
from servers.process import metrics
from servers.tokens.core import Codec
from servers.tokens.llm import LlmShape
from servers.topology.haproxy import LbConfig, LbError, binary, listeners, render
from servers.topology.topology import Topology, TopologyConfig
from tests.conftest import TRANSPORTS

FAST_MODEL = LlmShape(ttft_min_s=0.05, ttft_max_s=0.2, jitter=0.3)
HARDENED = ClientOptions(heartbeat=1.0, give_up_after=20.0, backoff_max=0.5)


def need(name: str) -> None:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found is None:
        message = f"{name} is not installed: apt-get install {name.replace('-server', '')}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (.ci/run installs it)")
        pytest.skip(message)


def deployment(tmp: Path, transport: str, replay: str, backends: int, sticky: bool = False,
               heartbeat: float = 1.0, lb_processes: int = 1) -> Topology:  # fmt: skip
    need("haproxy")
    if replay == "redis":
        need("redis-server")
    cfg = ServerConfig(transport=transport, port=0, heartbeat=heartbeat, grace=1.0,
                       source="llm", replay=replay, llm=FAST_MODEL)  # fmt: skip
    lb = LbConfig(sticky=sticky, check_inter_s=0.5, processes=lb_processes)
    return Topology(cfg, TopologyConfig(backends, lb), tmp)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Topology]]:
    """Topologies a test starts, all stopped at its end whatever happened."""
    running: list[Topology] = []
    yield running
    for topo in running:
        topo.stop()


def start(running: list[Topology], topo: Topology) -> Topology:
    running.append(topo)
    topo.start()
    return topo


async def read_all(transport: str, url: str, tokens: int, rate: float,
                   options: ClientOptions | None = None,
                   on_seq: object = None) -> tuple[str, list[int]]:  # fmt: skip
    doc = await create_stream(transport, url, tokens=tokens, rate=rate)
    decoded = Codec().decode(doc["id"])
    seqs: list[int] = []
    async for token in stream(transport, url, doc["id"], options=options,
                              cookie=doc.get("cookie")):  # fmt: skip
        assert token.text == decoded.text(token.seq)
        seqs.append(token.seq)
        if callable(on_seq):
            on_seq(seqs, doc)
    return doc["id"], seqs


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tokens_flow_through_the_lb_from_the_shared_log(
    transport: str, tmp_path: Path, started: list[Topology]
) -> None:
    topo = start(started, deployment(tmp_path, transport, "redis", backends=3))

    async def main() -> list[list[int]]:
        return [(await read_all(transport, topo.url, 30, 200.0))[1] for _ in range(3)]

    for seqs in asyncio.run(main()):
        assert seqs == list(range(30))
    text = (tmp_path / "haproxy.cfg").read_text()
    assert text.count("    server pod") == 3 and "cookie" not in text


def test_several_lb_processes_share_the_port(tmp_path: Path, started: list[Topology]) -> None:
    """50,000 connections need several HAProxy processes (9,000 each): they share one port."""
    topo = start(started, deployment(tmp_path, "sse", "redis", backends=2, lb_processes=2))
    assert topo.lb is not None and len(topo.lb.pids) == 2 and listeners(topo.port) == 2

    async def main() -> list[list[int]]:
        return [(await read_all("sse", topo.url, 20, 200.0))[1] for _ in range(4)]

    assert all(seqs == list(range(20)) for seqs in asyncio.run(main()))


def _busy_backend(topo: Topology) -> int:
    """The backend with a stream open now (0 if none is: a poll between two requests)."""
    for i, sup in enumerate(topo.backends):
        if sup.metrics_file and metrics.read_rows(sup.metrics_file, 1)[0]["connections_open"] > 0:
            return i
    return 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_backend_kill_loses_nothing_with_redis_replay(
    transport: str, tmp_path: Path, started: list[Topology]
) -> None:
    topo = start(started, deployment(tmp_path, transport, "redis", backends=2))
    killed: list[int] = []

    def on_seq(seqs: list[int], doc: dict[str, object]) -> None:
        if len(seqs) == 40 and not killed:
            killed.append(_busy_backend(topo))
            topo.kill_backend(killed[0])

    _, seqs = asyncio.run(read_all(transport, topo.url, 120, 60.0, HARDENED, on_seq))
    assert killed and topo.backends[killed[0]].pids == []
    assert seqs == list(range(120))  # each exactly once, in order, across the kill


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pod_replay_without_stickiness_refuses_with_a_clear_error(
    transport: str, tmp_path: Path, started: list[Topology]
) -> None:
    topo = start(started, deployment(tmp_path, transport, "pod", backends=2))

    async def main() -> list[object]:
        out: list[object] = []
        for _ in range(4):
            try:
                out.append((await read_all(transport, topo.url, 20, 200.0))[1])
            except StreamError as exc:
                out.append(exc)
        return out

    results = asyncio.run(main())
    refused = [r for r in results if isinstance(r, StreamError)]
    assert refused, "round robin over two pods sent no read to a pod without the answer"
    for r in results:
        if isinstance(r, StreamError):
            assert r.status in (404, "NOT_FOUND") and "not held by this backend" in r.message
        else:
            assert r == list(range(20))  # never a silent gap


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sticky_pod_replay_reads_and_a_kill_is_refused_not_a_gap(
    transport: str, tmp_path: Path, started: list[Topology]
) -> None:
    topo = start(started, deployment(tmp_path, transport, "pod", backends=2, sticky=True))
    assert asyncio.run(read_all(transport, topo.url, 20, 200.0))[1] == list(range(20))
    got: list[int] = []

    def on_seq(seqs: list[int], doc: dict[str, object]) -> None:
        got[:] = seqs  # what the user was shown before the refusal
        if len(seqs) == 20:  # the pod the cookie names (AWSALB=pod1|<dates>: backend 0)
            pod = str(doc["cookie"]).split("=", 1)[1].split("|")[0]
            topo.kill_backend(int(pod.removeprefix("pod")) - 1)

    with pytest.raises(StreamError) as refused:
        asyncio.run(read_all(transport, topo.url, 160, 40.0, HARDENED, on_seq))
    assert "not held by this backend" in refused.value.message
    assert 20 <= len(got) < 160 and got == list(range(len(got)))  # a prefix, no gap


def test_rendered_configurations_are_valid_haproxy(tmp_path: Path) -> None:
    need("haproxy")
    pods = [("127.0.0.1", 9001), ("127.0.0.1", 9002)]
    for lb in (LbConfig(), LbConfig(sticky=True, balance="leastconn"), LbConfig(h2=True)):
        text = render(lb, ["127.0.0.1", "127.0.0.2"], 9000, pods, http_check=not lb.h2)
        path = tmp_path / "check.cfg"
        path.write_text(text)
        check = subprocess.run([binary(), "-c", "-q", "-f", str(path)], capture_output=True)
        assert check.returncode == 0, check.stderr.decode()
        assert "timeout tunnel 60000ms" in text
        assert ("cookie AWSALB insert indirect nocache" in text) == lb.sticky
        assert ("proto h2" in text) == lb.h2


def test_a_missing_haproxy_is_one_line_saying_how_to_install(monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(LbError, match=r"^haproxy is not installed: run `apt-get install haproxy`"):
        binary()


def test_llm_timing_is_reproducible_with_its_pauses() -> None:
    _, s = Codec().new_stream(50, 10.0, 0)
    shape = LlmShape(0.2, 2.0, 0.3, pause_every=20, pause_s=5.0)
    gaps = list(shape.gaps(s))
    assert gaps == list(shape.gaps(s)) and len(gaps) == 50
    assert 0.2 <= gaps[0] <= 2.0
    assert all(5.0 + 0.07 <= gaps[i] <= 5.0 + 0.13 for i in (20, 40))
    assert all(0.07 <= g <= 0.13 for i, g in enumerate(gaps[1:], 1) if i % 20)
    assert sum(gaps) <= shape.longest_s(s)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["serve", "sse", "--backends", "3"], "--backends needs --lb haproxy"),
        (["serve", "sse", "--lb", "envoy"], "--lb: haproxy or nginx, not 'envoy'"),
        (["serve", "sse", "--lb", "nginx", "--sticky"], "nginx open source has no cookie"),
        (["serve", "sse", "--lb", "nginx", "--lb-check", "1"], "no active health check"),
        (["serve", "sse", "--lb-profile", "defaults"], "--lb-profile does nothing without"),
        (["serve", "sse", "--lb", "nginx", "--lb-profile", "stock"], "--lb-profile: defaults"),
        (["serve", "sse", "--source", "llm", "--ttft", "fast"], "--ttft: MIN-MAX seconds"),
        (["faults", "--scenario", "backend-kill"], "backend-kill is a fault behind a load"),
        (["faults", "--lb", "haproxy", "--scenario", "kill"], "behind --lb use backend-kill"),
    ],
)
def test_deployment_options_fail_in_one_line(args: list[str], says: str) -> None:
    run = subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and says in run.stderr, run.stderr


def test_faults_behind_the_lb_end_to_end(tmp_path: Path) -> None:
    """The CLI: a backend kill behind HAProxy with the shared log, its table and its JSON."""
    need("haproxy")
    need("redis-server")
    out = tmp_path / "run"
    run = subprocess.run(
        [sys.executable, "-m", "bench.cli", "faults", "--transport", "ws", "--scenario",
         "backend-kill", "--mode", "hardened", "--lb", "haproxy", "--backends", "2",
         "--lb-check", "0.5", "--source", "llm", "--replay", "redis", "--ttft", "0.05-0.2",
         "--clients", "4", "--heartbeat", "1", "--window", "25", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    (entry,) = doc["faults"]
    assert entry["scenario"] == "backend-kill" and entry["lost"] == 0 and entry["passed"]
    assert entry["topology"]["backends"] == 2 and doc["config"]["replay"] == "redis"
    assert (out / "topology" / "hardened" / "backend-kill-ws" / "haproxy.cfg").exists()
