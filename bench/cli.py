"""The ``tokenbench`` command line (typer)."""

from __future__ import annotations

import json
import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

import transports

app = typer.Typer(
    help="tokenbench: SSE, WebSocket, gRPC and long polling for LLM token streams, measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


Transport = StrEnum("Transport", {name: name for name in transports.names()})  # type: ignore[misc]
CHOICES = f"{', '.join(transports.names())}, a comma list, or all"


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def pick(spec: str) -> list[str]:
    """``--transport``: names from the registry, or a one-line error."""
    try:
        picked = [t.name for t in transports.select(spec)]
    except ValueError as exc:
        fail(f"{exc}, or all")
    if not picked:
        fail(f"--transport names none: {CHOICES}")
    return picked


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
    transport: Annotated[str, typer.Option(help=CHOICES)] = "all",
    connections: Annotated[int, typer.Option(help="Idle readers to hold open.")] = 2000,
) -> None:
    """Server RSS per idle open connection (one worker; readers wait between tokens)."""
    from bench.load import idle

    if connections < 1 or connections > 15000:
        fail("--connections must be 1..15000 (one process holds at most ~15,000 sockets)")
    names = pick(transport)
    print(f"# {idle.machine_line()}, {connections} idle connections, 1 server worker")
    print(f"{'transport':<10}{'KiB/conn':>10}{'RSS before':>14}{'RSS held':>12}{'after close':>13}")
    for name in names:
        r = idle.measure(name, connections)
        if r.open_after_close:
            print(f"warning: {name}: {r.open_after_close} connections still open after close")
        mib = [
            x / 2**20 for x in (r.rss_before_bytes, r.rss_connected_bytes, r.rss_after_close_bytes)
        ]
        print(
            f"{name:<10}{r.bytes_per_connection / 1024:>10.1f}"
            f"{mib[0]:>11.1f} MiB{mib[1]:>8.1f} MiB{mib[2]:>9.1f} MiB"
        )


