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
from typing import Any, Protocol

from bench.load.messages import LoaderCommand, LoaderConfig, LoaderReport, as_report, config_json

STOP_S = 15.0  # for load processes to end their users and read the server's clock once more


def pin(pids: list[int], cores: set[int] | None) -> None:
    if not cores:
        return
    for pid in pids:
        with contextlib.suppress(OSError):  # a process that already exited
            os.sched_setaffinity(pid, cores)


class LoadFleet(Protocol):
    """What a run needs of its load processes, wherever they run (here, or bench.load.cluster)."""

    def send(self, messages: list[LoaderCommand]) -> None: ...
    def poll(self, timeout: float) -> list[LoaderReport]: ...
    def dead(self) -> list[int]: ...
    def stop(self) -> list[LoaderReport]: ...
    def nodes(self) -> list[dict[str, Any]]: ...


class Fleet:
    def __init__(self, configs: list[LoaderConfig], cores: set[int] | None) -> None:
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
