"""A Ray cluster for the load: ``--cluster ADDRESS`` on bench and faults (docs/cluster.md).

Rules of this module:
- It joins (or starts) the cluster and places actors; what runs in them is bench.load.rayfleet
  (load processes) and bench.faults.clientside (a fault run's clients).
- Each load process reads the server's clock itself (bench.load.clock): nodes' clocks differ.
- Ray is optional (``pip install 'tokenbench[cluster]'``); without it, ``ClusterError`` says so.
- Every node runs the same tokenbench install (docs/cluster.md): nothing is shipped at run time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from typing import Any

INSTALL = "pip install 'tokenbench[cluster]'  (or: .venv/bin/pip install 'ray>=2.40')"
PLACE_S = 120.0  # for every actor to be placed and its load process started


_joined: dict[str, Any] | None = None  # what ``connect`` found, for the runs that follow


class ClusterError(RuntimeError):
    """No Ray, no cluster at the address, or a cluster that cannot hold the load processes."""


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--cluster needs Ray, which is not installed: {INSTALL}") from None
    return ray


def connect(address: str) -> dict[str, Any]:
    """Join the cluster at ``address`` (``auto``, ``host:port``, ``ray://host:port``), or start
    one on this machine (``local``). Returns what results.json records of it."""
    ray = ray_module()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "include_dashboard": False, "log_to_driver": True, "configure_logging": False,
        }  # fmt: skip
        _reachable(address)
        if address == "local":
            os.environ.setdefault("RAY_worker_niceness", "0")  # see normal_priority
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


def ip_of(info: dict[str, Any], node_id: str) -> str | None:
    """A node's address: nodes with the coordinator's share its machine (and its loopback)."""
    return next((n["ip"] for n in info["nodes"] if n["node_id"] == node_id), None)


def joined() -> dict[str, Any]:
    if _joined is None:
        raise ClusterError("not connected to a Ray cluster (cluster.connect first)")
    return _joined


def join(address: str | None, doc: dict[str, Any]) -> None:
    """A command's cluster: joined (``connect``) and recorded in ``doc["cluster"]``; nothing
    without an address. ``shutdown`` leaves it, and is a no-op when none was joined."""
    if address is not None:
        doc["cluster"] = connect(address)
        print(f"cluster {address}: {len(doc['cluster']['nodes'])} node(s), Ray "
              f"{doc['cluster']['ray_version']}", file=sys.stderr, flush=True)  # fmt: skip


def shutdown() -> None:
    global _joined
    _joined = None
    with contextlib.suppress(ImportError):
        import ray

        if ray.is_initialized():
            ray.shutdown()


def normal_priority(pid: int) -> int:
    """Ray starts its workers at nice 15 (``RAY_worker_niceness``), and a load process inherits
    it: anything else on its core then takes its CPU first, and a load-bound knee reads low.
    Back to 0 where allowed (root, CAP_SYS_NICE); the niceness it runs at."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, 0)
    return os.getpriority(os.PRIO_PROCESS, pid)


def fault_clients(args: tuple[Any, ...]) -> Any:
    """A ``bench.faults.clientside.FaultClients`` as a Ray actor on one of the cluster's nodes
    on this machine (the fault runs' server listens on loopback here)."""
    ray, info = ray_module(), joined()
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
    if ip != ip_of(info, info["coordinator_node"]):
        ray.kill(actor)
        raise ClusterError(
            "a fault run's clients landed on another machine, but its server listens on loopback "
            "here: fault runs need the cluster's nodes on this machine"
        )
    return actor


def release(actor: Any) -> None:
    with contextlib.suppress(Exception):
        ray_module().kill(actor)
