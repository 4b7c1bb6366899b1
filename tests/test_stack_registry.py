"""The stack registry (transports/stacks.py): one record per stack, one rule for a stack a
transport lacks, and no module outside a stack's own spelling its name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import transports
from transports import stacks

ROOT = Path(__file__).resolve().parent.parent


def test_every_stack_is_one_record_and_every_transport_names_its_modules() -> None:
    assert stacks.names() == ("stock", "lean", "granian", "floor")
    assert set(stacks.TUNED) <= set(stacks.names()) and stacks.names()[0] == stacks.STOCK
    assert {t.name: t.stacks for t in transports.all_transports()} == {
        "sse": ("stock", "lean", "granian", "floor"), "ws": ("stock", "lean", "floor"),
        "grpc": ("stock", "lean", "floor"), "poll": ("stock", "lean", "granian", "floor"),
    }  # fmt: skip
    assert transports.get("sse").server_module("granian").NAME == "granian"
    assert transports.get("grpc").server_module("lean").NAME == "grpc"
    with pytest.raises(ValueError, match="ws has no 'granian' stack: stock, lean"):
        transports.get("ws").server_module("granian")
    with pytest.raises(ValueError, match="--stack: stock, lean, granian, floor, not 'fast'"):
        transports.Transport("x", "X", "#000", "m", "m:R", stack_servers={"fast": "m"})
    with pytest.raises(ValueError, match="its stock server is"):
        transports.Transport("x", "X", "#000", "m", "m:R", stack_servers={"stock": "m"})


def test_parse_takes_a_name_or_a_list_and_names_the_choices() -> None:
    assert stacks.parse("lean, stock") == ["lean", "stock"]
    assert stacks.parse("granian", many=False) == ["granian"]
    for spec, many, message in (
        ("fast", True, "--stack: stock, lean, granian, floor (a comma list), not 'fast'"),
        ("", True, "--stack: stock, lean, granian, floor (a comma list), not ''"),
        ("lean,stock", False, "--stack: stock, lean, granian, floor, not 'lean,stock'"),
    ):
        with pytest.raises(ValueError) as err:
            stacks.parse(spec, many)
        assert str(err.value) == message


def test_a_transport_without_the_stack_is_left_out_and_named() -> None:
    everyone = transports.all_transports()[:4]
    kept, line = stacks.split(everyone, "granian")
    assert [r.name for r in kept] == ["sse", "poll"]
    assert line == "== no granian stack for ws, grpc: not measured"
    kept, line = stacks.split(everyone, "lean")
    assert len(kept) == 4 and line is None
    kept, line = stacks.split([transports.get("ws")], "granian")
    assert kept == [] and line == "== no granian stack for ws: not measured"


def test_every_command_applies_the_one_rule() -> None:
    """``faults`` and ``stop`` leave the transport out and say so; none left is a one-line
    error. (``browser`` and ``bench`` share ``bench.cliapp.on_stack`` and ``stacks.split``.)"""
    for command in (["faults", "--scenario", "reset"], ["stop"], ["browser"]):
        r = subprocess.run(
            [sys.executable, "-m", "bench.cli", *command, "--transport", "ws,grpc",
             "--stack", "granian"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        lines = r.stderr.strip().splitlines()
        assert lines[-1] == "error: no transport here has a granian stack", r.stderr
        assert "== no granian stack for ws, grpc: not measured" in lines, r.stderr


def test_no_module_outside_a_stack_spells_a_stack_name() -> None:
    """What differs between stacks is in their records; the profiles (commands a person would
    type) and the stacks' own modules may name them."""
    own = {"transports/stacks.py", "transports/__init__.py", "bench/profiles.py"}
    found = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT).as_posix()
        # results/ keeps the scripts a measurement ran, as they were run
        if rel.startswith((".venv/", "tests/", "build/", "proto/", "servers/", "results/")):
            continue
        if rel in own:
            continue
        text = path.read_text()
        names = [s for s in stacks.names() if s != stacks.STOCK]
        found += [f"{rel}: {n}" for n in names for q in ('"', "'") if f"{q}{n}{q}" in text]
        found += [f"{rel}: {w!r}" for w in ("stock, lean, granian", "stock, lean or") if w in text]
    assert not found, found
