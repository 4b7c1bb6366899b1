"""tokenbench report: charts and REPORT.md from committed fixtures, reading JSON only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench import results
from bench.report import build as report

FIXTURES = Path(__file__).parent / "fixtures"
CHARTS = ("server_cores.png", "latency_p99.png", "goodput.png", "cpu_per_1k.png", "requests.png",
          "memory_per_connection.png", "wire_bytes.png", "ttft.png", "faults.png")  # fmt: skip
# The order the evening-before reader meets them: the decision first, every step last.
SECTIONS = ("# tokenbench report", "\n## Decision", "\n## Server cores for 50,000 users",
            "\n## Verdicts", "\n## Charts", "\n## What to ship", "\n## Reconnect recovery",
            "\n## Runs", "\n## Appendix: every step", "\nRebuild: ")  # fmt: skip


def test_report_writes_every_chart_and_section(tmp_path: Path) -> None:
    path = report.build([FIXTURES / "bench.json", FIXTURES / "faults.json"], tmp_path)
    for name in CHARTS:
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > 10_000, name  # a drawn chart, not an empty canvas
    text = path.read_text()
    at = [text.find(section) for section in SECTIONS]
    assert -1 not in at and at == sorted(at), dict(zip(SECTIONS, at, strict=True))
    decision = text.split("## Decision\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(decision) == 3 and all(line.startswith("- **") for line in decision), decision
    for name in CHARTS:
        assert f"]({name})" in text, name
    assert "| SSE | 737 |" in text and "| gRPC |" in text  # steps from the fixture
    assert "Machine: " in text and "cores" in text


def test_later_fault_runs_replace_earlier_entries(tmp_path: Path) -> None:
    doc = json.loads((FIXTURES / "faults.json").read_text())
    newer = json.loads(json.dumps(doc))
    for e in newer["faults"]:
        e["user_saw"] = "the newer run"
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    path = report.build([FIXTURES / "faults.json", tmp_path / "newer.json"], tmp_path / "out")
    text = path.read_text()
    assert "the newer run" in text and "a stall of up to" not in text


def test_report_rejects_what_is_not_a_results_file(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text('{"schema_version": 1}')
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(bad)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "missing" in proc.stderr and "Traceback" not in proc.stderr
    # the fixture (schema version 1) is valid once upgraded, as load does
    results.validate(results.upgrade(json.loads((FIXTURES / "bench.json").read_text())))
    newer = tmp_path / "newer.json"
    newer.write_text('{"schema_version": 99}')
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(newer)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "reads 1 to" in proc.stderr and "Traceback" not in proc.stderr


def _docs() -> tuple[list[dict], list[dict]]:
    from bench.report.tables import merge_faults as merge

    bench_doc = json.loads((FIXTURES / "bench.json").read_text())
    faults_doc = json.loads((FIXTURES / "faults.json").read_text())
    return [bench_doc], merge([faults_doc])


def test_verdicts_follow_the_numbers() -> None:
    from bench.report import verdicts

    docs, faults = _docs()
    got = {v["claim"]: v["verdict"] for v in verdicts.verdicts(docs, faults)}
    assert got["WebSockets cost more memory per connection"] == "refuted"  # fixture: 33 < 55 KiB
    assert got["Long polling costs a request per token"] == "confirmed"
    assert got["gRPC needs a proxy for browsers"] == "not measured"  # no browser runs given
    # Flip the memory figures: the same rule must now confirm the claim.
    for run in docs[0]["runs"]:
        for st in run["steps"]:
            if run["transport"] == "ws":
                st["server"]["mem_per_conn_bytes"] *= 3
    got = {v["claim"]: v["verdict"] for v in verdicts.verdicts(docs, faults)}
    assert got["WebSockets cost more memory per connection"] == "confirmed"
    # Without fault runs, the reconnect claims say so instead of guessing.
    got = {v["claim"]: v["verdict"] for v in verdicts.verdicts(docs, [])}
    assert got["SSE reconnects are invisible"] == "not measured"


def test_fleet_projection_rests_on_the_knee() -> None:
    from bench.report import figures

    docs, _ = _docs()
    rows = {r["transport"]: r for r in figures.fleet(docs)}
    sse = rows["sse"]
    assert sse["users_per_core"]["mean"] == 737 and sse["cores"]["mean"] == round(50_000 / 737, 1)
    broke = docs[0]["runs"][0]["knee"]["broke_at"]
    assert sse["cores"]["lo"] == round(50_000 / broke, 1)  # the bracket: held 737, broke above
    assert rows["grpc"]["harness_bound"] is True  # its next step was load-generator bound


def test_compare_flags_real_changes_and_noise() -> None:
    from bench.report.compare import compare

    a = json.loads((FIXTURES / "bench.json").read_text())
    same = compare(a, a)
    assert same and all(r["judgement"] in ("noise", "missing") for r in same)
    b = json.loads(json.dumps(a))
    for run in b["runs"]:
        for st in run["steps"]:
            st["server"]["cpu_s_per_1k_tokens"] *= 2  # twice the CPU per token: worse
            st["server"]["mem_per_conn_bytes"] *= 1.03  # +3 % memory: inside the noise
            st["latency_ms"]["count"] = 200  # too few tokens for a p99
    rows = {(r["transport"], r["clients"], r["metric"]): r for r in compare(a, b)}
    assert rows[("sse", 737, "server ms / 1k tok")]["judgement"] == "worse"
    assert rows[("sse", 737, "server ms / 1k tok")]["ratio"] == "2.00"
    assert rows[("sse", 737, "KiB / conn")]["judgement"] == "noise"
    assert rows[("sse", 737, "p99 ms")]["judgement"] == "noisy (few samples)"


def test_check_exits_non_zero_when_a_guarantee_breaks(tmp_path: Path) -> None:
    def run(*paths: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bench.cli", "check", *map(str, paths)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    ok = run(FIXTURES / "faults.json")
    assert ok.returncode == 0 and "no guarantee broken" in ok.stdout
    # a knee run is judged by its knee: its steps above it broke the SLO on purpose
    knee = run(FIXTURES / "bench.json")
    assert knee.returncode == 0 and "4 step(s) of knee runs above the knee" in knee.stdout
    doc = json.loads((FIXTURES / "faults.json").read_text())
    hardened = next(e for e in doc["faults"] if e["mode"] == "hardened")
    hardened.update(lost=3, passed=False)
    (tmp_path / "results.json").write_text(json.dumps(doc))
    lossy = run(tmp_path)
    assert lossy.returncode == 1 and "lost 3" in lossy.stdout


def test_memory_per_connection_is_placed_at_the_connections_held() -> None:
    from bench.report import figures

    def step(clients: int, conns: int | None, mem: int) -> dict:
        return {"clients": clients, "server": {"connections": conns, "mem_per_conn_bytes": mem}}

    doc = {
        "runs": [
            {"transport": "grpc", "steps": [step(20_000, 20_000, 1), step(50_000, 15_000, 2)]},
            {"transport": "sse", "steps": [step(1_000, 1_000, 3), step(50_000, None, 4)]},
        ]
    }
    # gRPC asked for 50,000 but held 15,000: the 20,000-connection figure is the larger scale.
    got = {t: (n, i.mean) for t, (n, i) in figures.memory([doc]).items()}
    assert got == {"grpc": (20_000, 1), "sse": (50_000, 4)}


def test_compare_runs_from_the_command_line(tmp_path: Path) -> None:
    doc = json.loads((FIXTURES / "bench.json").read_text())
    (tmp_path / "a" / "knee").mkdir(parents=True)
    (tmp_path / "a" / "knee" / "results.json").write_text(json.dumps(doc))
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "compare", str(tmp_path / "a"),
                           str(FIXTURES / "bench.json"), "--steps"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        "verdicts:" in proc.stdout and "rankings" in proc.stdout and "Traceback" not in proc.stderr
    )
    assert "DIFFERENT" not in proc.stdout and "FLIPPED" not in proc.stdout  # a run against itself


def test_the_report_says_where_the_load_ran_and_how_sure_its_clocks_were(tmp_path: Path) -> None:
    from bench.report import ship

    docs, faults = _docs()
    doc = docs[0]
    nodes = [{"node_id": "a", "ip": "10.0.0.1"}, {"node_id": "b", "ip": "10.0.0.2"}]
    doc["cluster"] = {"address": "ray://head:10001", "nodes": nodes}
    for run in doc["runs"]:
        run["load_nodes"] = nodes
        run["clock"] = {"uncertainty_ms": 0.4, "limit_ms": 25.0, "max_abs_offset_ms": 3.0,
                        "warning": None}  # fmt: skip
    doc["runs"][0]["clock"]["warning"] = "clock uncertainty 40.0 ms is over a tenth of the SLO"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(doc))
    text = report.build([tmp_path / "run"], tmp_path / "out").read_text()
    assert "load on a Ray cluster (ray://head:10001, 2 node(s))" in text
    assert "to within 0.40 ms" in text and "over a tenth of the SLO" in text
    # load from two machines: the caveat no longer says it was not measured
    assert "several load machines" not in ship.recommend(docs, faults)["text"]
    for run in doc["runs"]:
        run["load_nodes"] = nodes[:1]
    assert "several load machines" in ship.recommend(docs, faults)["text"]


def _hold(doc: dict, clients: int, connected: int) -> dict:
    """``doc`` with a hold run added: ``clients`` users asked for at 0.1 tok/s, ``connected``
    connected within a 60 s budget, the SLO held by those."""
    step = json.loads(json.dumps(doc["runs"][0]["steps"][0]))
    step.update(clients=clients, limited_by=None)
    step["slo"]["held"] = True
    step["ramp"] = {"planned_s": 60.0, "took_s": 60.6, "users_connected": connected,
                    "users_offered": connected + 900, "accept_per_s": 1032.0,
                    "limited": connected < clients, "adaptive": True}  # fmt: skip
    hold = json.loads(json.dumps(doc))
    hold.update(run_id="hold", config={**doc["config"], "rate": 0.1, "find_knee": False})
    hold["runs"] = [{"transport": "sse", "steps": [step]}]
    return hold


def test_a_step_short_of_its_users_is_a_measured_limit_not_held(tmp_path: Path) -> None:
    from bench.report import tables

    bench = json.loads((FIXTURES / "bench.json").read_text())
    for name, doc in (("knee", bench), ("hold", _hold(bench, 50_000, 34_182))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(doc))
    text = report.build([tmp_path / "knee", tmp_path / "hold"], tmp_path / "out").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| SSE | `hold` |"))
    assert "34,182 of 50,000" in row and "**not held**" in row
    assert "34,182 of 50,000 connected in 60 s: accepts 1,032/s" in row
    assert "which side limited it: not recorded" in row
    appendix = text.split("## Appendix: every step", 1)[1]
    row = next(line for line in appendix.splitlines() if line.startswith("| SSE | 50,000 |"))
    assert "**not held**" in row and "| held" not in row
    assert "at 50,000 users SSE did not connect every user" in text.split("## Server cores")[0]
    step = _hold(bench, 50_000, 50_000)["runs"][0]["steps"][0]
    assert tables.held(step) and tables.outcome(step).startswith("held")
    step["ramp"]["limited_by"] = "server"
    step["ramp"]["users_connected"] = 10
    assert tables.ramp_limit(step).endswith("limited by the server")


def test_the_charts_draw_one_workload_per_axis() -> None:
    from bench.report import charts

    bench = json.loads((FIXTURES / "bench.json").read_text())
    steps = charts.steps_of([bench, _hold(bench, 50_000, 50_000)])
    rate = charts.workload(steps)
    drawn, others = charts.at_rate(steps, rate)
    assert rate == 40.0
    assert {st["clients"] for s in drawn.values() for st in s} == {737, 921, 378, 472, 195, 243}
    assert [st["clients"] for st in others["sse"]] == [50_000]


def test_the_memory_chart_is_the_fleet_tables_figure() -> None:
    from bench.report import charts_fleet, figures

    docs, _ = _docs()
    bars = {t: (kib, at) for t, kib, at, _, _ in charts_fleet.memory_bars(docs)}
    rows = {r["transport"]: (r["mem_per_conn_kib"], r["memory_measured_at"])
            for r in figures.fleet(docs)}  # fmt: skip
    assert bars and bars == rows


def test_goodput_above_one_says_it_is_a_catch_up() -> None:
    from bench.report import tables

    assert tables.goodput_cell({"goodput": 1.19005}) == "1.19005 (*catch-up*)"
    assert tables.goodput_cell({"goodput": 1.00004}) == "1.00004"  # the window's edge
    assert tables.goodput_cell({"goodput": None}) == "-"
    assert "late, not extra" in tables.GOODPUT


def test_the_strongest_verdict_is_the_widest_margin() -> None:
    rows = [
        {"claim": "a", "verdict": "refuted", "why": "x: SSE 1.30x WebSocket's (95 % interval "
         "1.29 to 1.30)"},
        {"claim": "b", "verdict": "confirmed", "why": "0.73 requests per token (95 % interval "
         "0.68 to 0.78); server CPU per token: long polling 2.61x SSE's (95 % interval 2.28 to "
         "3.02)"},
        {"claim": "c", "verdict": "tie", "why": "users per core: 1.00x to 9.00x"},
        {"claim": "d", "verdict": "not measured", "why": "needs runs"},
    ]  # fmt: skip
    got = report._strongest(rows)
    assert '"b" is **confirmed**: server CPU per token: long polling 2.61x' in got
    assert "1 refuted, 1 confirmed, 1 tie, 1 not measured" in got
    assert "none" in report._strongest(rows[2:])


def test_a_knee_is_its_bracket_widened_to_the_fit() -> None:
    from bench.report.figures import widened
    from bench.report.stats import bracket

    b = bracket(551, 610)
    assert widened(b, None) == b
    inside = widened(b, (580.0, 560.0, 600.0))  # the fit says less: the bracket stands
    assert (inside.lo, inside.hi, inside.open_hi) == (551, 610, True)
    wide = widened(b, (626.5, 543.7, 746.8))  # gRPC's fit in results/20261207-050405
    assert (wide.lo, wide.hi, wide.open_hi, wide.mean) == (543.7, 746.8, False, 551)
    assert wide.overlaps(bracket(675, 747)) and not b.overlaps(bracket(675, 747))
    at_least = widened(bracket(450, None), (500.0, 400.0, 700.0))
    assert (at_least.lo, at_least.bounded) == (400.0, False)


def test_a_knee_wider_than_its_target_is_unsettled() -> None:
    from bench.report.figures import _settled
    from bench.report.stats import Interval

    kd = [{"settled": True, "target_ratio": 1.1067}]
    assert _settled(kd, 551, 610, Interval(551, 551, 610, 1, open_hi=True)) is True
    assert _settled(kd, 551, 610, Interval(551, 543.7, 746.8, 1)) is False
    assert _settled([{"settled": None}], 551, 610, Interval(551, 551, 610, 1)) is None


def test_a_fit_unbounded_above_leaves_the_knee_unbounded_and_unsettled() -> None:
    """Steps that held and broke by chance over a wide range (results/20261207-043144, gRPC:
    300 broke once, 610 held once): the fit does not close above, and the knee is "at least"
    its lower edge, never the bare bracket [498, 551)."""
    import math

    from bench.report.figures import _settled, widened
    from bench.report.stats import bracket
    from bench.results.fit import fit

    runs = [(200, 1, 1), (245, 1, 1), (271, 3, 3), (300, 2, 3), (450, 1, 1), (498, 3, 3),
            (551, 1, 3), (610, 1, 2), (675, 0, 1)]  # fmt: skip
    got = fit(runs)
    assert got is not None and math.isinf(got[2]) and got[1] < 498
    wide = widened(bracket(498, 551), got)
    assert not wide.bounded and wide.lo == got[1]
    kd = [{"settled": True, "target_ratio": 1.1067}]
    assert _settled(kd, 498, 551, wide, got) is False
