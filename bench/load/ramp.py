"""Getting a step's users connected: at a fixed pace, or at the pace the server keeps up with.

``fixed``: the users start staggered over the step's ramp, then the window waits (at most
``settle_s``) until 99 % have connected once. ``adaptive``: until every user has connected
once (a 50,000-user step is 50,000 users), the orchestrator offering new users
second by second, twice as many as the server accepted in the last second (at least
``MIN_PACE``), and offers no more while the users still connecting exceed two seconds of what it
accepts; the step's ramp is the budget. Users not connected when the budget ends are stopped,
not counted as lost: the step then records how many connected and the accept rate it measured,
the server's limit in this time, instead of timeouts that would read as lost tokens, and which
side limited it: the CPU the server's and the load generator's processes used over the ramp, as
cores; ``limited_by`` names the side that used more when together they used the machine's cores
(``BUSY``), else ``accepts`` (neither side was CPU-bound: the accept path itself).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

from bench.load.config import Step
from bench.load.driver import Driver

MIN_PACE = 200  # users offered per second at the least
FIRST = 500  # users offered in the first second
BUSY = 0.9  # share of the machine's cores used by both sides together: CPU-bound


@dataclass
class RampResult:
    planned_s: float
    took_s: float
    users_connected: int
    users_offered: int
    accept_per_s: float | None  # the best 3-second average of connections accepted per second
    limited: bool  # the budget ran out before 99 % (adaptive: all) of the users connected
    adaptive: bool
    server_cores_used: float | None = None  # server CPU seconds over the ramp, per second
    loadgen_cores_used: float | None = None  # load processes' CPU seconds, per second
    limited_by: str | None = None  # limited only: "server", "loadgen" or "accepts"

    def doc(self) -> dict[str, object]:
        return asdict(self)


def share(clients: int, n: int) -> list[int]:
    """``clients`` over ``n`` load processes, as evenly as can be."""
    return [clients // n + (1 if k < clients % n else 0) for k in range(n)]


def fixed(drive: Driver, step: Step, i: int, n_loaders: int, settle_s: float) -> RampResult:
    drive.fleet.send([{"target": n, "ramp_s": step.ramp_s} for n in share(step.clients, n_loaders)])
    t0 = time.monotonic()
    drive.pump(step.ramp_s, i)
    need, give_up = math.ceil(0.99 * step.clients), t0 + step.ramp_s + settle_s
    while drive.arrived() < need and time.monotonic() < give_up and not drive.fleet.dead():
        drive.pump(0.1, i)  # arrivals come with reports (every 0.5 s): stop at the first
    arrived = drive.arrived()
    return RampResult(step.ramp_s, round(time.monotonic() - t0, 2), arrived, step.clients, None,
                      arrived < need, False)  # fmt: skip


def _cpu(drive: Driver) -> tuple[float | None, float]:
    server = drive.server_sample()
    return (None if server is None else server.cpu_s), sum(drive.last_cpu.values())


def adaptive(drive: Driver, step: Step, i: int, n_loaders: int) -> RampResult:
    fleet, need = drive.fleet, step.clients  # every user: the step is named by its users
    t0 = time.monotonic()
    srv0, gen0 = _cpu(drive)
    target = min(step.clients, FIRST)
    fleet.send([{"target": n, "ramp_s": 1.0} for n in share(target, n_loaders)])
    accepted: list[int] = []
    last = drive.arrived()
    while time.monotonic() - t0 < step.ramp_s and not fleet.dead():
        drive.pump(1.0, i)
        now = drive.arrived()
        accepted.append(max(0, now - last))
        last = now
        if now >= need:
            break
        rate = accepted[-1]
        if target < step.clients and target - now <= max(2 * rate, FIRST):
            target = min(step.clients, target + max(MIN_PACE, 2 * rate))
            fleet.send([{"target": n, "ramp_s": 1.0} for n in share(target, n_loaders)])
    arrived = drive.arrived()
    limited = arrived < need
    if limited:  # stop whoever is still connecting: measured as a limit, not as lost tokens
        fleet.send([{"target": n, "ramp_s": 0.0} for n in share(arrived, n_loaders)])
    best = max((sum(accepted[k : k + 3]) / len(accepted[k : k + 3])
                for k in range(max(1, len(accepted) - 2))), default=None)  # fmt: skip
    took = time.monotonic() - t0
    srv1, gen1 = _cpu(drive)
    srv = None if srv0 is None or srv1 is None else round((srv1 - srv0) / took, 2)
    gen = round((gen1 - gen0) / took, 2)
    return RampResult(step.ramp_s, round(took, 2), arrived, target,
                      None if best is None else round(best, 1), limited, True, srv, gen,
                      side(srv, gen, os.cpu_count() or 1) if limited else None)  # fmt: skip


def side(server: float | None, loadgen: float, cores: int) -> str | None:
    """Which side limited a ramp, from the cores each used over it (None: not measured)."""
    if server is None:
        return None
    if server + loadgen < BUSY * cores:
        return "accepts"
    return "server" if server >= loadgen else "loadgen"
