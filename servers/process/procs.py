"""Stopping a child process the same way everywhere: SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import subprocess


def terminate(proc: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    """End ``proc`` (if running): SIGTERM, then SIGKILL after ``grace`` seconds; reaped."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
