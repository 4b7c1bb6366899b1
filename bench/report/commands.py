"""``tokenbench report``, ``compare``, ``check`` and ``faults-table``: they read JSON only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
    """Charts (PNG), REPORT.md and summary.json (the decision, verdicts and headline figures,
    for machines) from results.json files; reads JSON only, never re-runs."""
    from bench import results
    from bench.report import build as rp
    from bench.report import summary

    target = out or (paths[0] if paths[0].is_dir() else paths[0].parent)
    try:
        path = rp.build(paths, target)
        summary.write(paths, target)
    except results.SchemaError as exc:
        fail(str(exc))
    print(f"report: {path}")


@app.command("summary")
def summary_of(
    report_dir: Annotated[Path, typer.Argument(help="A report directory (its summary.json), "
                                                    "or a summary.json.")],
    markdown: Annotated[bool, typer.Option("--markdown", help="As Markdown (a CI step "
                                                              "summary), not JSON.")] = False,
) -> None:  # fmt: skip
    """Print what a report decided (its summary.json): what to ship, the headline figures and
    every verdict."""
    import json

    from bench.report import summary

    try:
        s = summary.read(report_dir)
    except ValueError as exc:
        fail(str(exc))
    print(summary.markdown(s).rstrip("\n") if markdown else json.dumps(s, indent=1))


@app.command("compare")
def compare_runs(
    a: Annotated[Path, typer.Argument(help="The baseline: results.json, a run directory, or a "
                                           "make bench run (its knee, hold-50k, faults).")],
    b: Annotated[Path, typer.Argument(help="The run to compare with it.")],
    steps: Annotated[bool, typer.Option(help="Also every figure of every matching step.")] = False,
    fail_on: Annotated[str | None, typer.Option(
        help="Exit 1 on: flip (a verdict, a ranking or what to ship differs), regression (B's "
             "users per core or CPU per token worse than A's by more than --max-regression "
             "beyond both intervals), or both: flip,regression.")] = None,
    max_regression: Annotated[str, typer.Option(
        help="With --fail-on regression: as 10% or 0.1.")] = "10%",
) -> None:  # fmt: skip
    """Two runs side by side: verdicts, rankings and knees, normalised by each run's yardstick,
    with changes inside the noise flagged as such."""
    from bench import results
    from bench.report import check as ck
    from bench.report import compare as cmp
    from bench.report import stats
    from bench.results import machine as yardstick

    gates = {g.strip() for g in (fail_on or "").split(",") if g.strip()}
    if gates - {"flip", "regression"}:
        fail(f"--fail-on: {fail_on!r}: flip, regression, or flip,regression")
    try:
        threshold = ck.fraction(max_regression)
    except ValueError as exc:
        fail(str(exc))
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
    failed = []
    if "flip" in gates:
        failed += cmp.flipped(whole)
    if "regression" in gates:
        regressed, _ = ck.regressions(docs_a, docs_b, threshold)
        failed += [f"regression {r}" for r in regressed]
    if steps:
        _compare_steps(docs_a, docs_b)
    if gates:
        print()
        for f in failed:
            print(f"FAIL {f}")
        print(f"FAIL: {len(failed)} change(s) ({', '.join(sorted(gates))})" if failed
              else f"ok: no {' or '.join(sorted(gates))} between A and B")  # fmt: skip
    if failed:
        raise typer.Exit(1)


def _compare_steps(docs_a: list[dict[str, Any]], docs_b: list[dict[str, Any]]) -> None:
    """``compare --steps``: every figure of every matching step."""
    from bench.report import compare as cmp

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
    paths: Annotated[list[Path], typer.Argument(help="results.json files, run directories or "
                                                     "make bench runs.")],
    min_goodput: Annotated[str, typer.Option(help="Lowest goodput a step that counts may "
                                                  "have.")] = "0.99",
    p99_ms: Annotated[str | None, typer.Option(help="Highest p99 token latency (ms) a step "
                                                    "that counts may have.")] = None,
    min_users_per_core: Annotated[str | None, typer.Option(
        help="Lowest knee (the lower edge of users per core) a transport may have.")] = None,
    baseline: Annotated[Path | None, typer.Option(
        help="A run to compare with: users per core and CPU per token, normalised.")] = None,
    max_regression: Annotated[str | None, typer.Option(
        help="With --baseline: how much worse a figure may be beyond both intervals, as 10% "
             "or 0.1.")] = None,
) -> None:  # fmt: skip
    """Exit 1 if a run broke a guarantee (tokens lost, unread, duplicated or wrong; a hardened
    client that did not recover) or a threshold. A knee run is judged by its knee: the steps
    above it broke the SLO on purpose. For CI; exit 2 on bad input."""
    from bench import results
    from bench.report import check as ck

    try:
        goodput = ck.positive(min_goodput, "--min-goodput")
        p99 = None if p99_ms is None else ck.positive(p99_ms, "--p99-ms")
        per_core = (None if min_users_per_core is None
                    else ck.positive(min_users_per_core, "--min-users-per-core"))  # fmt: skip
        regression = None if max_regression is None else ck.fraction(max_regression)
    except ValueError as exc:
        fail(str(exc))
    if (baseline is None) != (regression is None):
        fail("--baseline and --max-regression go together")
    try:
        docs = [d for path in paths for d in results.load_all(path)]
        base = results.load_all(baseline) if baseline is not None else []
    except results.SchemaError as exc:
        fail(str(exc))
    problems = [p for d in docs for p in ck.problems_in(d, goodput, p99)]
    notes: list[str] = []
    judged = [f"goodput >= {goodput:g}"] + ([f"p99 <= {p99:g} ms"] if p99 else [])
    if per_core is not None:
        problems += ck.capacity_problems(docs, per_core)
        judged.append(f"knee >= {per_core:g} users per core")
    if regression is not None:
        fails, notes = ck.regressions(base, docs, regression)
        problems += fails
        judged.append(f"no regression over {regression:.0%} against "
                      f"{', '.join(d['run_id'] for d in base)}")  # fmt: skip
    for p in problems:
        print(f"FAIL {p}")
    for n in notes:
        print(f"note: {n}")
    skipped = ck.left_out(docs)
    scope = (f"; {skipped} step(s) of knee runs above the knee or broken repeats not held to "
             f"goodput or p99" if skipped else "")  # fmt: skip
    if problems:
        print(f"FAIL: {len(problems)} problem(s) in {len(docs)} run(s)")
        raise typer.Exit(1)
    print(f"ok: {len(docs)} run(s), no guarantee broken; {', '.join(judged)}{scope}")


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
