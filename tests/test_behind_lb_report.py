"""The report's rules for faults behind the load balancer, on entries made here (the rules are
pure functions of results.json entries), and ``bench --lb`` writing what the hops cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.report import behind_lb
from bench.report.tables import merge_faults
from tests.test_topology import need


def entry(scenario: str, t: str, replay: str | None, sticky: bool = False, mode: str = "hardened",
          lost: int = 0, unrecovered: int = 0, reconnects: int = 0) -> dict[str, Any]:  # fmt: skip
    e: dict[str, Any] = {
        "scenario": scenario, "transport": t, "mode": mode, "clients": 5, "lost": lost,
        "duplicated": 0, "unrecovered": unrecovered, "passed": not (lost or unrecovered),
        "max_stall_ms": 300.0, "user_saw": "an error: 503: No server\nis available",
        "reconnects": reconnects, "reconnect_reasons": {"connection lost": reconnects},
    }  # fmt: skip
    if replay is not None:
        e["topology"] = {"replay": replay, "sticky": sticky, "source": "llm"}
    return e


def test_deployments_are_rows_of_their_own_not_replacements() -> None:
    docs = [{"faults": [entry("backend-kill", "ws", "pod", lost=9)]},
            {"faults": [entry("backend-kill", "ws", "redis")]},
            {"faults": [entry("backend-kill", "ws", None)]}]  # fmt: skip
    merged = merge_faults(docs)
    assert len(merged) == 3
    plain, lb = behind_lb.split(merged)
    assert len(plain) == 1 and {behind_lb.deployment(e) for e in lb} == {"pod", "redis"}


def test_an_idle_cut_names_its_timeout_and_nginx_its_profile() -> None:
    idle = entry("idle-timeout", "sse", "redis")
    idle["topology"].update(lb="nginx", profile="defaults", idle_timeout_s=60.0)
    assert behind_lb.deployment(idle) == "redis, nginx defaults, idle 60 s"
    kill = entry("backend-kill", "sse", "redis")
    kill["topology"].update(idle_timeout_s=60.0)  # the cut is no part of a kill's deployment
    assert behind_lb.deployment(kill) == "redis"


def _verdict(entries: list[dict[str, Any]], claim: str) -> dict[str, str]:
    return next(v for v in behind_lb.verdicts(entries) if v["claim"].startswith(claim))


def test_stickiness_is_nuanced_when_only_pod_replay_loses() -> None:
    entries = [entry("backend-kill", t, "pod", lost=50, unrecovered=2) for t in ("sse", "ws")]
    entries += [entry("backend-kill", t, "redis") for t in ("sse", "ws")]
    v = _verdict(entries, "WebSockets need sticky sessions")
    assert v["verdict"] == "nuanced" and "lost or refused on sse, ws" in v["why"]
    entries += [entry("rolling-deploy", "ws", "redis", lost=3)]
    assert _verdict(entries, "WebSockets need sticky")["verdict"] == "confirmed"
    clean = [entry("backend-kill", t, r) for t in ("sse", "ws") for r in ("pod", "redis")]
    assert _verdict(clean, "WebSockets need sticky")["verdict"] == "refuted"
    assert _verdict([], "WebSockets need sticky")["verdict"] == "not measured"


def test_invisible_sse_reconnects_need_every_default_stream_whole() -> None:
    ok = [entry("backend-kill", "sse", "redis", mode="default")]
    assert _verdict(ok, "SSE reconnects are invisible")["verdict"] == "confirmed"
    gave_up = [entry("backend-kill", "sse", "redis", mode="default", lost=90, unrecovered=1)]
    v = _verdict(gave_up, "SSE reconnects are invisible")
    assert v["verdict"] == "refuted" and "\n" not in v["why"]  # a proxy's page, on one line


def test_heartbeats_verdict_compares_cuts_with_and_without() -> None:
    on = [entry("idle-timeout", t, "redis") for t in ("sse", "ws")]
    off = [entry("idle-timeout-silent", t, "redis", reconnects=3) for t in ("sse", "ws")]
    assert _verdict(on + off, "WebSockets need heartbeats")["verdict"] == "nuanced"
    only_ws = [*on, entry("idle-timeout-silent", "ws", "redis", reconnects=3),
               entry("idle-timeout-silent", "sse", "redis")]  # fmt: skip
    assert _verdict(only_ws, "WebSockets need heartbeats")["verdict"] == "confirmed"
    none = on + [entry("idle-timeout-silent", t, "redis") for t in ("sse", "ws")]
    assert _verdict(none, "WebSockets need heartbeats")["verdict"] == "refuted"


def test_matrix_marks_what_lost_tokens() -> None:
    lines = behind_lb.matrix_md([entry("backend-kill", "ws", "pod", lost=7, unrecovered=1),
                                 entry("backend-kill", "ws", "redis")])  # fmt: skip
    row = next(line for line in lines if line.startswith("| backend-kill | ws |"))
    assert "**7 lost, 1/5 unrecovered**" in row and "| ok |" in row
    assert all("\n" not in line for line in lines)


def test_bench_through_the_lb_records_each_hop(tmp_path: Path) -> None:
    need("haproxy")
    need("redis-server")
    out = tmp_path / "run"
    run = subprocess.run(
        [sys.executable, "-m", "bench.cli", "bench", "--transport", "ws", "--clients", "20",
         "--ramp", "1s", "--hold", "2", "--windows", "1", "--think", "0", "--tokens", "100",
         "--lb", "haproxy", "--backends", "2", "--source", "llm", "--replay", "redis",
         "--ttft", "0.05-0.2", "--no-yardstick", "--out", str(out)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    (r,) = doc["runs"]
    assert r["topology"]["backends"] == 2 and doc["config"]["deploy"]["replay"] == "redis"
    (step,) = r["steps"]
    assert step["lost"] == 0 and step["tokens"] > 0
    for part in ("lb", "redis", "producer"):  # each measured apart, alive through the window
        hop = step["hops"][part]
        assert hop["processes"] >= 1 and hop["rss_bytes"] > 0 and hop["cpu_us_per_token"] >= 0
    # /proc counts CPU in 10 ms ticks: the producer (tens of µs a token) always shows some
    assert step["hops"]["producer"]["cpu_us_per_token"] > 0
    args = ["report", str(out), "--out", str(tmp_path / "rep")]
    report = subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    text = (tmp_path / "rep" / "REPORT.md").read_text()
    assert "## What the extra hops cost" in text and "2 backends, llm, redis" in text
