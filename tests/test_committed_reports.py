"""Committed reports cannot drift from the code: each is rebuilt from the runs it names and
must come out the same, so a change to a rule rebuilds them in the same commit
(``tokenbench report`` with the paths on each report's last line)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from bench.report import build

ROOT = Path(__file__).resolve().parent.parent
REPORTS = sorted(p.relative_to(ROOT) for p in ROOT.glob("results/**/report/REPORT.md"))


def test_there_are_committed_reports() -> None:
    assert len(REPORTS) >= 5


@pytest.mark.parametrize("report", REPORTS, ids=[str(p.parent.parent) for p in REPORTS])
def test_a_committed_report_is_what_the_code_makes_of_its_runs(
    report: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the sources are written relative to the repository
    # REPORT.md is compared, not the charts' pixels (tests/test_report.py draws them): laying
    # out and saving them took two thirds of each rebuild
    monkeypatch.setattr(Figure, "savefig", lambda *a, **k: None)
    monkeypatch.setattr(Figure, "tight_layout", lambda *a, **k: None)
    sources = build.sources(report)
    assert sources, f"{report} does not name its runs: rebuild it with tokenbench report"
    rebuilt = build.build(sources, tmp_path).read_text()
    assert rebuilt == report.read_text(), (
        f"{report} differs from what the code makes of its runs: run "
        f"`tokenbench report {' '.join(map(str, sources))} --out {report.parent}` and commit it"
    )


def test_results_readme_names_every_run_from_a_dirty_tree() -> None:
    dirty = set()
    for path in ROOT.glob("results/**/results.json"):
        git = json.loads(path.read_text())["machine"].get("git") or {}
        if git.get("dirty"):
            dirty.add(str(path.parent.relative_to(ROOT)))
    text = (ROOT / "results" / "README.md").read_text()
    listed = set(re.findall(r"^- `(results/[^`]+)/` \(commit", text, re.M))
    assert listed == dirty
