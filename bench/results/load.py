"""Reading a results document: load, upgrade an older schema version, validate.

A document of an older ``schema_version`` is upgraded in memory to the current one, so every
reader sees one shape; a newer or unknown version is refused with one line (SchemaError).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.results.schema import (
    ERROR_CLASSES,
    PERCENTILES,
    SCHEMA_VERSION,
    Document,
    FaultEntry,
    Loadgen,
    Machine,
    Run,
    Server,
    Step,
    required,
)


class SchemaError(ValueError):
    """A file that is not a results document this version can read: one line."""


def _need(record: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(record, dict):
        raise SchemaError(f"{where}: not a JSON object")
    for key in keys:
        if key not in record:
            raise SchemaError(f"{where}: missing {key!r}")


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` in the current schema version. 1 -> 2: a fault entry's ``lost`` counted every
    token a client never received, gaps and the tail alike; version 2 splits that into ``lost``
    (gaps) and ``unread`` (owed by the window's end), so a version 1 entry reads as unread 0
    with its lost unchanged (the same total, not split)."""
    version = doc.get("schema_version")
    if version == 1:
        for e in doc.get("faults", []):
            if isinstance(e, dict):
                e.setdefault("unread", 0)
        doc["schema_version"] = version = 2
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"schema_version {version!r}: this tokenbench reads 1 to {SCHEMA_VERSION}"
        )
    return doc


def validate(doc: Any) -> None:
    """Raise SchemaError unless ``doc`` has every field bench.results.schema requires."""
    _need(doc, required(Document), "results")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise SchemaError(f"schema_version {doc['schema_version']!r}, expected {SCHEMA_VERSION}")
    _need(doc["machine"], required(Machine), "machine")
    for r, run in enumerate(doc["runs"]):
        where = f"runs[{r}]"
        _need(run, required(Run), where)
        for s, step in enumerate(run["steps"]):
            w = f"{where}.steps[{s}]"
            _need(step, required(Step), w)
            for hist in ("latency_ms", "ttft_ms"):
                _need(step[hist], PERCENTILES, f"{w}.{hist}")
            _need(step["errors"], ERROR_CLASSES, f"{w}.errors")
            _need(step["server"], required(Server), f"{w}.server")
            _need(step["loadgen"], required(Loadgen), f"{w}.loadgen")
        knee = run.get("knee") or {}
        counts = {step["clients"] for step in run["steps"]}
        for edge in ("clients", "broke_at"):
            if knee.get(edge) is not None and knee[edge] not in counts:
                raise SchemaError(f"{where}.knee.{edge}: {knee[edge]} users, a count no step ran")
    for i, e in enumerate(doc.get("faults", [])):
        _need(e, required(FaultEntry), f"faults[{i}]")


def read_json(path: Path, name: str) -> tuple[Path, Any]:
    """(the file, its JSON): ``path`` or the file ``name`` in the directory ``path``;
    SchemaError in one line when it cannot be read or is not JSON."""
    if path.is_dir():
        path = path / name
    try:
        return path, json.loads(path.read_text())
    except OSError as exc:
        raise SchemaError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SchemaError(f"{path} is not JSON: {exc}") from None


def load(path: Path) -> Document:
    """Read, upgrade and validate a results.json (or a run directory holding one)."""
    path, doc = read_json(path, "results.json")
    if not isinstance(doc, dict):
        raise SchemaError(f"{path}: not a JSON object")
    upgrade(doc)
    validate(doc)
    return doc  # type: ignore[return-value]


def load_all(path: Path) -> list[Document]:
    """A results.json, a run directory, or a directory of runs (``make bench``'s knee,
    hold-50k and faults): every document in it, validated."""
    if path.is_file() or (path / "results.json").exists():
        return [load(path)]
    found = sorted(p.parent for p in path.glob("*/results.json"))
    if not found:
        raise SchemaError(f"no results.json in {path} or its subdirectories")
    return [load(p) for p in found]
