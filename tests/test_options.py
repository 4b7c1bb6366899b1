"""The command line's options: --version, the names shared across commands (--users, --window-s,
old names still accepted), options that would do nothing refused in one line, the missing web
bundle, the open-file limit and the packages recorded, and the lock covering the declared
dependencies.

Every refused combination carries a second mistake that fails right after the check under test
(an unknown transport, --rate 0, --tokens 50, --port 70000), so a check that stopped working
fails the test with the wrong message instead of starting a measurement.
"""

from __future__ import annotations

import re
import resource
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.deploy import Deploy
from bench.results import machine

ROOT = Path(__file__).resolve().parent.parent
NET = ["--transport", "carrier-pigeon"]  # fails right after the deployment options' checks


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def test_version_prints_the_version_and_exits_0() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith(f"tokenbench {metadata.version('tokenbench')}")
    assert result.stdout.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bench", "--replay", "redis", *NET], "--replay does nothing without --source llm"),
        (["bench", "--replay", "pod", *NET], "--replay does nothing without --source llm"),
        (["faults", "--ttft", "1-2", *NET], "--ttft does nothing without --source llm"),
        (["bench", "--jitter", "0.1", *NET], "--jitter does nothing without --source llm"),
        (["faults", "--pause-every", "5", *NET], "--pause-every does nothing without --source"),
        (["bench", "--pause-s", "3", *NET], "--pause-s does nothing without --source llm"),
        (["bench", "--redis", "redis://x", *NET], "--redis does nothing without --source llm"),
        (["bench", "--source", "llm", "--redis", "redis://x", *NET],
         "--redis does nothing without --replay redis"),
        (["bench", "--source", "llm", "--pause-every", "5", *NET], "--pause-every needs --pause-s"),
        (["bench", "--source", "llm", "--pause-s", "2", *NET], "--pause-s needs --pause-every"),
        (["bench", "--balance", "leastconn", *NET], "--balance does nothing without --lb haproxy"),
        (["faults", "--lb-check", "1", *NET], "--lb-check does nothing without --lb haproxy"),
        (["bench", "--lb-idle-timeout", "5", *NET], "--lb-idle-timeout does nothing without"),
        (["bench", "--lb-processes", "2", *NET], "--lb-processes does nothing without --lb"),
        (["faults", "--no-lb-no-delay", *NET], "--no-lb-no-delay does nothing without --lb"),
        (["bench", "--knee-start", "10", "--rate", "0"], "--knee-start does nothing without"),
        (["bench", "--knee-repeats", "3", "--rate", "0"], "--knee-repeats does nothing without"),
        (["bench", "--rate-share", "0.5", "--rate", "0"], "--rate-share does nothing without"),
        (["bench", "--rate-from", "x", "--rate", "0"], "--rate-from sets each transport's --rate"),
        (["bench", "--transport", "sse", "--target", "http://127.0.0.1:1", "--workers", "2",
          "--rate", "0"], "--workers configures a server tokenbench starts"),
        (["bench", "--transport", "sse", "--target", "http://127.0.0.1:1", "--flush-ms", "50",
          "--rate", "0"], "--flush-ms configures a server tokenbench starts"),
        (["faults", "--transport", "sse", "--parallel", "--tokens", "50"], "--parallel needs two"),
        (["faults", "--scenario", "restart,kill", "--parallel", "--tokens", "50"],
         "--parallel needs two"),
        (["serve", "sse", "--ws-compression", "--port", "70000"], "--ws-compression applies to"),
        (["serve", "ws", "--retry-ms", "10", "--port", "70000"], "--retry-ms applies to sse"),
        (["serve", "grpc", "--access-log", "--port", "70000"], "--access-log is uvicorn's"),
    ],
)  # fmt: skip
def test_an_option_that_would_do_nothing_is_refused_in_one_line(args: list[str], says: str) -> None:
    code, err = invoke(*args)
    assert code == 2
    assert err.count("\n") == 1 and says in err, err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bench", "--source", "llm", "--ttft", "1-2", "--jitter", "0", *NET], "unknown transport"),
        (["bench", "--source", "llm", "--replay", "redis", "--redis", "redis://x", *NET],
         "unknown transport"),
        (["bench", "--source", "llm", "--pause-every", "5", "--pause-s", "1", *NET],
         "unknown transport"),
        (["faults", "--lb", "haproxy", "--backends", "3", "--balance", "leastconn",
          "--lb-check", "1", "--no-lb-no-delay", *NET], "unknown transport"),
        (["bench", "--find-knee", "--knee-start", "10", "--rate", "0"], "--rate must be"),
        (["bench", "--transport", "sse", "--target", "http://127.0.0.1:1", "--rate", "0"],
         "--rate must be"),
        (["faults", "--scenario", "restart,close", "--parallel", "--tokens", "50"], "--tokens"),
        (["serve", "ws", "--ws-compression", "--port", "70000"], "port 70000"),
        (["serve", "sse", "--retry-ms", "10", "--port", "70000"], "port 70000"),
    ],
)  # fmt: skip
def test_an_option_that_acts_passes_its_check(args: list[str], says: str) -> None:
    code, err = invoke(*args)
    assert code == 2 and says in err, err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bench", "--users", "0"], "--users must be 1..1,000,000"),
        (["bench", "--clients", "0"], "--users must be 1..1,000,000"),  # the old name
        (["faults", "--users", "0"], "--users 1..200"),
        (["faults", "--clients", "500"], "--users 1..200"),
        (["faults", "--window-s", "1"], "--window-s >= 5"),
        (["faults", "--window", "1"], "--window-s >= 5"),  # the old name
    ],
)
def test_renamed_options_keep_their_old_names(args: list[str], says: str) -> None:
    code, err = invoke(*args)
    assert code == 2 and says in err, err


