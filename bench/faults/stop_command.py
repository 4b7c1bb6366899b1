"""``tokenbench stop``: the stop button on each transport, on one server or behind the load
balancer (bench/faults/stop.py measures; the report reads ``stops[]``)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from bench import deploy as dp
from bench.cliapp import CHOICES, app, fail, on_stack, pick
from transports import stacks as stack_registry


@app.command()
@dp.options(lb_check=2.0)
def stop(
    transport: Annotated[str, typer.Option(help=CHOICES)] = "all",
    users: Annotated[int, typer.Option(help="Users at once, each pressing stop once.")] = 20,
    tokens: Annotated[int, typer.Option(help="Tokens per answer (at 40 tok/s).")] = 400,
    stack: Annotated[str, typer.Option(help=stack_registry.choices(many=False))] = "stock",
    workers: Annotated[int, typer.Option(help="Worker processes per server.")] = 1,
    out: Annotated[str | None, typer.Option(help="Output directory.")] = None,
    deploy: dp.Deploy | None = None,
) -> None:
    """The stop button: press to last token, press to end, press to the model stopping, and the
    tokens made after the press, per transport (docs/protocol.md, "Stop")."""
    from bench import results
    from bench.faults import stop as st
    from bench.load import yardstick as ys
    from servers.base import ServerConfig
    from servers.process.supervisor import Supervisor
    from servers.topology.topology import Topology

    names = pick(transport)
    assert deploy is not None
    if not 1 <= users <= 500:
        fail("--users must be 1..500")
    if not 200 <= tokens <= 100_000:
        fail("--tokens must be 200..100,000 (a stop comes up to 2.5 s into an answer)")
    if not 1 <= workers <= 16:
        fail("--workers must be 1..16")
    topo = deploy.topology
    if (
        topo is not None
        and topo.lb is not None
        and not topo.lb.sticky
        and not (deploy.source == "llm" and deploy.replay == "redis")
    ):
        fail(
            "behind --lb a stop must reach the answer wherever it is read: add --source llm "
            "--replay redis (the shared log), or --sticky (it goes to the reader's pod)"
        )
    names = on_stack(names, stack)
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-stop"
    out_dir = Path(out) if out else Path("results") / run_id
    config = {"transports": names, "users": users, "tokens": tokens, "stack": stack,
              "workers": workers, "press_s": list(st.PRESS_S), **deploy.describe()}  # fmt: skip
    doc = results.new_doc("stop", out_dir.name, config)
    doc["stops"] = []
    before = ys.measure()
    try:
        for name in names:
            cfg = deploy.server(ServerConfig(transport=name, port=0, stack=stack, workers=workers))
            server: Supervisor | Topology
            if deploy.topology is None:
                server = Supervisor(cfg)
            else:
                server = Topology(cfg, deploy.topology, out_dir / "topology" / name)
            server.start()
            try:
                got = asyncio.run(st.measure(name, server.url, users, tokens, 40.0))
            finally:
                server.stop()
            entry = st.entry(name, got)
            if isinstance(server, Topology):
                entry["topology"] = server.describe()
            doc["stops"].append(entry)
            results.write(doc, out_dir)
            print(st.line(entry), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        doc["interrupted"] = True
    except RuntimeError as exc:  # a TopologyError: what is done is kept
        doc["error"] = str(exc)
        results.write(doc, out_dir)
        fail(str(exc), 1)
    doc["machine"]["yardstick"] = ys.combine(before, ys.measure())
    print(f"results: {results.write(doc, out_dir)}")
