"""bench.results: the typed document, its upgrade from older versions, and the dependency rule
(load, faults, browser and report depend on it; it depends on none of them)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from bench import results
from bench.faults import behind_lb, scenarios
from bench.results import schema

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_the_results_package_depends_on_no_reader_or_writer_of_it() -> None:
    for path in (ROOT / "bench" / "results").glob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[:2] in (["bench", p] for p in (
            "load", "faults", "browser", "report"))}  # fmt: skip
        assert not bad, f"{path.name} imports {bad}"


def test_the_report_reads_results_not_the_measuring_packages() -> None:
    for path in (ROOT / "bench" / "report").glob("*.py"):
        if path.name == "commands.py":
            continue
        bad = {m for m in _imports(path) if m.split(".")[:2] in (["bench", p] for p in (
            "load", "faults", "browser"))}  # fmt: skip
        assert not bad, f"bench/report/{path.name} imports {bad}"


def test_the_scenario_names_are_the_fault_runners() -> None:
    assert tuple(scenarios.SCENARIOS) == schema.FAULT_SCENARIOS
    assert tuple(behind_lb.SCENARIOS) == schema.LB_SCENARIOS


def test_a_version_1_document_is_upgraded_on_load(tmp_path: Path) -> None:
    doc = json.loads((FIXTURES / "faults.json").read_text())
    assert doc["schema_version"] == 1 and all("unread" not in e for e in doc["faults"])
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    got = results.load(path)
    assert got["schema_version"] == results.SCHEMA_VERSION
    # version 1's lost counted every token never received: unread 0, lost unchanged
    assert [e["unread"] for e in got["faults"]] == [0] * len(doc["faults"])
    assert [e["lost"] for e in got["faults"]] == [e["lost"] for e in doc["faults"]]


def test_a_document_missing_a_required_field_is_refused_in_one_line(tmp_path: Path) -> None:
    doc = results.upgrade(json.loads((FIXTURES / "bench.json").read_text()))
    del doc["runs"][0]["steps"][0]["server"]["rss_bytes"]
    with pytest.raises(results.SchemaError, match=r"runs\[0\]\.steps\[0\]\.server: missing"):
        results.validate(doc)
    with pytest.raises(results.SchemaError, match="reads 1 to"):
        results.upgrade({"schema_version": 3})


def test_a_knee_naming_a_count_no_step_ran_is_refused(tmp_path: Path) -> None:
    doc = results.upgrade(json.loads((FIXTURES / "bench.json").read_text()))
    run = next(r for r in doc["runs"] if r.get("knee"))
    run["knee"]["clients"] = 12_345
    with pytest.raises(results.SchemaError, match=r"knee\.clients: 12345 users, a count no step"):
        results.validate(doc)


def test_the_required_keys_come_from_the_types() -> None:
    assert "unread" not in schema.required(schema.FaultEntry)  # optional: older entries
    assert {"lost", "passed", "unrecovered"} <= set(schema.required(schema.FaultEntry))
    assert schema.required(schema.Run) == ("transport", "steps")
