"""``tokenbench bench``, ``idle-memory`` and ``floor``: the commands that put load on a server."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import deploy as dp
from bench.cliapp import CHOICES, app, fail, pick
from transports import stacks as stack_registry


@app.command("idle-memory")
def idle_memory(
    transport: Annotated[str, typer.Option(help=CHOICES)] = "all",
    connections: Annotated[int, typer.Option(help="Idle readers to hold open.")] = 2000,
    stack: Annotated[str, typer.Option(help=stack_registry.choices())] = "stock",
) -> None:
    """Server RSS per idle open connection (one worker; readers wait between tokens)."""
    from bench.load import idle

    if connections < 1 or connections > 15000:
        fail("--connections must be 1..15000 (one process holds at most ~15,000 sockets)")
    import transports

    names = pick(transport)
    try:
        stacks = stack_registry.parse(stack)
    except ValueError as exc:
        fail(str(exc))
    print(f"# {idle.machine_line()}, {connections} idle connections, 1 server worker")
    print(f"{'transport':<16}{'KiB/conn':>10}{'RSS before':>14}{'RSS held':>12}{'after close':>13}")
    runs = []
    for st in stacks:
        kept, left_out = stack_registry.split(map(transports.get, names), st)
        if left_out:
            print(left_out)
        runs += [(r.name, st) for r in kept]
    for name, st in runs:
        r = idle.measure(name, connections, stack=st)
        if r.open_after_close:
            print(f"warning: {name}: {r.open_after_close} connections still open after close")
        mib = [
            x / 2**20 for x in (r.rss_before_bytes, r.rss_connected_bytes, r.rss_after_close_bytes)
        ]
        label = name if st == "stock" else f"{name} {st}"
        print(
            f"{label:<16}{r.bytes_per_connection / 1024:>10.1f}"
            f"{mib[0]:>11.1f} MiB{mib[1]:>8.1f} MiB{mib[2]:>9.1f} MiB"
        )


@app.command()
@dp.options()
def bench(
    transport: Annotated[str, typer.Option(help=CHOICES)] = "all",
    clients: Annotated[
        int,
        typer.Option(
            "--users",
            "--clients",
            help="Target concurrent users (the last step; --clients: the same).",
        ),
    ] = 1000,
    ramp: Annotated[
        str,
        typer.Option(help="A duration (30s, 2m) to ramp to --users, or stages N:DUR,N:DUR."),
    ] = "10s",
    hold: Annotated[float, typer.Option(help="Seconds measured after the (last) ramp.")] = 20.0,
    rate: Annotated[float, typer.Option(help="Tokens per second per stream.")] = 40.0,
    tokens: Annotated[int, typer.Option(help="Tokens per answer.")] = 400,
    think: Annotated[float, typer.Option(help="Mean seconds a user thinks between answers.")] = 5.0,
    workers: Annotated[
        int | None, typer.Option(help="Server processes (default: one per 12,000 users).")
    ] = None,
    loaders: Annotated[
        int | None, typer.Option(help="Load processes (default: one per 12,000 users).")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="URL of a running server to use instead of starting one.")
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Run the load processes on a Ray cluster: auto, host:port, ray://host:port, "
            "or local (start one here). See docs/cluster.md."
        ),
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="Output directory (default results/<run-id>).")
    ] = None,
    find_knee: Annotated[
        bool, typer.Option("--find-knee", help="Step up users until the SLO breaks.")
    ] = False,
    slo_ms: Annotated[float, typer.Option(help="The SLO: p99 token latency, ms.")] = 250.0,
    ttft_slo_ms: Annotated[
        float,
        typer.Option(help="The SLO's other half: p99 time to first token from the prompt, ms."),
    ] = 1000.0,
    knee_start: Annotated[int, typer.Option(help="--find-knee: first step's users.")] = 250,
    knee_factor: Annotated[float, typer.Option(help="--find-knee: growth per step.")] = 1.5,
    knee_refine: Annotated[
        int,
        typer.Option(
            help="--find-knee: how fine the bracket ends: one ladder step split "
            "this many times (factor ** 0.5**N wide); the search bisects again "
            "when repeats move an edge, and says unsettled if it cannot get there."
        ),
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
            "much high; fewer wake-ups per token). 0: read at once. Not with grpcio's client "
            "(gRPC with --no-fast-path)."
        ),
    ] = 1000,
    fast_path: Annotated[
        bool,
        typer.Option(help="Read SSE, WebSocket and gRPC (its h2 client) on the compiled path."),
    ] = True,
    compiled_loop: Annotated[
        bool,
        typer.Option(
            help="With the compiled path, load processes wait on its sockets in one epoll set "
            "(clients/_pump.c), not through uvloop."
        ),
    ] = True,
    stationary: Annotated[
        bool,
        typer.Option(
            help="Each user's first answer is of random length (1 to --tokens), so prompts and "
            "connections come back at the steady pace from the start, not in one wave when the "
            "ramp's first answers all end together. Always on with --find-knee."
        ),
    ] = False,
    cooldown: Annotated[
        float,
        typer.Option(help="Seconds between everyone connected and the measured window."),
    ] = 0.0,
    settle: Annotated[
        float,
        typer.Option(help="After a ramp, wait at most this many seconds for all users to connect."),
    ] = 120.0,
    windows: Annotated[
        int, typer.Option(help="Measure each step as this many back-to-back windows (spread).")
    ] = 3,
    knee_repeats: Annotated[
        int,
        typer.Option(help="--find-knee: run the knee and the first broken step this often."),
    ] = 1,
    knee_budget: Annotated[
        float,
        typer.Option(
            help="--find-knee: seconds of steps, over all the searches; a search still going "
            "then stops, unsettled (0: no limit)."
        ),
    ] = 0.0,
    adaptive_ramp: Annotated[
        bool,
        typer.Option(
            "--adaptive-ramp",
            help="Offer users at the pace the server accepts them; --ramp is then the budget.",
        ),
    ] = False,
    rate_from: Annotated[
        Path | None,
        typer.Option(help="A --find-knee run: each transport's --rate loads it to --rate-share."),
    ] = None,
    rate_share: Annotated[
        float, typer.Option(help="With --rate-from: the share of the knee's tokens/s to offer.")
    ] = 0.25,
    yardstick: Annotated[
        bool, typer.Option(help="Measure the machine before and after (machine.yardstick).")
    ] = True,
    stack: Annotated[
        str,
        typer.Option(
            help=f"Server stacks: {stack_registry.choices()} (docs/transports.md, Stacks). A "
            "transport without one is not measured."
        ),
    ] = "stock",
    gc: Annotated[
        str, typer.Option(help="Server GC policies, a comma list: stock, tuned (gc.freeze).")
    ] = "stock",
    flush_ms: Annotated[
        str,
        typer.Option(
            help="Write windows, ms, a comma list (a sweep): every token due within "
            "the window goes out in one write; 0 writes each when due."
        ),
    ] = "0",
    deploy: dp.Deploy | None = None,
) -> None:
    """Drive transports with simulated users and write results.json (see docs/results-schema.md)."""
    from bench import results
    from bench.load import cluster as cl
    from bench.load import knee
    from bench.load import yardstick as ys
    from bench.load.config import (
        BenchConfig,
        Step,
        config_doc,
        parse_duration,
        parse_steps,
    )
    from bench.load.run import TargetError, run_interleaved, run_transport, server_cores
    from bench.report import tables
    from bench.results.queries import rates_from

    names = pick(transport)
    assert deploy is not None  # @dp.options() hands it in
    if deploy.topology is not None and (target or cluster):
        fail("--lb and --source llm start their own servers: not with --target or --cluster")
    if target and len(names) != 1:
        fail("--target needs one --transport (the one that server speaks)")
    if why := _idle(deploy.given, find_knee, target, rate_from):
        fail(why)
    checks = [
        (1 <= clients <= 1_000_000, "--users must be 1..1,000,000"),
        (0 < rate <= 1000, "--rate must be 0 < rate <= 1000"),
        (1 <= tokens <= 100_000, "--tokens must be 1..100,000"),
        (think >= 0 and hold >= 0, "--think and --hold must be >= 0"),
        (slo_ms > 0 and knee_factor > 1 and knee_start >= 1, "--slo-ms > 0, --knee-factor > 1"),
        (ttft_slo_ms > 0, "--ttft-slo-ms must be > 0"),
        (heartbeat > 0, "--heartbeat must be > 0"),
        (0 <= settle <= 3600, "--settle must be 0..3600 seconds"),
        (0 <= cooldown <= 3600, "--cooldown must be 0..3600 seconds"),
        (0 <= knee_refine <= 10, "--knee-refine must be 0..10"),
        (0 <= doze_us <= 20_000, "--doze-us must be 0..20000"),
        (workers is None or 1 <= workers <= 64, "--workers must be 1..64"),
        (
            loaders is None or 1 <= loaders <= (4096 if cluster else 64),
            "--loaders must be 1..64 (1..4096 with --cluster)",
        ),
        (1 <= windows <= 20, "--windows must be 1..20"),
        (1 <= knee_repeats <= 9, "--knee-repeats must be 1..9"),
        (0 <= knee_budget <= 36_000, "--knee-budget must be 0..36,000 seconds"),
        (0 < rate_share <= 1, "--rate-share must be 0 < share <= 1"),
    ]
    for ok, message in checks:
        if not ok:
            fail(message)
    try:
        stacks, gcs, flushes = _lists(stack, gc, flush_ms)
    except ValueError as exc:
        fail(str(exc))
    try:
        if find_knee:
            step_ramp = min(parse_duration(ramp) if ":" not in ramp else 5.0, 10.0)
            ladder = knee.ladder(knee_start, clients, knee_factor)
            steps = [Step(n, step_ramp, hold or 10.0) for n in ladder]
        else:
            steps = parse_steps(ramp, clients, hold)
    except ValueError as exc:
        fail(str(exc))
    for st in steps:
        st.adaptive = adaptive_ramp
    rates: dict[str, float] = {}
    if rate_from is not None:
        try:
            rates = rates_from(results.load(rate_from), max(s.clients for s in steps), rate_share)
        except results.SchemaError as exc:
            fail(f"--rate-from: {exc}")
        if missing := [n for n in names if n not in rates]:
            fail(f"--rate-from {rate_from} has no run of {', '.join(missing)}")
    top = max(s.clients for s in steps)
    n_loaders = loaders or -(-top // 12_000)
    if top / n_loaders > 15_000:
        fail(f"{top} users over {n_loaders} load processes is more than 15,000 sockets each")
    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{transport}"
    out_dir = Path(out) if out else Path("results") / run_id
    cfg = BenchConfig(
        transports=names, steps=steps, rate=rate, tokens=tokens, think=think, workers=workers,
        loaders=loaders, target=target, cluster=cluster, out=out_dir, find_knee=find_knee,
        slo_ms=slo_ms, ttft_slo_ms=ttft_slo_ms, heartbeat=heartbeat, pin=pin, quiet=quiet,
        settle_s=settle,
        cooldown_s=cooldown, knee_refine=knee_refine, doze_us=doze_us, fast_path=fast_path,
        compiled_loop=compiled_loop, stationary=stationary or find_knee,
        windows=windows, knee_repeats=knee_repeats, knee_budget_s=knee_budget, rates=rates,
        stacks=stacks, gcs=gcs,
        flushes=flushes, deploy=deploy if deploy.topology else None,
    )  # fmt: skip
    doc = results.new_doc("bench", out_dir.name, config_doc(cfg))
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        cl.join(cluster, doc)
    except cl.ClusterError as exc:
        fail(str(exc))
    cores = server_cores() if pin else None  # measured where the servers will run
    before = ys.measure(cores) if yardstick else None
    if before is not None:
        doc["machine"]["yardstick"] = ys.combine(before, None)
        say(f"yardstick: {before['unit_us']:.2f} us of CPU per reference token (fastest of five: "
            f"kernel {before['syscall_us']['min']:.2f} + python {before['python_us']['min']:.2f}),"
            f" {before['wall_us']['min']:.2f} us of wall time")  # fmt: skip
    plan = (
        f"knee search from {steps[0].clients} users, x{knee_factor:g} per step"
        if find_knee
        else f"{len(steps)} step(s) up to {top} users"
    )
    try:
        items = _runs(names, cfg, say)
        for name, variant in items:
            what = f"{name} ({variant.label})" if variant.label else name
            say(f"== {what}: {plan} at {cfg.rate_for(name):g} tok/s ==")
            if find_knee:
                continue  # the searches run together, a step of each in turn (run_interleaved)
            doc["runs"].append(run_transport(name, cfg, say, variant))
            _warn_clock(doc["runs"][-1], say)
            results.write(doc, out_dir)  # keep what is done if a later transport fails
        if find_knee:
            for run in run_interleaved(items, cfg, say):
                doc["runs"].append(run)
                _warn_clock(run, say)
    except KeyboardInterrupt:
        say("interrupted: servers and load processes stopped; partial results kept")
        doc["interrupted"] = True
    except TargetError as exc:
        fail(str(exc), 1)
    except (RuntimeError, OSError) as exc:  # a ClusterError too
        doc["error"] = str(exc)
        results.write(doc, out_dir)
        fail(str(exc), 1)
    finally:
        cl.shutdown()
    if before is not None:
        doc["machine"]["yardstick"] = ys.combine(before, ys.measure(cores))
        if doc["machine"]["yardstick"]["drifted"]:
            say(f"warning: the machine changed speed during the run: yardstick drift "
                f"{doc['machine']['yardstick']['drift']:.0%}")  # fmt: skip
    path = results.write(doc, out_dir)
    tables.print_summary(doc)
    print(f"results: {path}")


# Options that act only with another (refused without: _idle).
_KNEE = ("knee_start", "knee_factor", "knee_refine", "knee_repeats", "knee_budget")
_SERVER = ("workers", "stack", "gc", "flush_ms")  # what a server tokenbench starts runs


def _idle(given: frozenset[str], find_knee: bool, target: str | None, rate_from: Any) -> str | None:
    """Why an option given on the command line would do nothing here, or None."""
    if not find_knee and (idle := [n for n in _KNEE if n in given]):
        return f"{dp.flag(idle[0])} does nothing without --find-knee: add it, or drop the option"
    if rate_from is None and "rate_share" in given:
        return "--rate-share does nothing without --rate-from: add it, or drop the option"
    if rate_from is not None and "rate" in given:
        return "--rate-from sets each transport's --rate: drop one of them"
    if target and (idle := [n for n in _SERVER if n in given]):
        return f"{dp.flag(idle[0])} configures a server tokenbench starts: not with --target"
    return None


def _lists(stack: str, gc: str, flush_ms: str) -> tuple[list[str], list[str], list[float]]:
    """--stack, --gc and --flush-ms as lists; ``ValueError`` with a one-line reason."""
    from servers.process.gcpolicy import POLICIES

    stacks = stack_registry.parse(stack)
    gcs = [g.strip() for g in gc.split(",") if g.strip()]
    if not gcs or any(g not in POLICIES for g in gcs):
        raise ValueError(f"--gc: {', '.join(POLICIES)} or both, not {gc!r}")
    try:
        flushes = [float(f) for f in flush_ms.split(",") if f.strip()]
    except ValueError:
        raise ValueError(f"--flush-ms: numbers of ms, comma-separated, not {flush_ms!r}") from None
    if not flushes or any(not 0 <= f <= 1000 for f in flushes):
        raise ValueError("--flush-ms: each 0..1000")
    return stacks, gcs, flushes


def _warn_clock(run: dict[str, Any], say: Any) -> None:
    if warning := (run.get("clock") or {}).get("warning"):
        say(f"warning: {run['transport']}: {warning}")


def _runs(names: list[str], cfg: Any, say: Any) -> list[tuple[str, Any]]:
    """Every (transport, variant) to run, in order; a transport without a stack is skipped."""
    import transports

    out, said = [], []
    for variant in cfg.variants():
        kept, left_out = stack_registry.split(map(transports.get, names), variant.stack)
        if left_out and left_out not in said:
            said.append(left_out)
            say(left_out)
        out += [(r.name, variant) for r in kept]
    order = {n: i for i, n in enumerate(names)}
    return sorted(out, key=lambda nv: order[nv[0]])  # by transport, as given (a stable sort)


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
