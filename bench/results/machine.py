"""``machine``: where a run's numbers came from, and how fast that machine was (the yardstick).

Measuring records it (``machine()``, and bench.load.yardstick's calibrations); reading uses
``of``, ``speed``, ``pace`` and ``drifted``, which recompute a yardstick from its recorded
calibrations so that every run is read by the same rule, whenever it was written
(docs/results-schema.md, ``machine`` and ``machine.yardstick``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

DISTRIBUTION = "tokenbench"  # machine.packages: what it declares, and what those require
# What a run's code is: a change here, committed or not, tracked or not, makes the tree dirty.
PACKAGE_PATHS = ("bench", "clients", "servers", "transports", "proto", "web/src", "setup.py",
                 "pyproject.toml", "Makefile")  # fmt: skip
YARDSTICK_VERSION = 1  # machine.yardstick.version


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


def git_state() -> dict[str, Any]:
    """The commit this code runs from and whether its paths changed since (None: no git)."""
    root = Path(__file__).resolve().parents[2]
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


_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(dist: str, extras: set[str] | None) -> list[tuple[str, set[str]]]:
    """(name, its extras) that ``dist`` requires: unconditionally, or through one of ``extras``
    (None: every extra it declares)."""
    try:
        lines = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return []
    out = []
    for line in lines:
        spec, _, marker = line.partition(";")
        extra = _EXTRA.search(marker)
        if extra and extras is not None and _canonical(extra.group(1)) not in extras:
            continue
        if m := _REQUIREMENT.match(spec):
            wanted = {_canonical(e) for e in (m.group(2) or "").split(",") if e.strip()}
            out.append((_canonical(m.group(1)), wanted))
    return out


def packages(dist: str = DISTRIBUTION) -> dict[str, str | None]:
    """``machine.packages``: the version of every distribution ``dist`` declares (all its extras
    too; None: not installed), and of every installed distribution those require, in turn."""
    versions: dict[str, str | None] = {}
    todo = _requires(dist, None)
    declared = {name for name, _ in todo}
    while todo:
        name, extras = todo.pop()
        if name in versions and not extras:
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in declared:
                versions[name] = None
            continue
        todo.extend(r for r in _requires(name, extras) if r[0] not in versions)
    return dict(sorted(versions.items()))


def open_files() -> tuple[int, int]:
    """The soft open-file limit raised to the hard one (servers hold one per connection):
    (soft, hard) as they are now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard
    if hard == resource.RLIM_INFINITY:  # the kernel takes no more than fs.nr_open
        try:
            ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            ceiling = soft
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        with contextlib.suppress(OSError, ValueError):  # kept as it was, and recorded so
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def machine() -> dict[str, Any]:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
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
        "packages": packages(),
        "open_files_limit": hard,
        "open_files_soft": soft,
        "ephemeral_ports": "-".join(ports),
        "git": git_state(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def _unit(c: dict[str, Any]) -> float:
    """CPU of a reference token from one calibration: the fastest repeats'."""
    return c["syscall_us"]["min"] + c["python_us"]["min"]


def _wall(c: dict[str, Any]) -> float:
    return c["wall_us"]["min"]


def combine(before: dict[str, Any], after: dict[str, Any] | None) -> dict[str, Any]:
    """``machine.yardstick``: both calibrations, the units used (their means), and the drift."""
    done = [before] + ([after] if after else [])
    unit = sum(map(_unit, done)) / len(done)
    wall = sum(map(_wall, done)) / len(done)
    drift = 0.0
    if after:
        drift = max(
            abs(_unit(after) - _unit(before)) / unit, abs(_wall(after) - _wall(before)) / wall
        )
    return {
        "version": YARDSTICK_VERSION,
        "before": before,
        "after": after,
        "unit_us": round(unit, 4),
        "wall_us": round(wall, 4),
        "drift": round(drift, 4),
        "drifted": drift > 0.10,
        "reference_unit_us": REFERENCE_UNIT_US,
        "reference_wall_us": REFERENCE_WALL_US,
    }  # fmt: skip


def of(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A document's yardstick, recomputed from its recorded calibrations (so every run is read
    by the same rule, whenever it was written), or None."""
    ys = doc.get("machine", {}).get("yardstick")
    if not ys or not ys.get("before"):
        return None
    try:
        return combine(ys["before"], ys.get("after"))
    except (KeyError, TypeError):
        return None


# Normalised figures are stated for a machine whose reference token costs this much (CPU, and
# wall time on an otherwise idle core): round numbers near this project's VM on a good day, so
# that normalised and raw figures look alike.
REFERENCE_UNIT_US = 5.0
REFERENCE_WALL_US = 6.0


def speed(doc: dict[str, Any]) -> float | None:
    """How much more CPU this run's machine spent per unit of work than the reference (CPU per
    token is divided by it), or None without a yardstick."""
    ys = of(doc)
    return None if ys is None else ys["unit_us"] / REFERENCE_UNIT_US


def pace(doc: dict[str, Any]) -> float | None:
    """How much longer this run's server cores took per unit of work than the reference's, in
    wall time (users per core are multiplied by it), or None without a yardstick."""
    ys = of(doc)
    return None if ys is None else ys["wall_us"] / REFERENCE_WALL_US


def pace_range(doc: dict[str, Any]) -> tuple[float, float] | None:
    """The least and the most ``pace`` of the run's calibrations (before and after its load),
    or None without a yardstick: its steps ran at some speed between the two, so a capacity
    normalised by the run spans both (results/20261207-turns/knee-c: 19 % apart)."""
    ys = doc.get("machine", {}).get("yardstick")
    if not ys or not ys.get("before"):
        return None
    try:
        walls = [_wall(c) for c in (ys["before"], ys.get("after")) if c]
    except (KeyError, TypeError):
        return None
    return min(walls) / REFERENCE_WALL_US, max(walls) / REFERENCE_WALL_US


def drifted(doc: dict[str, Any]) -> bool:
    ys = of(doc)
    return bool(ys and ys["drifted"])
