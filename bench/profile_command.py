"""``tokenbench profile NAME``: run a profile's jobs (bench.profiles), then the report of
everything in its directory, whatever ran."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from bench import profiles
from bench.cliapp import app, fail


@app.command()
def profile(
    name: Annotated[str, typer.Argument(help="decision (make bench), full, or a deeper one: "
                                             + ", ".join(profiles.DEEPER) + ".")],
    out: Annotated[Path, typer.Option(help="The run directory: one folder per job, jobs.json, "
                                           "report/.")],
    started_at: Annotated[
        float | None,
        typer.Option(help="Unix time the make command started, so the wall time recorded "
                     "includes the installs (default: now)."),
    ] = None,
    latest: Annotated[
        bool, typer.Option(help="Point results/latest at --out when the report is written.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the jobs, run nothing.")] = False,
) -> None:  # fmt: skip
    """Run each job of the profile; a job whose system commands are missing is skipped with one
    line and named in the report; the report is written from whatever ran. Exit 1 when a job
    failed."""
    from bench import results
    from bench.report import build

    if name not in profiles.PROFILES:
        fail(f"no profile {name!r}: choose one of {', '.join(profiles.PROFILES)}")
    runner = profiles.Runner(name, out, started_at or time.time())
    jobs = profiles.PROFILES[name]
    if dry_run:
        for job in jobs:
            print(" ".join(runner.command(job)))
        return
    profiles.interrupt_on_sigterm()
    try:
        for job in jobs:
            runner.run(job)
    except KeyboardInterrupt:
        print("stopped: the report covers the jobs that finished", flush=True)
    runner.write()
    runs = profiles.runs_in(out)
    if not runs:
        fail(f"no job of {name} wrote results under {out}: nothing to report")
    try:
        path = build.build(runs, out / "report")
        from bench.report import summary

        summary.write(runs, out / "report")
    except results.SchemaError as exc:
        fail(str(exc))
    runner.write()  # the wall time up to the report written
    if latest:
        link = out.parent / "latest"
        if link.is_symlink() or not link.exists():
            link.unlink(missing_ok=True)
            link.symlink_to(out.name)
    done = runner.doc()
    bad = [r for r in done["jobs"] if r["status"] in ("failed", "interrupted")]
    skipped = [r for r in done["jobs"] if r["status"] == "skipped"]
    print(f"report: {path} ({done['wall_s'] / 60:.1f} min since start"
          + (f"; skipped: {', '.join(r['name'] for r in skipped)}" if skipped else "")
          + (f"; FAILED: {', '.join(r['name'] for r in bad)}" if bad else "") + ")")  # fmt: skip
    if bad:
        raise typer.Exit(1)
