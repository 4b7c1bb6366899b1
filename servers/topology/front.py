"""What the proxies in front share (servers/topology/haproxy.py, servers/topology/nginx.py):
finding the binary,
having it check its configuration, and waiting until it listens. Errors are ``LbError``, one
line that says what to do."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class LbError(RuntimeError):
    """A proxy is missing or did not start; the message is one line and says what to do."""


def find(name: str, install: str, version: str) -> str:
    """The binary's path (PATH, then /usr/sbin), or LbError naming the install command."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        raise LbError(f"{name} is not installed: run `{install}` (Debian's package, {version})")
    return path


def check(argv: list[str], name: str, path: Path) -> None:
    """Run the proxy's own configuration check (``argv``); LbError with its last line."""
    done = subprocess.run(argv, capture_output=True)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        raise LbError(f"{name} refused {path}: {why[-1] if why else 'no reason'}")


def wait_listening(port: int, want: int, procs: list[subprocess.Popen[bytes]],
                   stop: Callable[[], None], name: str, log: Path,
                   timeout: float) -> None:  # fmt: skip
    """Until ``want`` sockets listen on ``port``; a process that exits, or the timeout, stops
    everything and raises LbError."""
    deadline = time.monotonic() + timeout
    while listeners(port) < want:
        if any(p.poll() is not None for p in procs):
            stop()
            raise LbError(f"{name} exited at start; see {log}")
        if time.monotonic() > deadline:
            stop()
            raise LbError(f"{name} not listening on {port} after {timeout:g} s")
        time.sleep(0.02)


def listeners(port: int) -> int:
    """How many sockets listen on ``port`` (/proc/net/tcp, state 0A), whoever owns them."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count
