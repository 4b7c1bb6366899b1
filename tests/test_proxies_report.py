"""The proxies section and its verdict (bench/report/proxies.py): every outcome the rule names
is reached by some input, and the text comes from the figures."""

from __future__ import annotations

from typing import Any

import pytest

from bench.report import proxies


def run(transport: str, profile: str | None, works: bool = True, held: bool = True,
        p99: float = 4.0, lb: str = "nginx") -> dict[str, Any]:  # fmt: skip
    steps = [] if not works else [{
        "clients": 100, "latency_ms": {"p50": 1.5, "p99": p99}, "gap_p99_ms": 31.0,
        "goodput": 1.0 if held else 0.7, "slo": {"held": held},
    }]  # fmt: skip
    topo = {"lb": lb, **({"profile": profile} if profile else {})}
    return {"transport": transport, "topology": topo, "works": works,
            "why": None if works else "404: not found", "steps": steps}  # fmt: skip


def doc(*runs: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": "r1", "runs": list(runs)}


@pytest.mark.parametrize(
    ("defaults", "documented", "outcome"),
    [
        (run("sse", "defaults"), run("sse", "documented"), "confirmed"),
        (run("sse", "defaults", held=False, p99=900.0), run("sse", "documented"), "nuanced"),
        (run("sse", "defaults", works=False), run("sse", "documented"), "nuanced"),
        (run("sse", "defaults"), run("sse", "documented", works=False), "refuted"),
        (run("sse", "defaults"), None, "not measured"),
        (run("ws", "defaults"), run("ws", "documented"), "not measured"),
    ],
)
def test_sse_through_the_proxies_reaches_every_outcome(
    defaults: dict[str, Any], documented: dict[str, Any] | None, outcome: str
) -> None:
    runs = [defaults] + ([documented] if documented else [])
    (v,) = proxies.verdicts([doc(*runs)])
    assert v["verdict"] == outcome
    if outcome != "not measured":
        assert "SSE through nginx's defaults" in v["why"]
    if outcome == "nuanced":
        assert "proxy_buffering off" in v["why"]  # what it needed, from the profiles


def test_the_text_follows_the_figures() -> None:
    a = proxies.verdicts([doc(run("sse", "defaults", p99=4.0), run("sse", "documented"))])
    b = proxies.verdicts([doc(run("sse", "defaults", p99=7.5), run("sse", "documented"))])
    assert "p99 4.0 ms" in a[0]["why"] and "p99 7.5 ms" in b[0]["why"]


def test_what_each_transport_needed_comes_from_the_two_profiles() -> None:
    assert "proxy_set_header Upgrade $http_upgrade" in proxies.needed("ws")
    assert proxies.needed("grpc")[:3] == [
        "listen ... http2",
        "keepalive 64 (upstream)",
        "grpc_pass grpc://pods",
    ]
    found = [
        run("ws", "defaults", works=False), run("ws", "documented"),
        run("grpc", "defaults", works=False), run("grpc", "documented", works=False),
        run("poll", "defaults", works=False), run("sse", None, lb="haproxy"),
    ]  # fmt: skip
    md = "\n".join(proxies.markdown([doc(*found)]))
    ws = next(line for line in md.splitlines() if line.startswith("| WebSocket | nginx defaults"))
    assert "`proxy_http_version 1.1`" in ws and "**no**: 404: not found" in ws
    grpc = next(line for line in md.splitlines() if line.startswith("| gRPC | nginx defaults"))
    assert "not carried by the documented profile either" in grpc
    poll = next(line for line in md.splitlines() if line.startswith("| long polling"))
    assert "not measured (no run through the documented profile)" in poll
    assert "| SSE | haproxy | yes |" in md
    (v,) = proxies.verdicts([doc(*found)])
    assert v["verdict"] == "not measured"  # SSE was not through nginx at all


def test_runs_of_older_topologies_are_haproxy() -> None:
    old = {"transport": "sse", "topology": {"lb": {"sticky": False}}, "steps": []}
    assert [r.front for r in proxies.rows([doc(old)])] == ["haproxy"]
    assert proxies.rows([doc({"transport": "sse", "topology": None, "steps": []})]) == []


def test_what_to_ship_names_the_proxy_settings_a_transport_needed() -> None:
    from bench.report.ship import _proxy

    found = [doc(run("ws", "defaults", works=False), run("ws", "documented"),
                 run("sse", "defaults"), run("sse", "documented"))]  # fmt: skip
    (line,) = _proxy("ws", found)
    assert line.startswith("nginx configured as documented (keepalive 64 (upstream), proxy_http")
    assert "no stream got through (run `r1`)" in line
    assert _proxy("sse", found) == []  # the defaults carried it
    assert _proxy("grpc", found) == []  # not measured through nginx: nothing said
    broke = [doc(run("ws", "defaults", held=False), run("ws", "documented"))]
    assert "its SLO broke" in _proxy("ws", broke)[0]


def test_a_run_without_figures_is_not_measured_never_a_failure() -> None:
    bare = {"transport": "sse", "topology": {"lb": "nginx", "profile": "documented"},
            "steps": []}  # fmt: skip
    (v,) = proxies.verdicts([doc(run("sse", "defaults"), bare)])
    assert v["verdict"] == "not measured"
    checked = {**bare, "works": True}  # said it worked, measured nothing
    (v,) = proxies.verdicts([doc(run("sse", "defaults"), checked)])
    assert v["verdict"] == "not measured"


def test_every_run_of_a_profile_counts_whatever_the_order() -> None:
    held, broke = run("sse", "documented"), run("sse", "documented", works=False)
    for order in ([held, broke], [broke, held]):
        (v,) = proxies.verdicts([doc(run("sse", "defaults"), *order)])
        assert v["verdict"] == "refuted"


def test_a_default_value_is_not_an_addition() -> None:
    assert not any("timeout" in s for s in proxies.needed("ws"))
    assert "keepalive 64 (upstream)" in proxies.needed("sse")
