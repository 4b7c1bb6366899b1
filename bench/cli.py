"""The ``tokenbench`` command line (typer): ``serve`` and ``info`` here, the rest beside what
they run (bench.load.commands, bench.faults.commands, bench.report.commands)."""

from __future__ import annotations

import json
import signal
import sys
from typing import Annotated

import typer

import transports
from bench import deploy as dp
from bench.cliapp import Transport, app, fail


@app.command()
@dp.options()
def serve(
    transport: Annotated[Transport, typer.Argument(help="Which transport to serve.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port; 0 picks a free one (printed when ready).")
    ] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes sharing the port.")] = 1,
    replay_ttl: Annotated[
        float, typer.Option(help="Seconds a stream stays resumable after its last token.")
    ] = 300.0,
    heartbeat: Annotated[
        float, typer.Option(help="SSE comment / WebSocket ping / gRPC keepalive, seconds.")
    ] = 15.0,
    retry_ms: Annotated[
        int, typer.Option(help="SSE reconnect delay announced by `retry:`, ms.")
    ] = 1000,
    grace: Annotated[
        float, typer.Option(help="Graceful shutdown budget on SIGTERM, seconds.")
    ] = 5.0,
    ws_compression: Annotated[
        bool, typer.Option(help="Offer WebSocket per-message deflate (uvicorn's default: on).")
    ] = False,
    access_log: Annotated[bool, typer.Option(help="uvicorn access log (its default: on).")] = False,
    stack: Annotated[
        str,
        typer.Option(help="stock (FastAPI, sse-starlette, grpc.aio), lean (raw ASGI), or granian."),
    ] = "stock",
    gc: Annotated[
        str,
        typer.Option(
            help="Garbage collector: stock, or tuned (gc.freeze; servers/process/gcpolicy.py)."
        ),
    ] = "stock",
    flush_ms: Annotated[
        float, typer.Option(help="Write every token due within this many ms in one write.")
    ] = 0.0,
    web_port: Annotated[
        int | None,
        typer.Option(
            help="gRPC: also serve gRPC-Web and the browser pages here (0: a free "
            "port); servers/grpc/web.py. HTTP transports serve them on their own port."
        ),
    ] = None,
    deploy: dp.Deploy | None = None,
) -> None:
    """Serve one transport until Ctrl-C or SIGTERM; prints one JSON line when ready."""
    from servers.base import ServerConfig
    from servers.process.supervisor import StartError, Supervisor

    assert deploy is not None  # @dp.options() hands it in
    given = deploy.given
    for name, only in (("ws_compression", "ws"), ("retry_ms", "sse")):
        if name in given and transport.value != only:
            fail(f"{dp.flag(name)} applies to {only} only, not {transport.value}")
    if "access_log" in given and not transports.get(transport.value).http:
        fail(f"--access-log is uvicorn's: {transport.value} has none")
    try:
        cfg = deploy.server(ServerConfig(
            transport=transport.value, host=host, port=port, workers=workers,
            replay_ttl=replay_ttl, heartbeat=heartbeat, retry_ms=retry_ms, grace=grace,
            ws_compression=ws_compression, access_log=access_log, stack=stack, gc=gc,
            flush_ms=flush_ms, web_port=web_port,
        ))  # fmt: skip
    except ValueError as exc:
        fail(str(exc))
    if deploy.topology is not None:
        _serve_topology(cfg, deploy)
        return
    sup = Supervisor(cfg)

    def on_signal(signum: int, _frame: object) -> None:
        sup.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sup.start()
    except StartError as exc:
        fail(str(exc), 1)
    ready = {
        "event": "ready", "transport": cfg.transport, "url": sup.url, "host": cfg.host,
        "port": cfg.port, "workers": cfg.workers, "pids": sup.pids,
        "metrics_file": sup.metrics_file, "web_url": sup.web_url,
    }  # fmt: skip
    print(json.dumps(ready), flush=True)
    try:
        sup.watch()
    finally:
        sup.stop()


def _serve_topology(cfg: object, deploy: dp.Deploy) -> None:
    """``serve --lb`` or ``--source llm``: the whole deployment, until Ctrl-C or SIGTERM."""
    import tempfile
    import time
    from pathlib import Path

    from servers.topology.topology import Topology, TopologyError

    assert deploy.topology is not None
    workdir = Path(tempfile.mkdtemp(prefix="tokenbench-topology-"))
    topo = Topology(cfg, deploy.topology, workdir)  # type: ignore[arg-type]
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    try:
        topo.start()
    except TopologyError as exc:
        fail(str(exc), 1)
    try:
        print(topo.ready_line(), flush=True)
        while not stopping:
            time.sleep(0.2)
    finally:
        topo.stop()


@app.command()
def info(transport: Annotated[Transport, typer.Argument(help="Which transport.")]) -> None:
    """Print a transport's stack settings: this tool's effective values and the stack defaults."""
    from servers.base import ServerConfig, load

    cfg = ServerConfig(transport=transport.value)
    print(json.dumps(load(transport.value).settings(cfg), indent=2))


# The other commands, registered after serve and info (their order in --help).
from bench import profile_command as _profile  # noqa: E402, F401
from bench.browser import commands as _browser  # noqa: E402, F401
from bench.faults import commands as _faults  # noqa: E402, F401
from bench.faults import stop_command as _stop  # noqa: E402, F401
from bench.load import commands as _load  # noqa: E402, F401
from bench.report import commands as _report  # noqa: E402, F401


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
