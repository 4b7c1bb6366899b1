"""The stop button's table and verdict (bench/report/stop.py): every outcome reachable."""

from __future__ import annotations

from typing import Any

import pytest

from bench.faults.stop import entry, summary
from bench.report import stop


def user(end_ms: float, wasted: int = 0) -> dict[str, Any]:
    return {"stop_to_last_ms": 0.0, "stop_to_end_ms": end_ms, "model_stop_ms": end_ms / 2,
            "answered_ms": end_ms, "wasted": wasted, "resumed_tokens": 0,
            "error": None}  # fmt: skip


def doc(ends: dict[str, list[float]], lb: str | None = None, run_id: str = "r1") -> dict[str, Any]:
    stops = []
    for t, values in ends.items():
        e = entry(t, [user(v) for v in values])  # type: ignore[misc]
        if lb:
            e["topology"] = {"lb": lb, "backends": 2}
        stops.append(e)
    config = {"rate": 40.0, "source": "llm" if lb else "derive", "replay": "redis"}
    return {"run_id": run_id, "kind": "stop", "config": config, "runs": [], "stops": stops}


def spread(center: float, n: int = 20, width: float = 0.2) -> list[float]:
    return [center + width * (i / (n - 1) - 0.5) for i in range(n)]


def verdict(*docs: dict[str, Any]) -> dict[str, str]:
    (v,) = stop.verdicts(list(docs))
    return v


def test_median_ci_is_distribution_free_and_wide_for_few() -> None:
    assert stop.median_ci([]) is None
    assert stop.median_ci([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)  # under 6: the whole range
    mid, lo, hi = stop.median_ci([float(i) for i in range(1, 21)])  # type: ignore[misc]
    assert mid == 10.5 and (lo, hi) == (6.0, 15.0)  # ranks 6 and 15 of 20 (95 %)


@pytest.mark.parametrize(
    ("ends", "outcome"),
    [
        ({"ws": spread(1.0), "sse": spread(40.0), "poll": spread(45.0)}, "confirmed"),
        ({"ws": spread(1.0), "sse": spread(2.0), "poll": spread(45.0)}, "nuanced"),
        ({"ws": spread(1.0, width=4), "sse": spread(2.0, width=4)}, "tie"),
        ({"ws": spread(5.0), "sse": spread(1.0), "grpc": spread(9.0)}, "refuted"),
    ],
)
def test_every_outcome_is_reachable(ends: dict[str, list[float]], outcome: str) -> None:
    v = verdict(doc(ends))
    assert v["verdict"] == outcome, v["why"]
    assert "WebSocket" in v["why"] and "one server" in v["why"]


def test_not_measured_without_websocket_and_another() -> None:
    assert verdict()["verdict"] == "not measured"
    assert verdict(doc({"ws": spread(1.0)}))["verdict"] == "not measured"
    assert verdict(doc({"sse": spread(1.0), "poll": spread(2.0)}))["verdict"] == "not measured"


def test_deployments_that_disagree_are_nuanced_and_named() -> None:
    one = doc({"ws": spread(1.0), "sse": spread(40.0)})
    behind = doc({"ws": spread(5.0), "sse": spread(1.0)}, lb="haproxy", run_id="r2")
    v = verdict(one, behind)
    assert v["verdict"] == "nuanced"
    assert "one server (stock, 1 worker)" in v["why"] and "(confirmed" in v["why"]
    assert "behind haproxy, 2 backends (stock, 1 worker; llm, redis)" in v["why"]
    assert "(refuted" in v["why"]


def test_too_few_users_or_a_stop_without_effect_is_not_judged() -> None:
    few = doc({"ws": [1.0, 1.1, 1.2], "sse": spread(40.0)})
    v = verdict(few)
    assert v["verdict"] == "not measured" and "WebSocket (one server" in v["why"]
    failed = doc({"ws": spread(1.0), "sse": spread(40.0)})
    failed["stops"][1]["stopped"] = 19  # one SSE stop did not take effect
    v = verdict(failed)
    assert v["verdict"] == "not measured"
    assert "SSE (one server (stock, 1 worker): 19 of 20" in v["why"]


def test_a_resume_that_returns_tokens_is_said_and_a_missing_figure_is_not_zero() -> None:
    d = doc({"ws": spread(1.0), "sse": spread(40.0)})
    d["stops"][1]["resumed_tokens"] = 3
    assert "a resume after the stop returned tokens on SSE" in verdict(d)["why"]
    table = "\n".join(stop.markdown([d]))
    assert "| **3** |" in table
    d["stops"][1]["resumed_tokens"] = None
    assert "not measured" in "\n".join(stop.markdown([d]))


def test_summary_and_entry_count_only_what_was_measured() -> None:
    assert summary([])["p50"] is None
    users = [user(2.0, wasted=1), {**user(0.0), "stop_to_end_ms": None, "error": "no end"}]
    e = entry("sse", users)  # type: ignore[arg-type]
    assert e["stopped"] == 1 and e["users"] == 2 and e["errors"] == ["no end"]
    assert e["wasted"]["total"] == 1 and e["stop_to_end_ms"]["values"] == [2.0]
    assert "**1/2**" in "\n".join(stop.markdown([{"run_id": "x", "config": {}, "stops": [e]}]))
