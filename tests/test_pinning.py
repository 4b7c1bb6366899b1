"""Pinning that holds (issue 23): ``bench.load.fleet.pin`` puts every thread of a process, and of
its children, on the cores, not only the one thread sched_setaffinity(2) names; threads started
later inherit the mask; ``on_cores`` starts a process on them. Real processes, real servers (the
bench's own start path), each ended here. Nothing is timed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.load import procstat
from bench.load.fleet import on_cores, pin, tasks_outside
from bench.load.run import _over_cores, probe
from bench.load.window import ServerCost
from servers.base import ServerConfig
from servers.process.supervisor import Supervisor

ALL = os.sched_getaffinity(0)
pytestmark = pytest.mark.skipif(len(ALL) < 2, reason="pinning needs 2 cores or more")

# Three threads blocked in a wait, a child process (reads its stdin: ends with this one), then
# one more thread per "spawn" line, whose tid it prints.
CHILD = r"""
import subprocess, sys, threading
stop = threading.Event()
for _ in range(3):
    threading.Thread(target=stop.wait, daemon=True).start()
kid = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                       stdin=subprocess.PIPE)
print(kid.pid, flush=True)
for line in sys.stdin:
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    print(t.native_id, flush=True)
"""


def _tids(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def _masks(pid: int) -> list[set[int]]:
    """Every task's mask (sched_getaffinity(2) per tid of /proc/<pid>/task)."""
    return [os.sched_getaffinity(tid) for tid in _tids(pid)]


@pytest.fixture
def child() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        yield proc, int(proc.stdout.readline())
    finally:
        proc.kill()  # its child reads EOF on its stdin and ends
        proc.wait()


@pytest.fixture
def core() -> set[int]:
    return {max(ALL)}


def test_pin_moves_every_thread_and_the_children(child, core: set[int]) -> None:
    proc, kid = child
    assert len(_tids(proc.pid)) >= 4  # main and the three waiting
    assert tasks_outside(proc.pid, core)  # started on every core
    pin([proc.pid], core)
    assert all(m == core for m in _masks(proc.pid))
    assert all(m == core for m in _masks(kid))
    assert tasks_outside(proc.pid, core) == []


def test_a_thread_started_after_pinning_inherits_the_mask(child, core: set[int]) -> None:
    proc, _ = child
    pin([proc.pid], core)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("spawn\n")
    proc.stdin.flush()
    tid = int(proc.stdout.readline())
    assert tid in _tids(proc.pid)
    assert os.sched_getaffinity(tid) == core
    assert tasks_outside(proc.pid, core) == []


def test_only_what_is_asked_is_pinned(child, core: set[int]) -> None:
    proc, _ = child
    pin([proc.pid], core)
    assert os.sched_getaffinity(0) == ALL  # not this process, the parent
    assert tasks_outside(os.getpid(), ALL) == []


def test_processes_that_are_gone_are_skipped(core: set[int]) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pin([gone.pid], core)
    assert tasks_outside(gone.pid, core) == []
    pin([], core)
    pin([gone.pid], None)


PRINT_MASK = "import os; print(sorted(os.sched_getaffinity(0)))"


def test_on_cores_starts_a_process_on_them_and_puts_the_thread_back(core: set[int]) -> None:
    with on_cores(core):
        out = subprocess.run([sys.executable, "-c", PRINT_MASK], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    assert out.strip() == str(sorted(core))
    assert os.sched_getaffinity(0) == ALL
    with on_cores(None):
        assert os.sched_getaffinity(0) == ALL


# A real server, started the way ``tokenbench bench`` starts it (bench.load.run): granian's Rust
# threads, grpc.aio's C-core threads run before the bench can pin anything.
SERVERS = [("sse", "granian"), ("grpc", "stock")]


@pytest.fixture(params=SERVERS, ids=lambda p: "-".join(p))
def server(request) -> Iterator[Supervisor]:
    transport, stack = request.param
    sup = Supervisor(ServerConfig(transport, port=0, workers=1, stack=stack))
    yield sup
    sup.stop()


def test_a_started_server_is_pinned_thread_by_thread(server: Supervisor, core: set[int]) -> None:
    server.start()
    (pid,) = server.pids
    assert len(_tids(pid)) > 1
    assert tasks_outside(pid, core)
    pin(server.pids, core)
    assert all(m == core for m in _masks(pid))
    probe(server.cfg.transport, server.url)  # a stream served: any thread it starts inherits
    assert tasks_outside(pid, core) == []


def test_a_server_started_on_the_cores_has_no_thread_outside(
    server: Supervisor, core: set[int]
) -> None:
    with on_cores(core):
        server.start()
    assert os.sched_getaffinity(0) == ALL
    (pid,) = server.pids
    assert len(_tids(pid)) > 1
    assert all(m == core for m in _masks(pid))
    probe(server.cfg.transport, server.url)
    assert tasks_outside(pid, core) == []


def _cost(cpu_s: float, cores: int) -> ServerCost:
    a, b = procstat.Sample(10.0, 0, 0, 1), procstat.Sample(10.0 + cpu_s, 0, 0, 1)
    return ServerCost(a, b, 0, 0, None, None, None, cores)


def test_cpu_over_cores_flags_more_cpu_than_the_cores_give() -> None:
    assert _over_cores(_cost(10.0, 1), 10.0, 1) is False  # one core busy all along
    assert _over_cores(_cost(10.2, 1), 10.0, 1) is False  # within /proc's ticks
    assert _over_cores(_cost(10.3, 1), 10.0, 1) is True  # some thread ran elsewhere
    assert _over_cores(_cost(20.0, 2), 10.0, 2) is False
    assert _over_cores(_cost(30.0, 2), 10.0, None) is None  # not pinned
    assert _over_cores(None, 10.0, 1) is None  # not measured (--target)
