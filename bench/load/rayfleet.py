"""Load processes as Ray actors: ``RayFleet``, the ``Fleet`` of bench.load.fleet over Ray.

Rules of this module:
- A load process is the same ``python -m bench.load.loader`` as on one machine, with the same
  compiled path, started by a Ray actor (one CPU each, spread over the nodes) on its node. The
  actor only relays: commands to the process's stdin, its JSON-line reports back through Ray.
  So everything downstream (windows, histograms, results.json) is unchanged.
- A load process on the coordinator's machine is pinned as bench.load.run pins local ones, and
  every one is put back at normal priority where the system allows (``normal_priority``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.load.cluster import PLACE_S, ClusterError, ip_of, joined, normal_priority, ray_module
from bench.load.fleet import on_cores, pin
from bench.load.messages import LoaderCommand, LoaderConfig, LoaderReport, as_report, config_json

ENV_PREFIXES = ("TOKENBENCH_",)  # what a load process inherits of the coordinator's env


class LoaderHost:
    """The actor: runs one load process on its node and relays its pipes."""

    def __init__(self, config: str, env: dict[str, str], cores: list[int] | None,
                 coordinator_ip: str) -> None:  # fmt: skip
        import ray

        import bench

        root = Path(bench.__file__).resolve().parent.parent
        self.node = ray.get_runtime_context().get_node_id()
        self.ip = ray.util.get_node_ip_address()
        # pinned as on one machine (bench.load.fleet): from its start, then every thread
        pinned = set(cores) if cores and self.ip == coordinator_ip else None
        with on_cores(pinned):
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.load.loader", config],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root,
                env={**os.environ, **env}, text=True, bufsize=1,
            )  # fmt: skip
        pin([self.proc.pid], pinned)
        self.nice = normal_priority(self.proc.pid)
        normal_priority(os.getpid())  # this relay too
        self.buf = ""

    def where(self) -> dict[str, Any]:
        return {"node_id": self.node, "ip": self.ip, "host": socket.gethostname(),
                "pid": self.proc.pid, "nice": self.nice}  # fmt: skip

    def send(self, line: str) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()

    def read(self, timeout: float) -> tuple[list[str], int | None]:
        """Report lines written within ``timeout``, and the exit code once it has exited."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                self.proc.wait()
                break
            self.buf += chunk.decode()
            *got, self.buf = self.buf.split("\n")
            lines += [g for g in got if g.strip()]
            if lines:
                break
        return lines, self.proc.poll()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class RayFleet:
    """``Fleet``'s interface over Ray actors (``bench.load.fleet``)."""

    def __init__(self, configs: list[LoaderConfig], cores: set[int] | None,
                 local_only: bool) -> None:  # fmt: skip
        ray, info = ray_module(), joined()
        self.ray = ray
        host = ray.remote(num_cpus=1, max_restarts=0)(LoaderHost)
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
        me = info["coordinator_node"]
        self.actors = [
            host.options(scheduling_strategy="SPREAD").remote(
                config_json(c), env, sorted(cores) if cores else None, ip_of(info, me)
            )
            for c in configs
        ]
        self.codes: list[int | None] = [None] * len(self.actors)
        try:
            self.placed = ray.get([a.where.remote() for a in self.actors], timeout=PLACE_S)
        except ray.exceptions.GetTimeoutError:
            self.kill()
            need, cpus = len(configs), sum(n["cpus"] for n in info["nodes"])
            raise ClusterError(
                f"the cluster did not place {need} load processes in {PLACE_S:g} s "
                f"({cpus:g} CPUs in all; each asks for one)"
            ) from None
        except ray.exceptions.RayError as exc:
            self.kill()
            why = " ".join(str(exc).split())[-300:]
            raise ClusterError(f"a load process could not start on its node: {why}") from None
        niced = [p for p in self.placed if p["nice"]]
        if niced:
            print(f"warning: {len(niced)} load process(es) run at nice {niced[0]['nice']} (Ray's "
                  "worker niceness): start the cluster with RAY_worker_niceness=0 "
                  "(docs/cluster.md)", file=sys.stderr, flush=True)  # fmt: skip
        here = ip_of(info, me)
        away = [p for p in self.placed if p["ip"] != here]
        if local_only and away:
            self.kill()
            raise ClusterError(
                f"{len(away)} load process(es) landed on other nodes, but the server runs here on "
                "loopback: start it where they can reach it and pass --target"
            )

    def nodes(self) -> list[dict[str, Any]]:
        return self.placed

    def send(self, messages: list[LoaderCommand]) -> None:
        for actor, msg, code in zip(self.actors, messages, self.codes, strict=True):
            if code is None:
                actor.send.remote(json.dumps(msg))

    def poll(self, timeout: float) -> list[LoaderReport]:
        live = [i for i, c in enumerate(self.codes) if c is None]
        if not live:
            time.sleep(timeout)
            return []
        got = self.ray.get([self.actors[i].read.remote(timeout) for i in live])
        reports: list[LoaderReport] = []
        for i, (lines, code) in zip(live, got, strict=True):
            reports += [as_report(json.loads(line)) for line in lines]
            self.codes[i] = code
        return reports

    def dead(self) -> list[int]:
        return [i for i, c in enumerate(self.codes) if c not in (None, 0)]

    def stop(self) -> list[LoaderReport]:
        from bench.load.fleet import STOP_S

        self.send([{"stop": True}] * len(self.actors))
        deadline = time.monotonic() + STOP_S
        final: list[LoaderReport] = []
        while any(c is None for c in self.codes) and time.monotonic() < deadline:
            final += self.poll(0.2)
        self.kill()
        return final

    def kill(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):  # an actor already gone
                self.ray.get(actor.kill.remote(), timeout=10)
            self.ray.kill(actor)