def _options(command: str) -> dict[str, str]:
    """A command's options: each of its names to its help."""
    import typer

    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return {name: p.help or "" for p in params for name in p.opts}


def test_help_names_units_and_the_mode_default() -> None:
    faults, bench, serve = _options("faults"), _options("bench"), _options("serve")
    assert faults["--window-s"] == faults["--window"] and "Seconds" in faults["--window-s"]
    assert faults["--users"] == faults["--clients"] and bench["--users"] == bench["--clients"]
    assert faults["--mode"].startswith("default (") and "or both" in faults["--mode"]
    assert "seconds" in bench["--settle"] and serve["--retry-ms"].endswith("ms.")


def test_a_missing_web_bundle_fails_at_once_naming_make_web(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.browser import chromium
    from servers.http import web

    def no_browser() -> str:
        raise chromium.BrowserError("the bundle check did not run")

    monkeypatch.setattr(web, "DIST", tmp_path / "dist")
    monkeypatch.setattr(chromium, "executable", no_browser)
    code, err = invoke("browser", "--transport", "sse")
    assert code == 2 and err.count("\n") == 1
    assert "bench.html is missing" in err and "make web" in err, err
    code, err = invoke("browser", "--transport", "sse", "--page", "react")
    assert code == 2 and "app.html is missing" in err, err


def test_deploy_refuses_only_what_was_given() -> None:
    args = dict(lb=None, backends=1, sticky=False, balance="roundrobin", lb_processes=1,
                lb_idle_timeout=60.0, lb_check=5.0, source="derive", replay="redis", redis=None,
                ttft="0.2-2", jitter=0.3, pause_every=0, pause_s=0.0)  # fmt: skip
    assert Deploy.from_options(**args).topology is None  # a default is never refused
    with pytest.raises(ValueError, match="--replay does nothing"):
        Deploy.from_options(**args, given=frozenset({"replay"}))


def test_the_soft_open_file_limit_is_raised_and_both_are_recorded() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if soft == hard and hard != resource.RLIM_INFINITY and hard > 64:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard // 2, hard))
        now_soft, now_hard = machine.open_files()
        assert now_hard == hard and (now_soft == hard or hard == resource.RLIM_INFINITY)
        doc = machine.machine()
        assert doc["open_files_limit"] == hard and doc["open_files_soft"] == now_soft
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _declared() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda reqs: [re.match(r"[A-Za-z0-9._-]+", r)[0].lower() for r in reqs]  # noqa: E731
    extras = project["optional-dependencies"]
    return {"": names(project["dependencies"]), **{k: names(v) for k, v in extras.items()}}


def test_packages_recorded_are_every_declared_dependency_and_what_they_pull_in() -> None:
    recorded = machine.packages()
    for names in _declared().values():
        assert all(n in recorded for n in names), set(names) - set(recorded)
    assert recorded["typer"] == metadata.version("typer")
    assert recorded.get("click") or recorded.get("starlette")  # pulled in, not declared


def test_the_lock_pins_the_default_install_and_not_the_cluster_extra() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {m[1].lower() for m in re.finditer(r"^([A-Za-z0-9._-]+)==", lock, re.M)}
    declared = _declared()
    for part in ("", "dev", "browser"):
        assert set(declared[part]) <= pinned, set(declared[part]) - pinned
    assert not set(declared["cluster"]) & pinned
    assert all("--hash=sha256:" in block for block in lock.split("==")[1:])
