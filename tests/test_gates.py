"""The gates CI uses (issue 24, part 5): ``tokenbench check`` with thresholds, judging a knee run
by its knee; ``tokenbench compare --fail-on``; ``summary.json`` beside REPORT.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.report import check, summary

ROOT = Path(__file__).resolve().parent.parent
KNEE = ROOT / "results/20261207-passes/run1/knee"
KNEE_2 = ROOT / "results/20261207-passes/run1/knee-2"
BASELINE = ROOT / "results/20261201-222029/knee"
TWICE = ROOT / "results/20261207-twice"
TURNS = [ROOT / f"results/20261207-turns/knee-{k}" for k in "abc"]
OUTCOMES = {"confirmed", "refuted", "nuanced", "tie", "not measured"}


def tb(*args: Any) -> Any:
    """Run ``tokenbench`` in this process; the result has exit_code, stdout and stderr."""
    return CliRunner().invoke(app, [str(a) for a in args])


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


def edited(tmp_path: Path, source: Path, edit: Any, name: str = "bad") -> Path:
    """A copy of a committed run, changed by ``edit(doc)``, as a run directory."""
    doc = json.loads((source / "results.json").read_text())
    edit(doc)
    doc["run_id"] = name
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(doc))
    return tmp_path / name


# --- check -----------------------------------------------------------------------------------


@pytest.mark.parametrize("run", [KNEE, BASELINE], ids=["passes-run1", "baseline"])
def test_check_judges_a_knee_run_by_its_knee(run: Path) -> None:
    """The steps above the knee broke the SLO on purpose: they fail no knee run."""
    r = tb("check", run, "--p99-ms", 250, "--min-users-per-core", 100)
    assert r.exit_code == 0, r.output
    last = lines(r.stdout)[-1]
    assert last.startswith("ok: 1 run(s), no guarantee broken") and "above the knee" in last
    assert "FAIL" not in r.stdout


def test_check_against_a_baseline_passes_within_the_noise() -> None:
    r = tb("check", KNEE, KNEE_2, "--baseline", BASELINE, "--max-regression", "10%")
    assert r.exit_code == 0, r.output
    assert lines(r.stdout)[-1].startswith("ok: 2 run(s)")
    same = tb("check", BASELINE, "--baseline", BASELINE, "--max-regression", "0.1")
    assert same.exit_code == 0 and "note" not in same.stdout


def test_check_fails_every_step_that_counts_over_the_p99(tmp_path: Path) -> None:
    def slow(doc: dict[str, Any]) -> None:
        for run in doc["runs"]:
            for st in run["steps"]:
                st["latency_ms"]["p99"] *= 10

    r = tb("check", edited(tmp_path, KNEE, slow), "--p99-ms", 250)
    assert r.exit_code == 1
    out = lines(r.stdout)
    fails = [x for x in out[:-1] if x.startswith("FAIL ")]
    assert fails and all("ms > 250 ms" in x for x in fails)
    assert out[-1] == f"FAIL: {len(fails)} problem(s) in 1 run(s)"
    assert tb("check", KNEE, "--p99-ms", 250).exit_code == 0  # the same run as measured


def test_check_fails_a_knee_under_the_minimum_and_a_regression(tmp_path: Path) -> None:
    def lower(doc: dict[str, Any]) -> None:
        """Every knee at the first count tried, broken at the next."""
        for run in doc["runs"]:
            counts = sorted({s["clients"] for s in run["steps"]})
            kd, cores = run["knee"], run["knee"]["server_cores"]
            kd["clients"], kd["broke_at"] = counts[0], counts[1]
            kd["clients_per_server_core"] = counts[0] / cores

    assert tb("check", KNEE, "--min-users-per-core", 250).exit_code == 0
    bad = edited(tmp_path, KNEE, lower)
    r = tb("check", bad, "--min-users-per-core", 250)
    assert r.exit_code == 1
    fails = lines(r.stdout)[:-1]
    assert {x.split(":")[0] for x in fails} == {"FAIL sse", "FAIL ws", "FAIL grpc", "FAIL poll"}
    assert all("users per core < 250" in x for x in fails)
    r = tb("check", bad, "--baseline", KNEE, "--max-regression", "10%")
    assert r.exit_code == 1
    assert "FAIL sse: users per core" in r.stdout and "beyond both intervals" in r.stdout


def test_check_still_holds_every_step_to_the_guarantees(tmp_path: Path) -> None:
    """A token lost above the knee fails the run: only goodput and p99 are judged at the knee."""

    def lose(doc: dict[str, Any]) -> None:
        run = doc["runs"][0]
        above = max(run["steps"], key=lambda s: s["clients"])
        assert above["clients"] > run["knee"]["clients"]
        above["lost"] = 7

    r = tb("check", edited(tmp_path, KNEE, lose))
    assert r.exit_code == 1 and "7 tokens lost" in r.stdout


def test_a_knee_search_in_which_nothing_held_fails(tmp_path: Path) -> None:
    def none_held(doc: dict[str, Any]) -> None:
        doc["runs"][0]["knee"] = None

    r = tb("check", edited(tmp_path, KNEE, none_held))
    assert r.exit_code == 1 and "no step held the SLO" in r.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--p99-ms", "abc"],
        ["--p99-ms", "-1"],
        ["--min-users-per-core", "0"],
        ["--min-goodput", "x"],
        ["--baseline", BASELINE, "--max-regression", "10"],
        ["--baseline", BASELINE, "--max-regression", "ten%"],
        ["--max-regression", "10%"],
        ["--baseline", BASELINE],
        ["--baseline", "/nonexistent", "--max-regression", "10%"],
    ],
)
def test_check_says_what_is_wrong_with_its_input_in_one_line(args: list[Any]) -> None:
    r = tb("check", KNEE, *args)
    assert r.exit_code == 2
    assert len(lines(r.stderr)) == 1 and r.stderr.startswith("error: ")
    assert "Traceback" not in r.output


def test_a_regression_threshold_is_a_fraction_or_a_percentage() -> None:
    assert check.fraction("10%") == pytest.approx(0.1) == check.fraction("0.1")
    assert check.fraction(" 2.5% ") == pytest.approx(0.025)
    for bad in ("10", "0", "100%", "-5%", "nan", ""):
        with pytest.raises(ValueError):
            check.fraction(bad)


# --- compare --fail-on -------------------------------------------------------------------------


def test_compare_fails_on_a_flip_only_when_asked() -> None:
    # The same knee command on a machine deliberately slowed (results/README.md)
    a, b = ROOT / "results/20261201-211858/knee", ROOT / "results/slowed-knee"
    flipped = tb("compare", a, b, "--fail-on", "flip")
    assert flipped.exit_code == 1
    assert "FAIL verdict Long polling costs a request per token: confirmed / nuanced" in (
        flipped.stdout
    )
    assert lines(flipped.stdout)[-1].startswith("FAIL: ")
    assert tb("compare", a, b).exit_code == 0  # reporting only, as before
    same = tb("compare", a, a, "--fail-on", "flip")
    assert same.exit_code == 0 and lines(same.stdout)[-1] == "ok: no flip between A and B"


def test_two_passes_of_one_commit_do_not_flip() -> None:
    """SSE's brackets do not overlap ([914, 1012) then [675, 747): separated runs, no fit), but
    WebSocket's, widened to its fit's interval, overlaps SSE's in both: one pass of the search
    no longer decides "one-way traffic fits SSE" by itself."""
    r = tb("compare", TWICE / "knee-a", TWICE / "knee-b", "--fail-on", "flip")
    assert r.exit_code == 0 and lines(r.stdout)[-1] == "ok: no flip between A and B"


@pytest.mark.parametrize("a,b", [(0, 1), (1, 2), (0, 2)])
def test_passes_taking_turns_agree_on_every_capacity(a: int, b: int) -> None:
    """Three back-to-back passes of the knee command with the searches taking turns (issue 23):
    each transport's normalised capacity intervals overlap in every pair, each settled within
    the search's target or flagged unsettled, no ranking flips, and a verdict that differs is a
    tie in one of the two ("one-way traffic fits SSE": tie in a and b, refuted in c)."""
    from bench import results
    from bench.load import knee
    from bench.report import figures

    aim = knee.target_ratio(1.5, 2)  # the knee command's --knee-factor and --knee-refine
    ka, kb = (figures.knees([dict(results.load(TURNS[k]))]) for k in (a, b))
    assert set(ka) == set(kb) == {"sse", "ws", "grpc", "poll"}
    for t in ka:
        na, nb = ka[t].normalised_users_per_core(), kb[t].normalised_users_per_core()
        assert na is not None and nb is not None and na.overlaps(nb), (t, na, nb)
        for k in (ka[t], kb[t]):
            u = k.users_per_core
            assert k.settled is False or u.hi <= u.lo * aim + 1, (t, u)
    out = tb("compare", TURNS[a], TURNS[b]).stdout
    assert "FLIPPED" not in out  # no order both passes are sure of comes out reversed
    changed = re.findall(r"^  DIFFERENT .*: (\S+) / (\S+)$", out, re.M)
    # A verdict may be sure in one pass and a tie in the other, never the opposite in each.
    assert all("tie" in pair for pair in changed), changed


def test_compare_fails_on_a_regression_beyond_the_noise(tmp_path: Path) -> None:
    assert tb("compare", BASELINE, BASELINE, "--fail-on", "regression").exit_code == 0
    r = tb("compare", TWICE / "knee-a", TWICE / "knee-b", "--fail-on", "regression")
    assert r.exit_code == 1 and "FAIL regression sse: users per core" in r.stdout
    bad = tb("compare", BASELINE, BASELINE, "--fail-on", "flop")
    assert bad.exit_code == 2 and len(lines(bad.stderr)) == 1


# --- summary.json ------------------------------------------------------------------------------


def test_report_writes_summary_json(tmp_path: Path) -> None:
    from bench import results
    from bench.report import ship
    from bench.report.tables import merge_faults

    faults = ROOT / "results/20261201-222029/faults"
    r = tb("report", KNEE, KNEE_2, faults, "--out", tmp_path)
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "summary.json").read_text())
    assert set(s) == set(summary.Summary.__annotations__)
    assert (s["schema_version"], s["kind"]) == (summary.SUMMARY_VERSION, "summary")
    docs = [results.load(p) for p in (KNEE, KNEE_2, faults)]
    assert [(x["run_id"], x["commit"]) for x in s["runs"]] == [
        (d["run_id"], d["machine"]["git"]["commit"]) for d in docs
    ]
    pick = ship.recommend(docs[:2], merge_faults(docs))
    assert s["decision"]["ship"] == pick["group"] and s["decision"]["text"] == pick["text"]
    assert s["decision"]["text"] in (tmp_path / "REPORT.md").read_text()
    assert s["verdicts"] and all(set(v) == {"rule", "outcome", "text"} for v in s["verdicts"])
    assert {v["outcome"] for v in s["verdicts"]} <= OUTCOMES
    assert [f["transport"] for f in s["transports"]] == ["sse", "ws", "grpc", "poll"]
    for f in s["transports"]:
        assert set(f) == set(summary.Figures.__annotations__)
        knee = f["users_per_core"]
        # a bracket [held, broke), or closed where the fit widened it past broke
        assert knee["lo"] <= knee["mean"] and knee["lo"] < knee["hi"]
        assert f["cpu_us_per_token"]["mean"] > 0 and f["mem_per_conn_bytes"]["mean"] > 0
    md = tb("summary", "--markdown", tmp_path)
    assert md.exit_code == 0
    assert "### What to ship" in md.stdout and "| claim | verdict | the numbers |" in md.stdout
    assert tb("summary", tmp_path).exit_code == 0  # JSON


def test_a_figure_not_measured_is_null_in_the_summary() -> None:
    from bench import results

    s = summary.summarize([results.load(ROOT / "results/20261201-222029/hold-50k")])
    assert s["transports"]
    for f in s["transports"]:
        assert f["users_per_core"] is None and f["knee"] is None and f["fleet"] is None
        assert f["mem_per_conn_bytes"] is not None
    assert s["decision"] is not None and s["decision"]["ship"] == []  # not enough measured


def test_summary_refuses_what_is_not_a_summary(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"kind": "bench", "schema_version": 2}))
    for where in (tmp_path, tmp_path / "nowhere"):
        r = tb("summary", "--markdown", where)
        assert r.exit_code == 2 and len(lines(r.stderr)) == 1
