"""bench.profiles: every job of every profile is a command line tokenbench accepts; a job whose
system commands are missing is skipped with one line and named in the report; a failed job is
recorded and the others still run; the report is written from whatever ran."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from bench import profiles
from bench.cli import app

ROOT = Path(__file__).resolve().parent.parent

FIXTURES = Path(__file__).parent / "fixtures"


def _parse(argv: list[str]) -> None:
    """Parse a command line the way ``tokenbench`` would, without running it."""
    group = typer.main.get_command(app)
    ctx = group.make_context("tokenbench", list(argv), resilient_parsing=False)
    name, cmd, rest = group.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
    assert cmd is not None, name
    cmd.make_context(name or "", rest, parent=ctx)


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_every_job_of_every_profile_parses(name: str, tmp_path: Path) -> None:
    runner = profiles.Runner(name, tmp_path)
    jobs = profiles.PROFILES[name]
    assert len({j.name for j in jobs}) == len(jobs), "job names are their run directories"
    for job in jobs:
        _parse(runner.command(job)[1:])
        for dep in job.after:
            assert dep in [j.name for j in jobs], f"{job.name} reads {dep}, not in {name}"


def test_the_decision_job_covers_what_ship_reads() -> None:
    names = [j.name for j in profiles.DECISION]
    assert names == ["knee", "hold-50k", "faults", "lb-pod", "lb-redis", "lb-redis-sse", "browser"]
    full = [j.name for j in profiles.PROFILES["full"]]
    assert len(full) == len(set(full)) and set(names) < set(full)


def test_missing_command_skips_and_failure_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = profiles.Runner("test", tmp_path)
    assert runner.run(profiles.Job("needs", ("info",), needs=("no-such-command-xyz",))) == "skipped"
    line = capsys.readouterr().out.strip()
    assert line == ("skipped needs: no-such-command-xyz not installed "
                    "(apt-get install -y no-such-command-xyz)")  # fmt: skip
    assert runner.run(profiles.Job("bad", ("bench", "--transport", "nope"))) == "failed"
    assert runner.run(profiles.Job("reads-bad", ("info",), after=("bad",))) == "skipped"
    doc = json.loads(runner.write().read_text())
    assert doc["kind"] == "jobs" and doc["schema_version"] == profiles.JOBS_VERSION
    got = {r["name"]: (r["status"], r["why"]) for r in doc["jobs"]}
    assert got["needs"][0] == "skipped" and got["bad"] == ("failed", "exit status 2")
    assert got["reads-bad"] == ("skipped", "needs bad, which did not finish")


def test_a_deeper_profile_merges_into_the_run(tmp_path: Path) -> None:
    first = profiles.Runner("decision", tmp_path, started_at=1.0)
    first._record(profiles.Job("knee", ()), ["tokenbench"], "ran", None, 10.0)
    first.write()
    second = profiles.Runner("gc", tmp_path)
    second._record(profiles.Job("gc", ()), ["tokenbench"], "skipped", "x", 0.0)
    doc = json.loads(second.write().read_text())
    assert doc["profile"] == "decision+gc" and doc["started_at"] == 1.0
    assert [r["name"] for r in doc["jobs"]] == ["knee", "gc"]


def test_the_report_names_jobs_that_did_not_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "knee").mkdir(parents=True)
    shutil.copy(FIXTURES / "bench.json", run / "knee" / "results.json")
    runner = profiles.Runner("decision", run)
    runner._record(profiles.Job("knee", ()), ["tokenbench"], "ran", None, 1.0)
    runner._record(profiles.Job("browser", ()), ["tokenbench"], "skipped",
                   "chromium not installed (apt-get install -y chromium)", 0.0)  # fmt: skip
    runner.write()
    from bench.report import build

    text = build.build(profiles.runs_in(run), run / "report").read_text()
    assert "Jobs: 1 of 2 ran (knee)." in text
    assert ("**Not measured**: `browser` skipped: chromium not installed "
            "(apt-get install -y chromium).") in text  # fmt: skip


def test_profile_command_refuses_an_unknown_profile(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "bench.cli", "profile", "nope", "--out",
                          str(tmp_path)], capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error: no profile 'nope'")


def _no_apt_path(tmp_path: Path) -> str:
    """A PATH with what scripts/system-packages.sh runs, and no apt-get."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("uname", "id", "cc", "bash"):
        found = shutil.which(tool)
        assert found, tool
        (bin_ / tool).symlink_to(found)
    return str(bin_)


@pytest.mark.parametrize("allow", [False, True])
def test_system_check_names_the_one_command_without_apt(tmp_path: Path, allow: bool) -> None:
    env = {"PATH": _no_apt_path(tmp_path), **({"ALLOW_MISSING": "1"} if allow else {})}
    script = Path(__file__).parents[1] / "scripts" / "system-packages.sh"
    out = subprocess.run(["bash", str(script), sys.executable, "no-such-cmd-xyz:no-such-pkg-xyz"],
                         env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    fix = "install with: sudo apt-get install -y no-such-pkg-xyz"
    if allow:
        assert out.returncode == 0 and fix in out.stdout and "skipped" in out.stdout
    else:
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith("error: missing no-such-pkg-xyz; " + fix)


def test_sigterm_stops_the_running_job_too(tmp_path: Path) -> None:
    """A profile stopped by SIGTERM (kill, a CI timeout) stops its job as Ctrl-C would, and
    never leaves it running alone (a bench that outlives its profile skews the next run)."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from bench import profiles\n"
        "profiles.interrupt_on_sigterm()\n"
        "runner = profiles.Runner('t', Path(sys.argv[1]), 0.0)\n"
        "try:\n"
        "    runner.run(profiles.Job('serve', ('serve', 'sse', '--port', '0')))\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the job's own ready line
            if '"ready"' in line:
                break
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(kids) == 1
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert "interrupted" in out
        assert not Path(f"/proc/{kids[0]}").exists() or "zombie" in Path(
            f"/proc/{kids[0]}/status").read_text()  # fmt: skip
    finally:
        proc.kill()
        proc.wait()
