"""Load processes on a Ray cluster: ``tokenbench bench --cluster ADDRESS`` (docs/cluster.md).

Rules of this module:
- A load process is the same ``python -m bench.load.loader`` as on one machine, with the same
  compiled path, started by a Ray actor (one CPU each, spread over the nodes) on its node. The
  actor only relays: commands to the process's stdin, its JSON-line reports back through Ray.
  So ``RayFleet`` is ``bench.load.fleet.Fleet`` with Ray in between, and everything downstream
  (windows, histograms, results.json) is unchanged.
- Each load process reads the server's clock itself (bench.load.clock): nodes' clocks differ.
- Ray is optional (``pip install 'tokenbench[cluster]'``); without it, ``ClusterError`` says so.
- Every node runs the same tokenbench install (docs/cluster.md): nothing is shipped at run time.
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

from bench.load.messages import LoaderCommand, LoaderConfig, LoaderReport, as_report, config_json

INSTALL = "pip install 'tokenbench[cluster]'  (or: .venv/bin/pip install 'ray>=2.40')"
PLACE_S = 120.0  # for every actor to be placed and its load process started
ENV_PREFIXES = ("TOKENBENCH_",)  # what a load process inherits from the coordinator's environment


_joined: dict[str, Any] | None = None  # what ``connect`` found, for the runs that follow


class ClusterError(RuntimeError):
    """No Ray, no cluster at the address, or a cluster that cannot hold the load processes."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--cluster needs Ray, which is not installed: {INSTALL}") from None
    return ray


def connect(address: str) -> dict[str, Any]:
    """Join the cluster at ``address`` (``auto``, ``host:port``, ``ray://host:port``), or start
    one on this machine (``local``). Returns what results.json records of it."""
    ray = _ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "include_dashboard": False, "log_to_driver": True, "configure_logging": False,
        }  # fmt: skip
        _reachable(address)
        if address == "local":
            # Actors ask for one logical CPU each; a local cluster offers enough of them, as
            # load processes sleep most of the time and the OS spreads them over the cores.
            kwargs["num_cpus"] = max(8, os.cpu_count() or 1)
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except Exception as exc:  # ConnectionError, RuntimeError...: one line, whatever it is
            why = " ".join(str(exc).split())[:300]
            raise ClusterError(f"--cluster {address}: cannot join a Ray cluster: {why}") from None
    global _joined
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    _joined = {
        "address": address,
        "ray_version": ray.__version__,
        "nodes": [_node(n) for n in nodes],
        "coordinator_node": ray.get_runtime_context().get_node_id(),
    }
    return _joined


def _reachable(address: str) -> None:
    """A ``host:port`` (or ``ray://host:port``) that does not answer TCP fails here at once;
    Ray itself retries for minutes."""
    if address in ("local", "auto"):
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--cluster {address}: not auto, local, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterError(f"--cluster {address}: no Ray cluster answers there ({why})") from None


def _node(n: dict[str, Any]) -> dict[str, Any]:
    return {"node_id": n["NodeID"], "ip": n["NodeManagerAddress"],
            "cpus": n.get("Resources", {}).get("CPU", 0)}  # fmt: skip


def _ip_of(info: dict[str, Any], node_id: str) -> str | None:
    """A node's address: nodes with the coordinator's share its machine (and its loopback)."""
    return next((n["ip"] for n in info["nodes"] if n["node_id"] == node_id), None)


def joined() -> dict[str, Any]:
    if _joined is None:
        raise ClusterError("not connected to a Ray cluster (cluster.connect first)")
    return _joined


def shutdown() -> None:
    global _joined
    _joined = None
    with contextlib.suppress(ImportError):
        import ray

        if ray.is_initialized():
            ray.shutdown()


class LoaderHost:
    """The actor: runs one load process on its node and relays its pipes."""

    def __init__(self, config: str, env: dict[str, str], cores: list[int] | None,
                 coordinator_ip: str) -> None:  # fmt: skip
        import ray

        import bench

        root = Path(bench.__file__).resolve().parent.parent
        self.node = ray.get_runtime_context().get_node_id()
        self.ip = ray.util.get_node_ip_address()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.load.loader", config],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root,
            env={**os.environ, **env}, text=True, bufsize=1,
        )  # fmt: skip
        if cores and self.ip == coordinator_ip:  # pinned as on one machine (bench.load.run)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.proc.pid, set(cores))
        self.buf = ""

    def where(self) -> dict[str, Any]:
        return {"node_id": self.node, "ip": self.ip, "host": socket.gethostname(),
                "pid": self.proc.pid}  # fmt: skip

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
        ray, info = _ray(), joined()
        self.ray = ray
        host = ray.remote(num_cpus=1, max_restarts=0)(LoaderHost)
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
        me = info["coordinator_node"]
        self.actors = [
            host.options(scheduling_strategy="SPREAD").remote(
                config_json(c), env, sorted(cores) if cores else None, _ip_of(info, me)
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
        here = _ip_of(info, me)
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


def fault_clients(args: tuple[Any, ...]) -> Any:
    """A ``bench.faults.clientside.FaultClients`` as a Ray actor on one of the cluster's nodes
    on this machine (the fault runs' server listens on loopback here)."""
    ray, info = _ray(), joined()
    from bench.faults.clientside import FaultClients

    actor_cls = ray.remote(num_cpus=1, max_restarts=0)(FaultClients)
    actor = actor_cls.options(scheduling_strategy="SPREAD").remote(*args)
    try:
        ip = ray.get(actor.where.remote(), timeout=PLACE_S)
    except ray.exceptions.GetTimeoutError:
        ray.kill(actor)
        raise ClusterError(
            f"the cluster did not place a fault run's clients in {PLACE_S:g} s"
        ) from None
    if ip != _ip_of(info, info["coordinator_node"]):
        ray.kill(actor)
        raise ClusterError(
            "a fault run's clients landed on another machine, but its server listens on loopback "
            "here: fault runs need the cluster's nodes on this machine"
        )
    return actor


def release(actor: Any) -> None:
    with contextlib.suppress(Exception):
        _ray().kill(actor)
