"""Writing a results document: measuring makes it, once, before its first step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.results.machine import machine
from bench.results.schema import SCHEMA_VERSION, Document


def new_doc(kind: str, run_id: str, config: dict[str, Any]) -> Document:
    """A results.json document before any measurement: what was asked, and where it ran."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "run_id": run_id,
        "machine": machine(),  # type: ignore[typeddict-item]
        "config": config,
        "runs": [],
    }


def write(doc: Document | dict[str, Any], out: Path) -> Path:
    """``out``/results.json, replaced whole (a reader never sees half a file); under results/
    itself, results/latest points at it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")) + "\n")  # compact: histograms are long
    tmp.replace(path)
    latest = out.parent / "latest"
    if out.parent.name == "results":  # results/latest -> this run
        try:
            if latest.is_symlink() or latest.exists():
                latest.unlink()
            latest.symlink_to(out.name)
        except OSError:
            pass
    return path
