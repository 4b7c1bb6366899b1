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
    from bench import results
    from bench.report import build as rp

    target = out or (paths[0] if paths[0].is_dir() else paths[0].parent)
    try:
        path = rp.build(paths, target)
    except results.SchemaError as exc:
        fail(str(exc))
    print(f"report: {path}")


@app.command("compare")
def compare_runs(
    a: Annotated[Path, typer.Argument(help="The baseline: results.json, a run directory, or a "
                                           "make bench run (its knee, hold-50k, faults).")],
    b: Annotated[Path, typer.Argument(help="The run to compare with it.")],
    steps: Annotated[bool, typer.Option(help="Also every figure of every matching step.")] = False,
) -> None:  # fmt: skip
    """Two runs side by side: verdicts, rankings and knees, normalised by each run's yardstick,
    with changes inside the noise flagged as such."""
    from bench import results
    from bench.report import compare as cmp
    from bench.report import stats
    from bench.results import machine as yardstick

    try:
        docs_a, docs_b = results.load_all(a), results.load_all(b)
    except results.SchemaError as exc:
        fail(str(exc))
    print(f"A: {', '.join(d['run_id'] for d in docs_a)} ({docs_a[0]['machine']['date']})")
    print(f"B: {', '.join(d['run_id'] for d in docs_b)} ({docs_b[0]['machine']['date']})")
    if docs_a[0]["machine"]["cpu_model"] != docs_b[0]["machine"]["cpu_model"]:
        print("note: the two runs are from different CPUs")
    machine = cmp.mean_ratio(docs_a, docs_b, yardstick.speed)
    paced = cmp.mean_ratio(docs_a, docs_b, yardstick.pace)
    if machine is None or paced is None:
        print("machine: no yardstick in one of the runs; CPU figures compare machines too")
    else:
        print(f"machine: B's reference token cost {machine:.2f}x A's in CPU and took {paced:.2f}x "
              f"as long on the server's cores (means over the runs); each figure is compared "
              f"normalised by its own run's yardstick")  # fmt: skip
    whole = cmp.whole_runs(docs_a, docs_b)
    print("\nverdicts:")
    for c in whole["claims"]:
        print(f"  {'same     ' if c['same'] else 'DIFFERENT'} {c['claim']}: {c['a']} / {c['b']}")
    names = lambda g: " or ".join(g) or "none named"  # noqa: E731
    sh = whole["ship"]
    print(f"  {'same     ' if sh['same'] else 'DIFFERENT'} What to ship: {names(sh['a'])} / "
          f"{names(sh['b'])}")  # fmt: skip
    print("\nrankings (best first; a flip is an order both runs are sure of, reversed):")
    for r in whole["rankings"]:
        verdict = "FLIPPED " + ", ".join(r["flips"]) if r["flips"] else "same"
        print(f"  {r['figure']}: A {' > '.join(r['a'])}; B {' > '.join(r['b'])}: {verdict}")
        for t in r["b"]:
            ia, ib = r["a_values"].get(t), r["b_values"].get(t)
            if ia and ib:
                ratio = ib["mean"] / ia["mean"] if ia["mean"] else float("nan")
                noisy = t in r["unstable"] or ia["unstable"] or ib["unstable"]
                flag = " (unstable)" if noisy else "" if abs(ratio - 1) <= 0.10 else " (over 10 %)"
                print(f"    {t:<5} A {stats.show(ia, 2):>28}  B {stats.show(ib, 2):>28}  "
                      f"B/A {ratio:.2f}{flag}")  # fmt: skip
    if not steps:
        return
    pairs = [(x, y) for x in docs_a for y in docs_b if x.get("kind") == y.get("kind")
             and x["run_id"].split("-")[-1] == y["run_id"].split("-")[-1]]  # fmt: skip
    for doc_a, doc_b in pairs or [(docs_a[0], docs_b[0])]:
        rows = cmp.compare(doc_a, doc_b)
        print(f"\n{doc_a['run_id']} / {doc_b['run_id']}:")
        print(f"{'transport':<9} {'users':>6} {'figure':<18} {'A':>12} {'B':>12} {'B/A':>6}  "
              f"judgement")  # fmt: skip
        for r in rows:
            fmt = lambda v: "-" if v is None else f"{v:,.2f}"  # noqa: E731
            print(f"{r['transport']:<9} {r['clients']:>6} {r['metric']:<18} {fmt(r['a']):>12} "
                  f"{fmt(r['b']):>12} {r['ratio']:>6}  {r['judgement']}"
                  + (" (normalised)" if r["normalised"] else ""))  # fmt: skip


@app.command()
def check(
    paths: Annotated[list[Path], typer.Argument(help="results.json files or run directories.")],
    min_goodput: Annotated[
        float, typer.Option(help="Lowest goodput a bench step may have.")
    ] = 0.99,
) -> None:
    """Exit 1 if a run broke a guarantee: tokens lost, duplicated or wrong, goodput too low,
    or a hardened client that did not recover from a fault. For CI."""
    from bench import results
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
    from bench import results
    from bench.report import tables

    try:
        rows = tables.merge_faults([results.load(path) for path in paths])
    except results.SchemaError as exc:
        fail(str(exc))
    if not rows:
        fail("no fault results in those files (run tokenbench faults first)")
    print(tables.faults_markdown(rows))


@app.command()
def plan(
    run: Annotated[Path, typer.Argument(help="A make bench run (its knee, hold-50k, faults), a "
                                             "run directory or a results.json.")],
    users: Annotated[int, typer.Option(help="Concurrent users to plan for.")] = 50_000,
    rate: Annotated[float, typer.Option(help="Tokens per second per user.")] = 40.0,
    node_cpus: Annotated[int, typer.Option(help="CPUs per load-generator node.")] = 8,
    pod_cores: Annotated[float, typer.Option(help="Server cores per pod.")] = 2.0,
    json_out: Annotated[bool, typer.Option("--json", help="The plan as JSON.")] = False,
) -> None:  # fmt: skip
    """The fleet for --users at --rate: server cores and pods, load nodes, memory, load
    balancer and Redis, from a run's measured costs; projected figures say so."""
    import dataclasses
    import json

    from bench import results
    from bench.report import plan as pl

    if not (1 <= users <= 100_000_000 and 0 < rate <= 1000 and 1 <= node_cpus <= 1024
            and 0 < pod_cores <= 1024):  # fmt: skip
        fail("--users 1..100,000,000, --rate 0 < rate <= 1000, --node-cpus 1..1024, "
             "--pod-cores 0 < cores <= 1024")  # fmt: skip
    try:
        docs = results.load_all(run)
    except results.SchemaError as exc:
        fail(str(exc))
    p = pl.plan(docs, users, rate, node_cpus, pod_cores)
    if not p["transports"]:
        fail(f"{run} has no --find-knee run: the plan sizes servers from a knee")
    if json_out:
        print(json.dumps(p, default=dataclasses.asdict, indent=1))
        return
    print(f"from {', '.join(d['run_id'] for d in docs)} ({docs[0]['machine']['date']}, "
          f"{docs[0]['machine']['cpu_model']})")  # fmt: skip
    print("\n".join(pl.lines(p)))
