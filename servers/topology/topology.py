"""The production topology (``--lb haproxy --backends N --source llm --replay pod|redis``).

Started in this order and stopped in the reverse: Redis (``--replay redis``, unless ``--redis
URL`` names a running one), the producer (``--source llm``), N backends (each a
``Supervisor`` on its own port), then HAProxy in front (``servers.topology.haproxy``). It answers
what a
fault needs: kill or drain and restart one backend, restart Redis, every process's pid. Its
HAProxy configuration and logs go to ``workdir`` (next to a run's results).

Without ``--lb`` there is one backend and its URL is the server's (``--source llm`` on a single
server); with neither ``--lb`` nor ``--source llm`` a server is one ``Supervisor``, as before.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import transports
from servers.base import ServerConfig
from servers.process.listen import reserve_port
from servers.process.procs import terminate
from servers.process.supervisor import StartError, Supervisor
from servers.topology import nginx
from servers.topology.haproxy import HAProxy, LbConfig, LbError, render
from servers.topology.producer import ProducerConfig
from servers.topology.redisd import RedisError, RedisServer


class TopologyError(RuntimeError):
    """A part did not start (a missing binary, a refused configuration); one line."""


@dataclass
class TopologyConfig:
    backends: int = 1
    lb: LbConfig | None = field(default_factory=LbConfig)  # None: no load balancer
    redis: str | None = None  # a running Redis to use (else one is started, with replay redis)

    def __post_init__(self) -> None:
        if not 1 <= self.backends <= 32:
            raise ValueError(f"backends must be 1..32, not {self.backends}")
        if self.lb is None and self.backends != 1:
            raise ValueError("several backends need a load balancer in front (--lb haproxy)")

    def describe(self) -> dict[str, Any]:
        lb = dataclasses.asdict(self.lb) if self.lb else {}
        kind = lb.pop("kind", None)
        if kind != "nginx":
            lb.pop("profile", None)  # nginx's alone
        return {"lb": kind, "backends": self.backends, **lb, "redis": self.redis}


class Producer:
    """The simulated LLM's process (servers.topology.producer)."""

    def __init__(self, cfg: ProducerConfig) -> None:
        self.cfg = cfg
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 15.0) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servers.topology.producer", self.cfg.to_json(), str(write_fd)],
            pass_fds=(write_fd,),
        )
        os.close(write_fd)
        try:
            ready, _, _ = select.select([read_fd], [], [], timeout)
            line = os.read(read_fd, 64) if ready else b""
        finally:
            os.close(read_fd)
        if not line.strip().isdigit():
            self.stop()
            raise TopologyError("the producer did not start (its error is above)")
        self.port = int(line)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def stop(self) -> None:
        terminate(self.proc)


