"""results.json: the versioned document a run writes (docs/results-schema.md), and its checks.

Measuring writes it; reporting only reads it. ``machine()`` records where the numbers came
from; ``validate()`` checks a document against the schema (used by the tests and by
``tokenbench report`` before it trusts a file).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.load.messages import ERROR_CLASSES  # the error classes of a step are the loader's

SCHEMA_VERSION = 1
PACKAGES = (
    "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "websockets", "sse-starlette",
    "grpcio", "protobuf", "aiohttp", "numpy", "matplotlib", "granian", "h2",
)  # fmt: skip
PERCENTILES = ("p50", "p90", "p99", "p999", "max")
# What a run's code is: a change here, committed or not, tracked or not, makes the tree dirty.
PACKAGE_PATHS = ("bench", "clients", "servers", "transports", "proto", "web/src", "setup.py",
                 "pyproject.toml", "Makefile")  # fmt: skip


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _git() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(  # untracked files count: a new module changes what runs
            ["git", "status", "--porcelain", "--", *PACKAGE_PATHS],
            cwd=root, capture_output=True, text=True, timeout=5,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(dirty)}


def machine() -> dict[str, Any]:
    import resource

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ports = f.read().split()
    except OSError:
        ports = []
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _mem_total(),
        "os": platform.system(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "packages": versions,
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "ephemeral_ports": "-".join(ports),
        "git": _git(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def new_doc(kind: str, run_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """A results.json document before any measurement: what was asked, and where it ran."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "run_id": run_id,
        "machine": machine(),
        "config": config,
        "runs": [],
    }


def write(doc: dict[str, Any], out: Path) -> Path:
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


class SchemaError(ValueError):
    pass


def _need(doc: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        if key not in doc:
            raise SchemaError(f"{where}: missing {key!r}")


def validate(doc: Any) -> None:
    """Raise SchemaError unless ``doc`` has every field docs/results-schema.md promises."""
    if not isinstance(doc, dict):
        raise SchemaError("results: not a JSON object")
    _need(doc, ("schema_version", "machine", "runs", "config"), "results")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise SchemaError(f"schema_version {doc['schema_version']!r}, expected {SCHEMA_VERSION}")
    _need(doc["machine"], ("cpu_model", "cores", "memory_bytes", "kernel", "python", "packages",
                           "git", "date", "command"), "machine")  # fmt: skip
    for r, run in enumerate(doc["runs"]):
        where = f"runs[{r}]"
        _need(run, ("transport", "steps"), where)
        for s, step in enumerate(run["steps"]):
            w = f"{where}.steps[{s}]"
            _need(step, ("clients", "latency_ms", "ttft_ms", "gap_p99_ms", "tokens_per_s",
                         "goodput", "requests_per_s", "wire_bytes_per_token", "errors",
                         "reconnects", "lost", "duplicated", "out_of_order", "server",
                         "loadgen"), w)  # fmt: skip
            for hist in ("latency_ms", "ttft_ms"):
                _need(step[hist], PERCENTILES, f"{w}.{hist}")
            _need(step["errors"], ERROR_CLASSES, f"{w}.errors")
            _need(step["server"], ("cpu_s_per_1k_tokens", "rss_bytes", "mem_per_conn_bytes",
                                   "open_files"), f"{w}.server")  # fmt: skip
            _need(step["loadgen"], ("cpu_us_per_token",), f"{w}.loadgen")


def load(path: Path) -> dict[str, Any]:
    """Read and validate a results.json (or a run directory holding one)."""
    if path.is_dir():
        path = path / "results.json"
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise SchemaError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SchemaError(f"{path} is not JSON: {exc}") from None
    validate(doc)
    return doc


def load_all(path: Path) -> list[dict[str, Any]]:
    """A results.json, a run directory, or a directory of runs (``make bench``'s knee,
    hold-50k and faults): every document in it, validated."""
    if path.is_file() or (path / "results.json").exists():
        return [load(path)]
    found = sorted(p.parent for p in path.glob("*/results.json"))
    if not found:
        raise SchemaError(f"no results.json in {path} or its subdirectories")
    return [load(p) for p in found]
