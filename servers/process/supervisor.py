"""Run one transport server as N worker processes sharing one port.

The supervisor reserves the port (port 0 picks a free one), starts N workers, waits until each
accepts connections, restarts a worker that dies unexpectedly, and on SIGTERM or SIGINT asks
every worker to drain (SIGTERM), then kills what is left after the grace period. Workers share a
counter table so ``/metrics`` on any worker reports the whole server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import transports
from servers.base import ServerConfig
from servers.process import metrics
from servers.process.listen import reserve_port
from servers.source import stops


class StartError(RuntimeError):
    """A worker did not come up; the message says why (its stderr is on ours)."""


class Supervisor:
    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * cfg.workers
        self._placeholders: list[socket.socket] = []
        self._table: Path | None = None
        self.stopping = False
        self.restarts = 0

    @property
    def url(self) -> str:
        return transports.get(self.cfg.transport).url(self.cfg.hosts[0], self.cfg.port)

    @property
    def web_url(self) -> str:
        """The origin a browser loads pages from and reads streams at (servers/http/web.py)."""
        port = self.cfg.web_port if self.cfg.web_port is not None else self.cfg.port
        return f"http://{self.cfg.hosts[0]}:{port}"

    @property
    def metrics_file(self) -> str | None:
        return str(self._table) if self._table else None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def counts(self) -> dict[str, int] | None:
        """The server's counters, summed over its workers (servers/process/metrics.py)."""
        if self._table is None:
            return None
        rows = metrics.read_rows(self._table, self.cfg.workers)
        return {k: sum(r[k] for r in rows) for k in metrics.NAMES}

    def parts(self) -> dict[str, list[int]]:
        """Processes on the server's side besides its workers: none (servers.topology.topology
        has)."""
        return {}

    def start(self, timeout: float = 30.0) -> None:
        """Start the workers; after ``stop()`` or ``kill()`` this restarts on the same port."""
        self.stopping = False
        for host in self.cfg.hosts:  # port 0 is resolved on the first address, then shared
            try:
                self._placeholders.append(reserve_port(host, self.cfg.port))
            except OSError as exc:
                self.stop()
                raise StartError(f"cannot bind {host}:{self.cfg.port}: {exc.strerror}") from None
            self.cfg.port = self._placeholders[0].getsockname()[1]
        if self.cfg.web_port is not None:  # the web front's port, reserved the same way
            try:
                sock = reserve_port(self.cfg.hosts[0], self.cfg.web_port)
            except OSError as exc:
                self.stop()
                raise StartError(
                    f"cannot bind web port {self.cfg.web_port}: {exc.strerror}"
                ) from None
            self._placeholders.append(sock)
            self.cfg.web_port = sock.getsockname()[1]
        fd, name = tempfile.mkstemp(prefix="tokenbench-metrics-", dir=_shm_dir())
        os.close(fd)
        self._table = Path(name)
        metrics.create_table(self._table)
        stops.create_table(Path(stops.table_path(str(self._table))), self.cfg.workers)
        try:
            pending = {slot: self._spawn(slot) for slot in range(self.cfg.workers)}
            self._wait_ready(pending, timeout)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, slot: int) -> int:
        cfg = dataclasses.replace(self.cfg, metrics_path=str(self._table), slot=slot)
        read_fd, write_fd = os.pipe()
        self.procs[slot] = subprocess.Popen(
            [sys.executable, "-m", "servers.process.worker", cfg.to_json(), str(write_fd)],
            pass_fds=(write_fd,),
        )
        os.close(write_fd)
        return read_fd

    def _wait_ready(self, pending: dict[int, int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StartError(f"{len(pending)} worker(s) not ready after {timeout:g} s")
                ready, _, _ = select.select(list(pending.values()), [], [], min(left, 0.2))
                for slot, fd in list(pending.items()):
                    proc = self.procs[slot]
                    if fd in ready and os.read(fd, 64):
                        os.close(pending.pop(slot))
                    elif proc is not None and proc.poll() is not None:
                        raise StartError(f"worker {slot} exited with code {proc.returncode}")
        finally:
            for fd in pending.values():
                os.close(fd)

    def watch(self) -> None:
        """Block until stopped; restart workers that die on their own (at most 10 times)."""
        while not self.stopping:
            time.sleep(0.05)  # a SIGTERM is acted on within 50 ms
            for slot, proc in enumerate(self.procs):
                if self.stopping or proc is None or proc.poll() is None:
                    continue
                if self.restarts >= 10:
                    print(
                        f"worker {slot} exited ({proc.returncode}); too many restarts",
                        file=sys.stderr,
                    )
                    self.stop()
                    return
                self.restarts += 1
                print(f"worker {slot} exited ({proc.returncode}); restarting", file=sys.stderr)
                assert self._table is not None
                metrics.reset_slot(self._table, slot)
                with contextlib.suppress(StartError):
                    self._wait_ready({slot: self._spawn(slot)}, 30.0)

    def kill(self) -> None:
        """SIGKILL every worker at once (a crash); then ``start()`` brings the server back."""
        self.stopping = True
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            if proc is not None:
                proc.wait()
        self.stop()

    def stop(self) -> None:
        """SIGTERM every worker, wait for the grace period, then SIGKILL what remains."""
        self.stopping = True
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.grace + 3.0
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sock in self._placeholders:
            sock.close()
        self._placeholders.clear()
        if self._table is not None:
            self._table.unlink(missing_ok=True)
            Path(stops.table_path(str(self._table))).unlink(missing_ok=True)
            self._table = None


def _shm_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