class Topology:
    """Backends behind a load balancer, fed by one producer and (optionally) a shared log."""

    def __init__(self, server: ServerConfig, topo: TopologyConfig, workdir: Path) -> None:
        record = transports.get(server.transport)
        self.server, self.topo, self.workdir = server, topo, workdir
        self.lb_cfg = dataclasses.replace(topo.lb, h2=not record.http) if topo.lb else None
        self.http_check = record.http
        self.host = server.hosts[0]
        self.port = server.port  # the load balancer's; 0 picks a free one
        self.redis: RedisServer | None = None
        self.producer: Producer | None = None
        self.backends: list[Supervisor] = []
        self.lb: HAProxy | nginx.Nginx | None = None
        if self.lb_cfg is not None and self.lb_cfg.kind == "nginx":
            self.lb = nginx.Nginx(self.lb_cfg, workdir / "nginx.conf")
        elif self.lb_cfg is not None:
            self.lb = HAProxy(self.lb_cfg, workdir / "haproxy.cfg")
        self._placeholders: list[Any] = []

    @property
    def url(self) -> str:
        if self.lb is None:
            return self.backends[0].url
        return transports.get(self.server.transport).url(self.host, self.port)

    @property
    def redis_url(self) -> str | None:
        return self.topo.redis or (self.redis.url if self.redis else None)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except (LbError, RedisError, StartError) as exc:
            self.stop()
            raise TopologyError(str(exc)) from None
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        cfg = self.server
        if cfg.source == "llm" and cfg.replay == "redis" and not self.topo.redis:
            self.redis = RedisServer(self.workdir)
            self.redis.start()
        if cfg.source == "llm":
            self.producer = Producer(ProducerConfig(
                replay=cfg.replay, redis=self.redis_url, shape=cfg.llm,
                replay_ttl=cfg.replay_ttl, secret=cfg.secret,
            ))  # fmt: skip
            self.producer.start()
        backend = dataclasses.replace(
            cfg, host=self.host if self.lb else cfg.host, port=0,
            producer=f"127.0.0.1:{self.producer.port}" if self.producer else None,
            redis=self.redis_url,
        )  # fmt: skip
        if self.lb is None:  # the one backend is the server: it takes the server's port
            backend.port = self.port
        for _ in range(self.topo.backends):
            sup = Supervisor(dataclasses.replace(backend))
            self.backends.append(sup)
            sup.start()
        if self.lb is None or self.lb_cfg is None:
            return
        self._placeholders = [reserve_port(self.host, self.port)]
        self.port = self._placeholders[0].getsockname()[1]
        self._placeholders += [reserve_port(h, self.port) for h in self.server.hosts[1:]]
        pods = [(b.cfg.hosts[0], b.cfg.port) for b in self.backends]
        if isinstance(self.lb, nginx.Nginx):
            text = nginx.render(self.lb_cfg, self.server.hosts, self.port, pods,
                                not self.http_check, self.workdir)  # fmt: skip
        else:
            text = render(self.lb_cfg, self.server.hosts, self.port, pods, self.http_check)
        self.lb.start(text, self.port, binds=len(self.server.hosts))

    def describe(self) -> dict[str, Any]:
        """What results.json records of the deployment."""
        return {
            **self.topo.describe(), "source": self.server.source,
            "replay": self.server.replay if self.server.source == "llm" else None,
            "llm": dataclasses.asdict(self.server.llm) if self.server.source == "llm" else None,
            "config": str(self.lb.path) if self.lb else None, "url": self.url,
            "backend_ports": [b.cfg.port for b in self.backends],
        }  # fmt: skip

    @property
    def pids(self) -> list[int]:
        """Every backend's worker processes: the server whose cost the bench measures."""
        return [pid for b in self.backends for pid in b.pids]

    def counts(self) -> dict[str, int] | None:
        """The backends' counters, summed (servers/process/metrics.py)."""
        rows = [c for b in self.backends if (c := b.counts()) is not None]
        return {k: sum(r[k] for r in rows) for k in rows[0]} if rows else None

    def parts(self) -> dict[str, list[int]]:
        """The processes around the backends, by part (each costed apart by ``bench --lb``)."""
        out: dict[str, list[int]] = {}
        if self.lb is not None:
            out["lb"] = self.lb.pids
        if self.redis is not None and self.redis.pid:
            out["redis"] = [self.redis.pid]
        if self.producer is not None and self.producer.pid:
            out["producer"] = [self.producer.pid]
        return out

    def processes(self) -> dict[str, Any]:
        return {
            "lb": self.lb.pids if self.lb else [], "backends": [b.pids for b in self.backends],
            "producer": self.producer.pid if self.producer else None,
            "redis": self.redis.pid if self.redis else None,
        }  # fmt: skip

    # faults
    def kill_backend(self, i: int) -> None:
        """kill -9 every process of backend ``i``; it stays down until ``start_backend``."""
        self.backends[i].kill()

    def drain_backend(self, i: int) -> None:
        """SIGTERM backend ``i``: its streams end the protocol's way, then it exits."""
        self.backends[i].stop()

    def start_backend(self, i: int) -> None:
        self.backends[i].start()

    def restart_redis(self, down_s: float) -> None:
        if self.redis is None:
            raise TopologyError("no Redis started here to restart (replay redis, no --redis)")
        self.redis.stop()
        time.sleep(down_s)
        self.redis.start()

    def stop(self) -> None:
        if self.lb is not None:
            self.lb.stop()
        for sup in self.backends:
            sup.stop()
        if self.producer is not None:
            self.producer.stop()
        if self.redis is not None:
            self.redis.stop()
        for sock in self._placeholders:
            sock.close()
        self._placeholders.clear()

    def ready_line(self) -> str:
        return json.dumps({"event": "ready", "transport": self.server.transport, "url": self.url,
                           **self.describe(), "pids": self.processes()})  # fmt: skip
