"""``tokenbench faults``: reconnect recovery under faults."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import deploy as dp
from bench.cliapp import CHOICES, app, fail, on_stack, pick
from transports import stacks as stack_registry


@app.command()
@dp.options(lb_check=2.0)
def faults(
    transport: Annotated[str, typer.Option(help=CHOICES)] = "all",
    scenario: Annotated[
        str,
        typer.Option(
            help="close, reset, blackhole, reconnect-storm, truncate, latency, "
            "restart, kill, slow-reader; behind --lb: backend-kill, rolling-deploy, "
            "idle-timeout, idle-timeout-silent, redis-restart; a comma list, or all (with "
            "--lb, all of those behind it)."
        ),
    ] = "all",
    mode: Annotated[
        str,
        typer.Option(
            help="default (each client as it comes), hardened (a watchdog, keepalives, "
            "retries), or both."
        ),
    ] = "both",
    clients: Annotated[
        int,
        typer.Option(
            "--users",
            "--clients",
            help="Users per run, each reading one stream behind its own proxy (--clients: the "
            "same).",
        ),
    ] = 5,
    heartbeat: Annotated[float, typer.Option(help="Server and client heartbeat, seconds.")] = 2.0,
    window: Annotated[
        float,
        typer.Option(
            "--window-s",
            "--window",
            help="Seconds a run may take before streams count as unrecovered (--window: the same).",
        ),
    ] = 40.0,
    tokens: Annotated[int, typer.Option(help="Tokens per stream (at 40 tok/s).")] = 400,
    parallel: Annotated[
        bool,
        typer.Option(help="Run the transports of a connection fault side by side (not restarts)."),
    ] = False,
    stack: Annotated[
        str,
        typer.Option(help=stack_registry.choices(many=False)),
    ] = "stock",
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Run each run's clients on a Ray cluster's node on this machine: auto, "
            "host:port, ray://host:port, or local. See docs/cluster.md."
        ),
    ] = None,
    idle_s: Annotated[
        float,
        typer.Option(
            help="Behind --lb: the LB's idle timeout in the idle scenarios, seconds (scaled "
            "down; the ALB's and nginx's default is 60, a CDN's about 100). The answer pauses "
            "past it by a fifth, at least 7 s."
        ),
    ] = 5.0,
    out: Annotated[str | None, typer.Option(help="Output directory.")] = None,
    deploy: dp.Deploy | None = None,
) -> None:
    """Reconnect recovery under faults: detection, reconnect and catch-up times, lost tokens."""
    from bench import results
    from bench.faults import behind_lb
    from bench.faults import scenarios as fl
    from bench.load import cluster as cl
    from bench.load import yardstick as ys
    from bench.report import tables

    names = pick(transport)
    assert deploy is not None  # @dp.options() hands it in
    behind = deploy.topology is not None and deploy.topology.lb is not None
    if scenario == "all":
        scenarios = list(behind_lb.SCENARIOS if behind else fl.SCENARIOS)
    else:
        scenarios = scenario.split(",")
    modes = list(fl.MODES) if mode == "both" else [mode]
    for name in scenarios:
        if name in behind_lb.SCENARIOS and not behind:
            fail(f"{name} is a fault behind a load balancer: add --lb haproxy --backends 3")
        if name in ("restart", "kill") and behind:
            fail(f"{name} restarts the one server; behind --lb use backend-kill or rolling-deploy")
        if name not in fl.SCENARIOS and name not in behind_lb.SCENARIOS:
            known = ", ".join([*fl.SCENARIOS, *behind_lb.SCENARIOS])
            fail(f"unknown scenario {name!r}: {known} or all")
    probe = deploy.server(_probe_config(names[0]))
    for name in [n for n in scenarios if n in behind_lb.SCENARIOS]:
        if why := behind_lb.unmet(name, probe):
            print(f"== {name}: skipped ({why})", file=sys.stderr)
            scenarios.remove(name)
    if not scenarios:
        fail("no scenario left to run")
    for name in modes:
        if name not in fl.MODES:
            fail(f"unknown mode {name!r}: default, hardened or both")
    names = on_stack(names, stack)
    side_by_side = [n for n in scenarios if n in fl.SCENARIOS and fl.SCENARIOS[n].server is None]
    if parallel and (len(names) < 2 or not side_by_side):
        fail("--parallel needs two or more transports and a connection fault (not restart, "
             "kill, or one behind --lb) to run side by side")  # fmt: skip
    if not (1 <= clients <= 200 and heartbeat > 0 and window >= 5):
        fail("--users 1..200, --heartbeat > 0, --window-s >= 5")
    if any(n.startswith("idle-timeout") for n in scenarios):
        need = behind_lb.pause_s(idle_s) + 10
        if not 1 <= idle_s <= 600:
            fail("--idle-s must be 1..600")
        if window < need:
            fail(f"--idle-s {idle_s:g} pauses the answer {behind_lb.pause_s(idle_s):g} s: give "
                 f"--window-s {need:g} or more")  # fmt: skip
    if not 100 <= tokens <= 100_000:
        fail("--tokens must be 100..100,000 (faults fire 2 s into a stream)")
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-faults"
    out_dir = Path(out) if out else Path("results") / run_id
    config = {
        "transports": names,
        "scenarios": scenarios,
        "modes": modes,
        "clients": clients,
        "heartbeat": heartbeat,
        "window_s": window,
        "tokens": tokens,
        "parallel": parallel,
        "cluster": cluster,
        "stack": stack,
        "idle_s": idle_s,
        **deploy.describe(),
    }
    doc = results.new_doc("faults", out_dir.name, config)
    try:
        cl.join(cluster, doc)
    except cl.ClusterError as exc:
        fail(str(exc))
    doc["faults"] = []
    before = ys.measure()
    doc["machine"]["yardstick"] = ys.combine(before, None)
    try:
        for name in scenarios:
            about = (fl.SCENARIOS.get(name) or behind_lb.SCENARIOS[name]).description
            print(f"== {name}: {about}", file=sys.stderr, flush=True)
            entries = fl.run(
                name, names, modes, clients, tokens=tokens, heartbeat=heartbeat,
                window_s=window, parallel=parallel, on_cluster=cluster is not None, stack=stack,
                deploy=deploy, workdir=out_dir / "topology", idle_s=idle_s,
            )  # fmt: skip
            doc["faults"].extend(entries)
            results.write(doc, out_dir)
            for e in entries:
                print(tables.fault_line(e), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        doc["interrupted"] = True
    except RuntimeError as exc:  # a ClusterError or TopologyError: what is done is kept
        doc["error"] = str(exc)
        results.write(doc, out_dir)
        fail(str(exc), 1)
    finally:
        cl.shutdown()
    doc["machine"]["yardstick"] = ys.combine(before, ys.measure())
    path = results.write(doc, out_dir)
    tables.print_fault_table(doc["faults"])
    print(f"results: {path}")


def _probe_config(transport: str) -> Any:
    """A server configuration to ask what a deployment can run (``behind_lb.unmet``)."""
    from servers.base import ServerConfig

    return ServerConfig(transport=transport)
