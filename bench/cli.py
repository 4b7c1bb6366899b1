"""The ``tokenbench`` command line (typer)."""

from __future__ import annotations

import json
import signal
import sys
from enum import StrEnum
from typing import Annotated

import typer

app = typer.Typer(
    help="tokenbench: SSE, WebSocket, gRPC and long polling for LLM token streams, measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Transport(StrEnum):
    sse = "sse"
    ws = "ws"
    grpc = "grpc"
    poll = "poll"


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
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
        int, typer.Option(help="SSE reconnect delay announced by `retry:`.")
    ] = 1000,
    grace: Annotated[
        float, typer.Option(help="Graceful shutdown budget on SIGTERM, seconds.")
    ] = 5.0,
    ws_compression: Annotated[
        bool, typer.Option(help="Offer WebSocket per-message deflate (uvicorn's default: on).")
    ] = False,
    access_log: Annotated[bool, typer.Option(help="uvicorn access log (its default: on).")] = False,
) -> None:
    """Serve one transport until Ctrl-C or SIGTERM; prints one JSON line when ready."""
    from servers.base import ServerConfig
    from servers.supervisor import StartError, Supervisor

    try:
        cfg = ServerConfig(
            transport=transport.value, host=host, port=port, workers=workers,
            replay_ttl=replay_ttl, heartbeat=heartbeat, retry_ms=retry_ms, grace=grace,
            ws_compression=ws_compression, access_log=access_log,
        )  # fmt: skip
    except ValueError as exc:
        fail(str(exc))
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
        "metrics_file": sup.metrics_file,
    }  # fmt: skip
    print(json.dumps(ready), flush=True)
    try:
        sup.watch()
    finally:
        sup.stop()


@app.command()
def info(transport: Annotated[Transport, typer.Argument(help="Which transport.")]) -> None:
    """Print a transport's stack settings: this tool's effective values and the stack defaults."""
    from servers.base import ServerConfig, load

    cfg = ServerConfig(transport=transport.value)
    print(json.dumps(load(transport.value).settings(cfg), indent=2))


@app.command("idle-memory")
def idle_memory(
    transport: Annotated[str, typer.Option(help="sse, ws, grpc, poll, or all.")] = "all",
    connections: Annotated[int, typer.Option(help="Idle readers to hold open.")] = 2000,
) -> None:
    """Server RSS per idle open connection (one worker; readers wait between tokens)."""
    from bench import idle

    if connections < 1 or connections > 15000:
        fail("--connections must be 1..15000 (one process holds at most ~15,000 sockets)")
    names = ["sse", "ws", "grpc", "poll"] if transport == "all" else [transport]
    for name in names:
        if name not in ("sse", "ws", "grpc", "poll"):
            fail(f"unknown transport {name!r}: sse, ws, grpc, poll or all")
    print(f"# {idle.machine_line()}, {connections} idle connections, 1 server worker")
    print(f"{'transport':<10}{'KiB/conn':>10}{'RSS before':>14}{'RSS held':>12}{'after close':>13}")
    for name in names:
        r = idle.measure(name, connections)
        mib = [
            x / 2**20 for x in (r.rss_before_bytes, r.rss_connected_bytes, r.rss_after_close_bytes)
        ]
        print(
            f"{name:<10}{r.bytes_per_connection / 1024:>10.1f}"
            f"{mib[0]:>11.1f} MiB{mib[1]:>8.1f} MiB{mib[2]:>9.1f} MiB"
        )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
