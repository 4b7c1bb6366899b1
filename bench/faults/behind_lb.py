"""Faults behind the load balancer (``tokenbench faults --lb haproxy``): what happens to the
backends, the log or the idle connections, while the clients read through HAProxy.

- ``backend-kill``: kill -9 one backend under load; it stays down. Its clients come back through
  the LB, which sends them to another backend once its health check (or the refused connect)
  says so; whether they resume depends on the replay log (pod: gone; redis: shared).
- ``rolling-deploy``: every backend in turn drains on SIGTERM (its protocol's goodbye: WebSocket
  1001, gRPC UNAVAILABLE, SSE end of response), restarts, and gets back into the LB's rotation
  (``rise`` health checks) before the next one goes.
- ``idle-timeout`` / ``idle-timeout-silent``: the answer pauses (a tool call) for longer than
  the LB's idle timeout, with the transport's heartbeat on, and off.
- ``redis-restart``: the shared log goes away for a few seconds (persistence is off, so it
  comes back empty).

Timings are scaled down from production so a run takes seconds: the LB's idle timeout for the
idle scenarios is ``IDLE_S`` (the ALB's and nginx's ``proxy_read_timeout`` are 60 s, a CDN's
about 100 s) and the pause ``pause_s(IDLE_S)`` (say a 70 s tool call). The ratio, pause over
timeout, is what matters; ``tokenbench faults --idle-s 60`` runs the real timeout.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from servers.base import ServerConfig
from servers.topology.haproxy import LbConfig
from servers.topology.topology import Topology

IDLE_S = 5.0  # the LB's idle timeout in the idle scenarios (--idle-s)


def pause_s(idle_s: float) -> float:
    """The answer's pause for an idle timeout: past it by a fifth, and by 7 s at least."""
    return idle_s + max(7.0, idle_s / 5)


PAUSE_S = pause_s(IDLE_S)
PAUSE_AT = 100  # the pause comes before this token (2.5 s of tokens at 40/s), and only then
REDIS_DOWN_S = 3.0
SILENT_HEARTBEAT_S = 3600.0  # "heartbeat off": none within any run


@dataclass(frozen=True)
class LbScenario:
    name: str
    description: str
    needs: str | None = None  # "llm" (a pause needs a model) or "redis" (a log to restart)
    min_tokens: int = 400  # long enough for the fault to reach every backend
    tokens: int | None = None  # exactly this many (the idle scenarios: one pause, mid-answer)


SCENARIOS: dict[str, LbScenario] = {
    s.name: s
    for s in (
        LbScenario("backend-kill", "one backend is killed (-9) under load and stays down"),
        LbScenario("rolling-deploy", "every backend in turn drains (SIGTERM), restarts, rejoins",
                   min_tokens=1000),
        LbScenario("idle-timeout", "the answer pauses past the LB's idle timeout (--idle-s, "
                   f"{IDLE_S:g} s by default); heartbeats on", needs="llm", tokens=2 * PAUSE_AT),
        LbScenario("idle-timeout-silent", "the same pause with heartbeats off", needs="llm",
                   tokens=2 * PAUSE_AT),
        LbScenario("redis-restart", f"the shared log is down for {REDIS_DOWN_S:g} s and comes "
                   "back empty", needs="redis"),
    )
}  # fmt: skip


def unmet(name: str, cfg: ServerConfig) -> str | None:
    """Why scenario ``name`` cannot run with this server configuration, or None."""
    need = SCENARIOS[name].needs
    if need == "llm" and cfg.source != "llm":
        return "a pause needs --source llm"
    if need == "redis" and (cfg.source != "llm" or cfg.replay != "redis"):
        return "needs --source llm --replay redis"
    return None


def configure(
    name: str, cfg: ServerConfig, lb: LbConfig, idle_s: float = IDLE_S
) -> tuple[ServerConfig, LbConfig]:
    """The server and LB settings a scenario runs with (``idle_s``: the idle scenarios' LB
    idle timeout)."""
    if not name.startswith("idle-timeout"):
        return cfg, lb
    shape = dataclasses.replace(cfg.llm, pause_every=PAUSE_AT, pause_s=pause_s(idle_s))
    cfg = dataclasses.replace(cfg, llm=shape)
    if name == "idle-timeout-silent":
        cfg = dataclasses.replace(cfg, heartbeat=SILENT_HEARTBEAT_S)
    return cfg, dataclasses.replace(lb, idle_timeout_s=idle_s)


def client_heartbeat(name: str, heartbeat: float) -> float:
    """The clients' idea of the heartbeat (their watchdog waits two of them)."""
    return SILENT_HEARTBEAT_S if name == "idle-timeout-silent" else heartbeat


def apply(name: str, topo: Topology) -> bool:
    """Do scenario ``name``'s fault to the topology now (blocking); False if it has none (the
    idle scenarios' fault is the model's pause)."""
    lb = topo.lb_cfg
    rejoin_s = 2 * (lb.check_inter_s if lb else 1.0) + 0.5  # rise 2, then one more look
    if name == "backend-kill":
        topo.kill_backend(0)
    elif name == "rolling-deploy":
        for i in range(len(topo.backends)):
            topo.drain_backend(i)
            topo.start_backend(i)
            time.sleep(rejoin_s)
    elif name == "redis-restart":
        topo.restart_redis(REDIS_DOWN_S)
    else:
        return False
    return True
