"""``tokenbench report``, ``compare``, ``check`` and ``faults-table``: they read JSON only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cliapp import app, fail


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