@app.command()
def bench(
    transport: Annotated[str, typer.Option(help=CHOICES)] = "all",
    clients: Annotated[int, typer.Option(help="Target concurrent users (the last step).")] = 1000,
    ramp: Annotated[
        str,
        typer.Option(help="A duration (30s, 2m) to ramp to --clients, or stages N:DUR,N:DUR."),
    ] = "10s",
    hold: Annotated[float, typer.Option(help="Seconds measured after the (last) ramp.")] = 20.0,
    rate: Annotated[float, typer.Option(help="Tokens per second per stream.")] = 40.0,
    tokens: Annotated[int, typer.Option(help="Tokens per answer.")] = 400,
    think: Annotated[float, typer.Option(help="Mean seconds a user thinks between answers.")] = 5.0,
    workers: Annotated[
        int | None, typer.Option(help="Server processes (default: one per 12,000 clients).")
    ] = None,
    loaders: Annotated[
        int | None, typer.Option(help="Load processes (default: one per 12,000 clients).")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="URL of a running server to use instead of starting one.")
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="Output directory (default results/<run-id>).")
    ] = None,
    find_knee: Annotated[
        bool, typer.Option("--find-knee", help="Step up users until the SLO breaks.")
    ] = False,
    slo_ms: Annotated[float, typer.Option(help="The SLO: p99 token latency, ms.")] = 250.0,
    knee_start: Annotated[int, typer.Option(help="--find-knee: first step's users.")] = 250,
    knee_factor: Annotated[float, typer.Option(help="--find-knee: growth per step.")] = 1.5,
    knee_refine: Annotated[
        int, typer.Option(help="--find-knee: bisection steps after the first broken step.")
    ] = 0,
    heartbeat: Annotated[float, typer.Option(help="Server and client heartbeat, seconds.")] = 15.0,
    pin: Annotated[
        bool, typer.Option(help="Pin server and load generator to separate cores.")
    ] = True,
    quiet: Annotated[bool, typer.Option(help="No per-second progress lines.")] = False,
    doze_us: Annotated[
        int,
        typer.Option(
            help="Load processes read in batches this far apart, µs (latency reads at most this "
            "much high; fewer wake-ups per token). 0: read at once. Not used for gRPC."
        ),
    ] = 1000,
    fast_path: Annotated[
        bool, typer.Option(help="Read SSE and WebSocket through the compiled path, if built.")
    ] = True,
    cooldown: Annotated[
        float,
        typer.Option(help="Seconds between everyone connected and the measured window."),
    ] = 0.0,
    settle: Annotated[
        float, typer.Option(help="After a ramp, wait at most this long for all users to connect.")
    ] = 120.0,
) -> None:
    """Drive transports with simulated users and write results.json (see docs/results-schema.md)."""
    from bench.load import knee
    from bench.load.config import BenchConfig, Step, config_doc, parse_duration, parse_steps
    from bench.load.run import TargetError, run_transport
    from bench.report import results, tables

    names = pick(transport)
    if target and len(names) != 1:
        fail("--target needs one --transport (the one that server speaks)")
    checks = [
        (1 <= clients <= 1_000_000, "--clients must be 1..1,000,000"),
        (0 < rate <= 1000, "--rate must be 0 < rate <= 1000"),
        (1 <= tokens <= 100_000, "--tokens must be 1..100,000"),
        (think >= 0 and hold >= 0, "--think and --hold must be >= 0"),
        (slo_ms > 0 and knee_factor > 1 and knee_start >= 1, "--slo-ms > 0, --knee-factor > 1"),
        (heartbeat > 0, "--heartbeat must be > 0"),
        (0 <= settle <= 3600, "--settle must be 0..3600 seconds"),
        (0 <= cooldown <= 3600, "--cooldown must be 0..3600 seconds"),
        (0 <= knee_refine <= 10, "--knee-refine must be 0..10"),
        (0 <= doze_us <= 20_000, "--doze-us must be 0..20000"),
        (workers is None or 1 <= workers <= 64, "--workers must be 1..64"),
        (loaders is None or 1 <= loaders <= 64, "--loaders must be 1..64"),
    ]
    for ok, message in checks:
        if not ok:
            fail(message)
    try:
        if find_knee:
            step_ramp = min(parse_duration(ramp) if ":" not in ramp else 5.0, 10.0)
            ladder = knee.ladder(knee_start, clients, knee_factor)
            steps = [Step(n, step_ramp, hold or 10.0) for n in ladder]
        else:
            steps = parse_steps(ramp, clients, hold)
    except ValueError as exc:
        fail(str(exc))
    top = max(s.clients for s in steps)
    n_loaders = loaders or -(-top // 12_000)
    if top / n_loaders > 15_000:
        fail(f"{top} clients over {n_loaders} load processes is more than 15,000 sockets each")
    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{transport}"
    out_dir = Path(out) if out else Path("results") / run_id
    cfg = BenchConfig(
        transports=names, steps=steps, rate=rate, tokens=tokens, think=think, workers=workers,
        loaders=loaders, target=target, out=out_dir, find_knee=find_knee, slo_ms=slo_ms,
        heartbeat=heartbeat, pin=pin, quiet=quiet, settle_s=settle, cooldown_s=cooldown,
        knee_refine=knee_refine, doze_us=doze_us, fast_path=fast_path,
    )  # fmt: skip
    doc = results.new_doc("bench", out_dir.name, config_doc(cfg))
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        for name in names:
            plan = (
                f"knee search from {steps[0].clients} clients, x{knee_factor:g} per step"
                if find_knee
                else f"{len(steps)} step(s) up to {top} clients"
            )
            say(f"== {name}: {plan} at {rate:g} tok/s ==")
            doc["runs"].append(run_transport(name, cfg, say))
            results.write(doc, out_dir)  # keep what is done if a later transport fails
    except KeyboardInterrupt:
        say("interrupted: servers and load processes stopped; partial results kept")
        doc["interrupted"] = True
    except TargetError as exc:
        fail(str(exc), 1)
    except (RuntimeError, OSError) as exc:
        doc["error"] = str(exc)
        results.write(doc, out_dir)
        fail(str(exc), 1)
    path = results.write(doc, out_dir)
    tables.print_summary(doc)
    print(f"results: {path}")


@app.command()
def faults(
    transport: Annotated[str, typer.Option(help=CHOICES)] = "all",
    scenario: Annotated[
        str,
        typer.Option(
            help="close, reset, blackhole, reconnect-storm, truncate, latency, "
            "restart, kill, slow-reader, a comma list, or all."
        ),
    ] = "all",
    mode: Annotated[
        str, typer.Option(help="Clients as they come (default), hardened, or both.")
    ] = "both",
    clients: Annotated[int, typer.Option(help="Streams per run, each behind its own proxy.")] = 5,
    heartbeat: Annotated[float, typer.Option(help="Server and client heartbeat, seconds.")] = 2.0,
    window: Annotated[
        float, typer.Option(help="Seconds a run may take before streams count as unrecovered.")
    ] = 40.0,
    tokens: Annotated[int, typer.Option(help="Tokens per stream (at 40 tok/s).")] = 400,
    parallel: Annotated[
        bool,
        typer.Option(help="Run the transports of a connection fault side by side (not restarts)."),
    ] = False,
    out: Annotated[str | None, typer.Option(help="Output directory.")] = None,
) -> None:
    """Reconnect recovery under faults: detection, reconnect and catch-up times, lost tokens."""
    from bench.faults import scenarios as fl
    from bench.report import results, tables

    names = pick(transport)
    scenarios = list(fl.SCENARIOS) if scenario == "all" else scenario.split(",")
    modes = list(fl.MODES) if mode == "both" else [mode]
    for name in scenarios:
        if name not in fl.SCENARIOS:
            fail(f"unknown scenario {name!r}: {', '.join(fl.SCENARIOS)} or all")
    for name in modes:
        if name not in fl.MODES:
            fail(f"unknown mode {name!r}: default, hardened or both")
    if not (1 <= clients <= 200 and heartbeat > 0 and window >= 5):
        fail("--clients 1..200, --heartbeat > 0, --window >= 5")
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
    }
    doc = results.new_doc("faults", out_dir.name, config)
    doc["faults"] = []  # fmt: skip
    try:
        for name in scenarios:
            print(f"== {name}: {fl.SCENARIOS[name].description}", file=sys.stderr, flush=True)
            entries = fl.run(
                name, names, modes, clients, tokens=tokens, heartbeat=heartbeat,
                window_s=window, parallel=parallel,
            )  # fmt: skip
            doc["faults"].extend(entries)
            results.write(doc, out_dir)
            for e in entries:
                print(tables.fault_line(e), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        doc["interrupted"] = True
    path = results.write(doc, out_dir)
    tables.print_fault_table(doc["faults"])
    print(f"results: {path}")


@app.command()
def report(
    paths: Annotated[list[Path], typer.Argument(help="results.json files or run directories.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write REPORT.md and the charts (default: the first run)."),
    ] = None,
) -> None:
    """Charts (PNG) and REPORT.md from results.json files; reads JSON only, never re-runs."""
    from bench.report import build as rp
    from bench.report import results

    target = out or (paths[0] if paths[0].is_dir() else paths[0].parent)
    try:
        path = rp.build(paths, target)
    except results.SchemaError as exc:
        fail(str(exc))
    print(f"report: {path}")


@app.command("compare")
def compare_runs(
    a: Annotated[Path, typer.Argument(help="The baseline run (results.json or its directory).")],
    b: Annotated[Path, typer.Argument(help="The run to compare with it.")],
) -> None:
    """Two runs side by side: B/A per figure, with changes inside the noise flagged as such."""
    from bench.report import results
    from bench.report.compare import compare

    try:
        doc_a, doc_b = results.load(a), results.load(b)
    except results.SchemaError as exc:
        fail(str(exc))
    rows = compare(doc_a, doc_b)
    if not rows:
        fail("no step of B matches a step of A (same transport and user count)")
    print(f"A: {doc_a['run_id']} ({doc_a['machine']['date']})  B: {doc_b['run_id']} "
          f"({doc_b['machine']['date']})")  # fmt: skip
    if doc_a["machine"]["cpu_model"] != doc_b["machine"]["cpu_model"]:
        print("note: the two runs are from different CPUs; ratios compare machines too")
    print(f"{'transport':<9} {'users':>6} {'figure':<18} {'A':>12} {'B':>12} {'B/A':>6}  judgement")
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:,.2f}"  # noqa: E731
        print(f"{r['transport']:<9} {r['clients']:>6} {r['metric']:<18} {fmt(r['a']):>12} "
              f"{fmt(r['b']):>12} {r['ratio']:>6}  {r['judgement']}")  # fmt: skip


