"""The load processes of one run: started, pinned, commanded and read (``bench.load.messages``)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, Protocol

from bench.load.messages import LoaderCommand, LoaderConfig, LoaderReport, as_report, config_json

STOP_S = 15.0  # for load processes to end their users and read the server's clock once more
MAX_PASSES = 50  # pin()'s passes over /proc: a process that spawns threads without end


def _children() -> dict[int, list[int]]:
    """Every process's children, from the ppid in /proc/<pid>/stat (field 4, proc(5))."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone, or not a process
            continue
        out.setdefault(ppid, []).append(int(name))
    return out


def _tasks(pids: list[int]) -> set[int]:
    """The threads (tids, /proc/<pid>/task, proc(5)) of ``pids`` and of all their descendants."""
    kids = _children()
    todo, seen, tids = list(pids), set[int](), set[int]()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo += kids.get(pid, [])
        with contextlib.suppress(OSError):  # a process that already exited
            tids.update(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    return tids


def pin(pids: list[int], cores: set[int] | None) -> None:
    """Every thread of ``pids`` and of their descendants onto ``cores``.

    sched_setaffinity(2) on a pid sets one thread's mask (the tid equal to it): threads that
    already run keep theirs, so each task in /proc/<pid>/task is set. Passes repeat until one
    finds no new tid (a thread spawned meanwhile by a thread not yet pinned). Threads and
    processes that end meanwhile are skipped."""
    if not cores:
        return
    done: set[int] = set()
    for _ in range(MAX_PASSES):
        new = _tasks(pids) - done
        if not new:
            return
        for tid in new:
            with contextlib.suppress(OSError):  # ESRCH: the thread ended
                os.sched_setaffinity(tid, cores)
        done |= new


def tasks_outside(pid: int, cores: set[int]) -> list[int]:
    """The tids of ``pid`` and its descendants whose mask allows a core not in ``cores``
    (sched_getaffinity(2) per task): none once ``pin(..., cores)`` held."""
    out = []
    for tid in sorted(_tasks([pid])):
        try:
            if not os.sched_getaffinity(tid) <= cores:
                out.append(tid)
        except OSError:  # ended since it was listed
            continue
    return out


@contextlib.contextmanager
def on_cores(cores: set[int] | None) -> Iterator[None]:
    """Processes started inside run on ``cores`` from their first instruction: the calling
    thread's mask is set for the while (sched_setaffinity(2) with pid 0 sets the calling
    thread's) and a child inherits its creator's mask (fork(2), clone(2)); then put back."""
    before = os.sched_getaffinity(0)
    try:
        if cores:
            os.sched_setaffinity(0, cores)
    except OSError:  # EINVAL: no core of ``cores`` allowed here (cpuset): left as it is
        cores = None
    try:
        yield
    finally:
        if cores:
            os.sched_setaffinity(0, before)


class LoadFleet(Protocol):
    """What a run needs of its load processes, wherever they run (here, or bench.load.cluster)."""

    def send(self, messages: list[LoaderCommand]) -> None: ...
    def poll(self, timeout: float) -> list[LoaderReport]: ...
    def dead(self) -> list[int]: ...
    def stop(self) -> list[LoaderReport]: ...
    def nodes(self) -> list[dict[str, Any]]: ...


class Fleet:
    def __init__(self, configs: list[LoaderConfig], cores: set[int] | None) -> None:
        with on_cores(cores):  # pinned before their first thread; pin() makes sure
            self.procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "bench.load.loader", config_json(c)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    bufsize=1,
                )
                for c in configs
            ]
        pin([p.pid for p in self.procs], cores)
        self._buf = {p.stdout.fileno(): "" for p in self.procs if p.stdout}

    def send(self, messages: list[LoaderCommand]) -> None:
        for proc, msg in zip(self.procs, messages, strict=True):
            if proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.write(json.dumps(msg) + "\n")
                    proc.stdin.flush()
                except BrokenPipeError:
                    pass

    def poll(self, timeout: float) -> list[LoaderReport]:
        fds = [p.stdout.fileno() for p in self.procs if p.stdout and p.poll() is None]
        if not fds:
            time.sleep(timeout)
            return []
        ready, _, _ = select.select(fds, [], [], timeout)
        reports = []
        for fd in ready:
            self._buf[fd] += os.read(fd, 1 << 20).decode()
            *lines, self._buf[fd] = self._buf[fd].split("\n")
            reports += [as_report(json.loads(line)) for line in lines if line.strip()]
        return reports

    def dead(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p.poll() not in (None, 0)]

    def nodes(self) -> list[dict[str, Any]]:
        """Where each load process runs: all on this machine."""
        host = socket.gethostname()
        return [{"node_id": None, "ip": None, "host": host, "pid": p.pid} for p in self.procs]

    def stop(self) -> list[LoaderReport]:
        """End every load process; returns the reports they wrote while ending (the last ones
        carry each process's clock reading after the run)."""
        self.send([{"stop": True}] * len(self.procs))
        deadline = time.monotonic() + STOP_S
        final: list[LoaderReport] = []
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            final += self.poll(0.2)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        final += self._rest()
        return final

    def _rest(self) -> list[LoaderReport]:
        """What exited processes left in their pipes."""
        out: list[LoaderReport] = []
        for proc in self.procs:
            if proc.stdout is None:
                continue
            fd = proc.stdout.fileno()
            while chunk := os.read(fd, 1 << 20):
                self._buf[fd] += chunk.decode()
            lines, self._buf[fd] = self._buf[fd].split("\n"), ""
            out += [as_report(json.loads(line)) for line in lines if line.strip()]
        return out
