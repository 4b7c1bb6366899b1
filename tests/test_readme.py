"""README.md and docs/findings.md cannot drift from the committed runs: every measured block is
generated (bench/report/excerpt.py, ``make readme``) and must come out byte for byte the same."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.report import excerpt

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("name", excerpt.FILES)
def test_generated_blocks_are_what_the_runs_say(name: str) -> None:
    text = (ROOT / name).read_text()
    assert excerpt.BLOCK.search(text), f"{name} has no generated block"
    rebuilt = excerpt.regenerate(text)
    assert rebuilt == text, (
        f"{name} differs from what bench/report/excerpt.py makes of the committed runs: run "
        "`make readme` and commit it (figures are not edited by hand)"
    )


def test_every_excerpt_is_used_and_every_block_is_known() -> None:
    used = [m.group(1) for f in excerpt.FILES
            for m in excerpt.BLOCK.finditer((ROOT / f).read_text())]  # fmt: skip
    assert set(used) == set(excerpt.EXCERPTS)
    opened = [n for f in excerpt.FILES
              for n in re.findall(r"<!-- generated: (\S+)", (ROOT / f).read_text())]  # fmt: skip
    assert sorted(opened) == sorted(used), "a generated block without its end marker"


def test_the_readme_states_what_to_ship_as_the_baseline_computes_it() -> None:
    readme = (ROOT / "README.md").read_text()
    assert excerpt.block("ship") in readme
    assert excerpt.block("make-bench-wall") in readme  # the wall time, from its jobs.json


def test_the_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 220


@pytest.mark.parametrize("name", excerpt.FILES)
def test_relative_links_resolve(name: str) -> None:
    path = ROOT / name
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    assert not broken, f"{name} links to files that do not exist: {broken}"