@app.command()
def check(
    paths: Annotated[list[Path], typer.Argument(help="results.json files or run directories.")],
    min_goodput: Annotated[
        float, typer.Option(help="Lowest goodput a bench step may have.")
    ] = 0.99,
) -> None:
    """Exit 1 if a run broke a guarantee: tokens lost, duplicated or wrong, goodput too low,
    or a hardened client that did not recover from a fault. For CI."""
    from bench.report import results
    from bench.report.check import problems_in

    problems = []
    for path in paths:
        try:
            problems += problems_in(results.load(path), min_goodput)
        except results.SchemaError as exc:
            fail(str(exc))
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        raise typer.Exit(1)
    print(f"ok: {len(paths)} run(s), no guarantee broken")


@app.command()
def floor(
    connections: Annotated[
        int, typer.Option(help="Loopback connections for the loop floor.")
    ] = 500,
) -> None:
    """The yardsticks for the load generator's CPU per token, measured on this machine."""
    from bench.load import floor as fl

    if not 1 <= connections <= 5000:
        fail("--connections must be 1..5000")
    print(f"event-loop floor: {connections} connections, one {len(fl.EVENT)}-byte event each "
          f"at 40/s, into an empty data_received (CPU per message)")  # fmt: skip
    for loop in ("uvloop", "asyncio"):
        r = fl.event_loop_floor(loop, connections)
        print(f"  {loop:<8} user {r['user_us']:5.1f} us + system {r['system_us']:5.1f} us "
              f"({r['messages']:,} messages)")  # fmt: skip
    print(f"SSE parse path in a hot loop (no syscalls): {fl.parse_path():.2f} us per token")


@app.command("faults-table")
def faults_table(
    paths: Annotated[list[Path], typer.Argument(help="results.json files or run directories.")],
) -> None:
    """Print the fault results of one or more runs as a Markdown table (later runs win)."""
    from bench.report import results, tables

    try:
        rows = tables.merge_faults([results.load(path) for path in paths])
    except results.SchemaError as exc:
        fail(str(exc))
    if not rows:
        fail("no fault results in those files (run tokenbench faults first)")
    print(tables.faults_markdown(rows))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
