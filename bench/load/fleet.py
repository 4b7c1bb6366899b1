"""The load processes of one run: started, pinned, commanded and read (``bench.load.messages``)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time

from bench.load.messages import LoaderCommand, LoaderConfig, LoaderReport, as_report, config_json


def pin(pids: list[int], cores: set[int] | None) -> None:
    if not cores:
        return
    for pid in pids:
        with contextlib.suppress(OSError):  # a process that already exited
            os.sched_setaffinity(pid, cores)


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

    def stop(self) -> None:
        self.send([{"stop": True}] * len(self.procs))
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
