"""A throwaway redis-server on a loopback port for ``--replay redis`` (or ``--redis URL``).

Persistence is off (``--save ""``, ``--appendonly no``): the log holds live answers for their
replay window and nothing else, so a restart empties it, as a cache node's would
(redis.io/docs/latest/operate/oss_and_stack/management/persistence).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from servers.process.procs import terminate

INSTALL = "apt-get install redis-server"


class RedisError(RuntimeError):
    """redis-server is missing or did not start; one line saying what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.workdir, self.host = workdir, host
        self.port = port or free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, timeout: float = 10.0) -> None:
        exe = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin")
        if exe is None:
            raise RedisError(f"redis-server is not installed: run `{INSTALL}`")
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [exe, "--bind", self.host, "--port", str(self.port), "--save", "", "--appendonly",
             "no", "--protected-mode", "no", "--dir", str(self.workdir), "--loglevel", "warning"],
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None:
                raise RedisError(f"redis-server exited at start; see {self.workdir}/redis.log")
            if time.monotonic() > deadline:
                self.stop()
                raise RedisError(f"redis-server not answering on {self.port} after {timeout:g} s")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
