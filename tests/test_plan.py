"""``tokenbench plan``: the fleet for 50,000 users at 40 tok/s from the committed baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import results
from bench.report import figures

BASELINE = Path(__file__).resolve().parent.parent / "results" / "20261201-222029"


def _plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.cli", "plan", *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_the_plan_sizes_every_transport_from_the_baseline() -> None:
    r = _plan(str(BASELINE), "--users", "50000", "--rate", "40", "--json")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    knees = figures.knees(results.load_all(BASELINE))
    assert {row["transport"] for row in p["transports"]} == set(knees)
    for row in p["transports"]:
        knee = knees[row["transport"]]
        per_core = row["knee"]["value"]["tokens_per_s_per_core"]
        assert row["knee"]["kind"] == "measured" and row["knee"]["value"]["users"] == knee.clients
        assert per_core["mean"] == pytest.approx(knee.users_per_core.mean * 40, rel=1e-3)
        cores = row["server_cores"]["value"]
        assert row["server_cores"]["kind"] == "projected"
        assert cores["mean"] == pytest.approx(2_000_000 / per_core["mean"], rel=1e-2)
        assert cores["lo"] <= cores["mean"] <= cores["hi"]
        assert row["pods"]["value"] * 2 >= cores["hi"]
        load = row["load"]["value"]
        assert load["processes"] >= 50_000 / 12_000 and load["nodes"] * 8 >= load["processes"]
        if knee.harness_bound:
            assert "upper bound" in row["server_cores"]["how"]
    assert p["load_balancer"]["kind"] == p["redis"]["kind"] == "not measured"
    text = _plan(str(BASELINE)).stdout
    assert "fleet for 50,000 users at 40 tok/s" in text and "not measured" in text
    assert "tokenbench bench --cluster" in text


def test_half_the_rate_needs_half_the_server_cores() -> None:
    full = json.loads(_plan(str(BASELINE), "--json").stdout)
    half = json.loads(_plan(str(BASELINE), "--rate", "20", "--json").stdout)
    for a, b in zip(full["transports"], half["transports"], strict=True):
        assert b["server_cores"]["value"]["mean"] == pytest.approx(
            a["server_cores"]["value"]["mean"] / 2, rel=1e-2
        )


def test_a_run_without_a_knee_or_bad_options_is_a_one_line_error(tmp_path: Path) -> None:
    for args in ([str(tmp_path)], [str(BASELINE / "hold-50k")], [str(BASELINE), "--users", "0"]):
        r = _plan(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
