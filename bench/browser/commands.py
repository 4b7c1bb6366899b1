"""``tokenbench browser``: Chromium tabs reading streams, each with a browser client."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

import transports
from bench.cliapp import CHOICES, app, fail, on_stack, pick
from transports import stacks as stack_registry

PAGES = {"plain": "bench", "react": "app"}


def _ints(spec: str, what: str, lo: int, hi: int) -> list[int]:
    try:
        values = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        fail(f"--{what} takes whole numbers, a comma list: not {spec!r}")
    if not values or any(not lo <= v <= hi for v in values):
        fail(f"--{what}: each {lo}..{hi}, not {spec!r}")
    return values


def _choices(spec: str, what: str, known: tuple[str, ...]) -> list[str]:
    picked = [v.strip() for v in spec.split(",") if v.strip()]
    bad = [v for v in picked if v not in known]
    if bad or not picked:
        fail(f"--{what}: {', '.join(known)} (a comma list), not {spec!r}")
    return picked


def clients_of(names: list[str], spec: str) -> list[tuple[str, str]]:
    """(transport, client) pairs: ``all`` every browser client, ``as-is`` each transport's
    client as it comes, or client names."""
    pairs = [(n, c) for n in names for c in transports.get(n).browser]
    if spec == "all":
        return pairs
    if spec == "as-is":
        return [(n, transports.get(n).browser[0]) for n in names]
    wanted = _choices(spec, "client", (*[c for _, c in pairs], "all", "as-is"))
    return [(n, c) for n, c in pairs if c in wanted]


@app.command()
def browser(
    transport: Annotated[str, typer.Option(help=CHOICES)] = "all",
    client: Annotated[
        str,
        typer.Option(
            help="Browser clients: all, as-is (each transport's as it comes), or names "
            "(eventsource, eventsource-hardened, websocket, grpc-web, fetch)."
        ),
    ] = "all",
    tabs: Annotated[
        str, typer.Option(help="Tabs in one browser profile, one origin: a list.")
    ] = "1",
    tokens: Annotated[int, typer.Option(help="Tokens per stream.")] = 200,
    rate: Annotated[float, typer.Option(help="Tokens per second per stream.")] = 40.0,
    http: Annotated[
        str, typer.Option(help="1.1 (direct), 2 (HAProxy with TLS and ALPN h2), or 1.1,2.")
    ] = "1.1",
    fault: Annotated[
        str,
        typer.Option(
            help="none, close, blackhole (the fault proxy), lb-restart (HAProxy in "
            "front, the server stopped and started): a comma list."
        ),
    ] = "none",
    page: Annotated[str, typer.Option(help="plain (bench.html) or react (app.html).")] = "plain",
    wait: Annotated[
        float | None,
        typer.Option(
            help="Seconds before unfinished tabs count as stalled (default: twice the "
            "stream's length plus 10, and 10 more with a fault)."
        ),
    ] = None,
    stack: Annotated[str, typer.Option(help=stack_registry.choices(many=False))] = "stock",
    screenshot: Annotated[
        str | None, typer.Option(help="Save the first measurement's first tab as a PNG here.")
    ] = None,
    out: Annotated[str | None, typer.Option(help="Output directory.")] = None,
) -> None:
    """Real browsers: each tab reads a stream with its transport's browser client; per tab,
    tokens, first token, loss, latency against due times, renderer CPU and JS heap."""
    from bench import results
    from bench.browser import chromium
    from bench.browser.origins import FAULTS, NETWORKS, OriginError
    from bench.browser.tabs import Plan
    from bench.load import yardstick as ys

    names = on_stack(pick(transport), stack)
    pairs = clients_of(names, client)
    counts = _ints(tabs, "tabs", 1, 20)
    networks = _choices(http, "http", NETWORKS)
    faults = _choices(fault, "fault", FAULTS)
    if page not in PAGES:
        fail(f"--page: plain or react, not {page!r}")
    if not 1 <= tokens <= 100_000 or not 0 < rate <= 1000:
        fail("--tokens must be 1..100,000 and --rate 0 < rate <= 1000")
    if any(f != "none" for f in faults) and networks != ["1.1"]:
        fail("faults run over HTTP/1.1 only: drop --http 2 or --fault")
    if any(f != "none" for f in faults) and tokens / rate < 4:
        fail("a fault fires 2 s into the stream: give streams at least 4 s (--tokens / --rate)")
    if missing := _unbuilt(PAGES[page]):
        fail(f"{missing} is missing: build the browser bundle with `make web` (node and npm)")
    try:
        chromium.executable()
    except chromium.BrowserError as exc:
        fail(str(exc))
    base_wait = 2 * tokens / rate + 10
    plans = [
        Plan(t, c, n, tokens, rate, network=net, fault=f, page=PAGES[page],
             wait_s=wait or base_wait + (10 if f != "none" else 0),
             stack=stack)
        for f in faults for net in networks for n in counts for t, c in pairs
    ]  # fmt: skip
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-browser"
    out_dir = Path(out) if out else Path("results") / run_id
    config = {"transports": names, "clients": [c for _, c in pairs], "tabs": counts,
              "tokens": tokens, "rate": rate, "http": networks, "faults": faults, "page": page,
              "stack": stack, "chromium": chromium.executable()}  # fmt: skip
    doc = results.new_doc("browser", out_dir.name, config)
    doc["browser"] = []
    before = ys.measure()
    doc["machine"]["yardstick"] = ys.combine(before, None)
    try:
        asyncio.run(_run(plans, doc, out_dir, Path(screenshot) if screenshot else None))
    except KeyboardInterrupt:
        doc["interrupted"] = True
    except (chromium.BrowserError, OriginError) as exc:
        doc["error"] = str(exc)
        results.write(doc, out_dir)
        fail(str(exc), 1)
    doc["machine"]["yardstick"] = ys.combine(before, ys.measure())
    path = results.write(doc, out_dir)
    print(f"results: {path}")


def _unbuilt(page: str) -> str | None:
    """The page ``make web`` has not built (web/dist/bench.html or app.html), or None."""
    from servers.http import web

    path = web.DIST / f"{page}.html"
    if path.is_file():
        return None
    root = web.DIST.parent.parent
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


async def _run(plans: list[Any], doc: dict[str, Any], out_dir: Path, shot: Path | None) -> None:
    from bench import results
    from bench.browser import chromium, tabs

    doc["machine"]["chromium"] = None
    work = Path(tempfile.mkdtemp(prefix="tokenbench-browser-"))  # HAProxy configs, TLS keys
    try:
        async with chromium.browser() as chrome:
            doc["machine"]["chromium"] = chrome.version
            for i, plan in enumerate(plans):
                e = await tabs.measure(chrome, plan, work, shot if i == 0 else None)
                doc["browser"].append(e)
                results.write(doc, out_dir)
                print(line(e), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def line(e: dict[str, Any]) -> str:
    firsts = " ".join("-" if f is None else f"{f / 1000:.1f}" for f in e["first_token_ms"])
    lat = e["latency_ms"]
    p99 = f"{lat['p99']:.0f}" if lat.get("count") else "-"
    rend = e["renderer_us_per_token"]
    return (f"{e['client']:<21} http/{e['network']:<3} {e['fault']:<10} tabs {e['tabs']:>2}: "
            f"{e['tabs_read_all']}/{e['tabs']} read all, first token (s) [{firsts}], "
            f"lost {_n(e['lost'])}, unread {_n(e.get('unread'))}, dup {_n(e['duplicated'])}, "
            f"p99 {p99} ms, reconnects {_n(e['reconnects'])}, "
            f"renderer {rend if rend is not None else '-'} us/token")  # fmt: skip


def _n(v: Any) -> str:
    """A figure, or "-" when it was not measured."""
    return "-" if v is None else str(v)
