"""CPU, memory and open files of a set of processes, read from /proc (Linux).

The server's cost is the sum over its worker processes; the load generator's is the sum over
its own. Sampling costs a few file reads per process, so it can run every second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sample:
    cpu_s: float  # user + system CPU seconds, cumulative
    rss_bytes: int
    open_files: int
    alive: int  # how many of the pids could be read
    read_bytes: int = 0  # rchar: bytes read through syscalls (sockets included), cumulative
    written_bytes: int = 0  # wchar: bytes written, cumulative


def _read(pid: int) -> tuple[float, int, int, int, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
        files = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/io") as f:
            io = dict(line.split(": ") for line in f.read().splitlines())
    except (OSError, IndexError, ValueError):
        return None
    # fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    return cpu, rss_pages * _PAGE, files, int(io["rchar"]), int(io["wchar"])


def sample(pids: list[int]) -> Sample:
    cpu = 0.0
    rss = files = alive = rchar = wchar = 0
    for pid in pids:
        got = _read(pid)
        if got is not None:
            cpu += got[0]
            rss += got[1]
            files += got[2]
            rchar += got[3]
            wchar += got[4]
            alive += 1
    return Sample(cpu, rss, files, alive, rchar, wchar)


def self_cpu_s() -> float:
    """This process's user + system CPU seconds (cheaper than /proc for the load generator)."""
    t = os.times()
    return t.user + t.system


def self_sys_s() -> float:
    """This process's system (kernel) CPU seconds."""
    return os.times().system
