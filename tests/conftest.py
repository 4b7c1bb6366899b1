"""Real servers on port 0, started through the real CLI, always cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import transports
from servers.process import metrics

# Property tests: `make test` runs the same examples every time (derandomized, no database, so
# a green run stays green); `make fuzz` (HYPOTHESIS_PROFILE=fuzz) searches widely.
settings.register_profile("ci", max_examples=150, derandomize=True, database=None, deadline=None)
settings.register_profile("fuzz", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# The runs tests start need a yardstick's shape, not its precision (bench/load/yardstick.py).
os.environ.setdefault("TOKENBENCH_YARDSTICK", "quick")

# Every test that runs "on each transport" takes them from the registry (tokenbench's own four;
# a plugin in TOKENBENCH_PLUGINS is tested too).
TRANSPORTS = transports.names()
HTTP_TRANSPORTS = tuple(t.name for t in transports.all_transports() if t.http)
# The server stacks: a module that overrides the ``stack`` fixture with ``params=STACKS`` runs
# every test on each (the contract and resilience suites do); the default is stock alone.
STACKS = transports.stacks.names()


@dataclass
class ServerHandle:
    transport: str
    url: str
    port: int
    pids: list[int]
    workers: int
    metrics_file: str
    proc: subprocess.Popen[str]
    stderr_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def counters(self) -> dict[str, int]:
        rows = metrics.read_rows(self.metrics_file, self.workers)
        return {k: sum(r[k] for r in rows) for k in metrics.NAMES}

    def rows(self) -> list[dict[str, int]]:
        return metrics.read_rows(self.metrics_file, self.workers)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def http_url(self) -> str:
        return self.url.replace("grpc://", "http://")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.http_url() + path, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.pids:  # the workers must be gone too
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        return self.proc.returncode


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def start_server(
    transport: str, *args: str, workers: int = 1, stack: str = "stock"
) -> ServerHandle:
    """``tokenbench serve`` on a free port; ``stack`` where the transport has it (else stock)."""
    if stack != "stock" and stack in transports.get(transport).stacks and "--stack" not in args:
        args = (*args, "--stack", stack)
    err = Path(tempfile.mkstemp(prefix=f"tokenbench-{transport}-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "bench.cli", "serve", transport, "--port", "0",
           "--workers", str(workers), *args]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=err.open("w"), text=True, start_new_session=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise RuntimeError(f"server did not start: {err.read_text()}")
    ready = json.loads(line)
    return ServerHandle(
        transport, ready["url"], ready["port"], ready["pids"], workers,
        ready["metrics_file"], proc, err,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack() -> str:
    return "stock"


@pytest.fixture
def server_factory(stack: str) -> Iterator[Callable[..., ServerHandle]]:
    """Servers started on demand, on the module's ``stack``; a transport without that stack is
    skipped (its stock server runs in the stock pass)."""
    started: list[ServerHandle] = []

    def factory(transport: str, *args: str, workers: int = 1) -> ServerHandle:
        if stack not in transports.get(transport).stacks:
            pytest.skip(f"{transport} has no {stack} stack")
        handle = start_server(transport, *args, workers=workers, stack=stack)
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        handle.stop()
        handle.stderr_path.unlink(missing_ok=True)


def retry(transport: str, ms: int) -> tuple[str, ...]:
    """``--retry-ms`` for the one transport it applies to (SSE's ``retry:``); serve refuses it
    elsewhere."""
    return ("--retry-ms", str(ms)) if transport == "sse" else ()


# The modules whose tests share one server per transport and stack. Their tests run as one block
# ordered by stack (``pytest_collection_modifyitems``), so each stack's servers start once for
# all of them, not once per module: about a minute of CI.
POOLED = ("test_contract.py", "test_fuzz_http.py", "test_stop.py")


class StackServers(dict[str, ServerHandle]):
    """The servers of one stack; a test asking for a transport that lacks it is skipped."""

    def __init__(self, stack: str) -> None:
        super().__init__()
        self.stack = stack

    def __missing__(self, transport: str) -> ServerHandle:
        pytest.skip(f"{transport} has no {self.stack} stack")


_pool: dict[str, StackServers] = {}


def _stop_pool() -> None:
    for handles in _pool.values():
        for handle in handles.values():
            handle.stop()
            handle.stderr_path.unlink(missing_ok=True)
    _pool.clear()


def _pooled(item: pytest.Item | None) -> bool:
    return item is not None and item.path.name in POOLED


@pytest.hookimpl(trylast=True)  # after pytest's own grouping by fixture parameter
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    pooled = [i for i in items if _pooled(i)]
    if not pooled:
        return
    first = items.index(pooled[0])
    rest = [i for i in items if not _pooled(i)]

    def order(item: pytest.Item) -> int:
        params = getattr(item, "callspec", None)
        return STACKS.index(params.params.get("stack", "stock")) if params else 0

    items[:] = rest[:first] + sorted(pooled, key=order) + rest[first:]


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _pooled(item) and not _pooled(nextitem):
        _stop_pool()  # the block is over: no idle servers under the tests that follow


def pytest_sessionfinish() -> None:
    _stop_pool()  # an interrupted run too


@pytest.fixture(scope="module")
def servers(stack: str) -> Iterator[dict[str, ServerHandle]]:
    """One server per transport (two workers each, on the module's ``stack`` where the transport
    has it), shared by the pooled modules' tests on that stack."""
    if stack not in _pool:
        _stop_pool()  # one stack's servers at a time
        _pool[stack] = StackServers(stack)
        for t in TRANSPORTS:
            if stack in transports.get(t).stacks:
                _pool[stack][t] = start_server(t, *retry(t, 100), workers=2, stack=stack)
    yield _pool[stack]


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
