"""Profiles: the named sets of jobs ``make bench`` and its deeper targets run
(``tokenbench profile NAME --out results/RUN``).

Rules: a job is one tokenbench command writing ``<out>/<job>``, with the system commands it
needs. A job whose commands are missing is skipped with one line; a job that fails is recorded
and the others still run (a job reading another's output is skipped when that one did not
finish). The report is always written, from whatever ran, and ``<out>/jobs.json`` records every
job's status, reason and wall time, which the report names under "not measured".
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict

Status = Literal["ran", "failed", "skipped", "interrupted"]
JOBS_VERSION = 1

# The knee search as make bench runs it: 40 tok/s per user, three 0.7 s windows per step, the
# knee and the first broken step repeated three times, bisected to one refine step (knee.py).
# The searches take turns (bench.load.run.run_interleaved).
KNEE = (
    "--find-knee",
    "--knee-start",
    "200",
    "--knee-factor",
    "1.5",
    "--knee-refine",
    "2",
    "--knee-repeats",
    "3",
    "--users",
    "3000",
    "--ramp",
    "1.5s",
    "--hold",
    "2.1",
    "--windows",
    "3",
    "--think",
    "0",
)
LB = ("--lb", "haproxy", "--backends", "3", "--source", "llm")
LB_NEEDS = ("haproxy", "redis-server")
# Through each proxy and profile (servers/topology/nginx.py): 100 users on three backends, as the
# hops.
PROXY = ("--transport", "all", "--users", "100", "--ramp", "3s", "--hold", "6", "--windows", "3",
         "--think", "0", "--backends", "3")  # fmt: skip
IDLE = ("--backends", "3", "--source", "llm", "--replay", "redis", "--scenario",
        "idle-timeout,idle-timeout-silent")  # fmt: skip
IDLE60 = ("--idle-s", "60", "--window-s", "85", "--users", "3")  # nginx's and the ALB's 60 s
NGINX_FAULTS = ("--backends", "3", "--source", "llm", "--replay", "redis", "--scenario",
                "backend-kill,rolling-deploy", "--mode", "hardened", "--users", "5")  # fmt: skip


@dataclass(frozen=True)
class Job:
    name: str  # also the run directory under the profile's --out
    args: tuple[str, ...]  # after ``tokenbench``; ``{out}`` is the profile's directory
    needs: tuple[str, ...] = ()  # commands on PATH (or /usr/sbin) the job runs
    after: tuple[str, ...] = ()  # jobs whose results this one reads
    report: bool = True  # its results.json goes into the report


def _bench(name: str, *args: str, after: tuple[str, ...] = (),
           needs: tuple[str, ...] = ()) -> Job:  # fmt: skip
    return Job(name, ("bench", *args, "--out", f"{{out}}/{name}"), needs=needs, after=after)


def _faults(name: str, *args: str, needs: tuple[str, ...] = ()) -> Job:
    return Job(name, ("faults", *args, "--out", f"{{out}}/{name}"), needs=needs)


def _browser(name: str, *args: str) -> Job:
    return Job(name, ("browser", *args, "--out", f"{{out}}/{name}"),
               needs=("chromium", "haproxy"))  # fmt: skip


# fmt: off
# What the verdicts and "what to ship" read, and nothing else (docs/verdicts.md).
DECISION = (
    # 230 s of steps in all: 48 to 60 steps took 220 to 276 s in fresh-clone runs of
    # 2026-12-07, and make bench took 15.3 and 15.4 minutes; a search still going when the
    # budget ends stops there, unsettled, and the report says so.
    _bench("knee", "--transport", "all", *KNEE, "--knee-budget", "230"),
    # 50,000 users on every transport, ramped at the pace the server accepts them (a 52 s
    # budget: what fits 15 minutes beside the knee), each reading a token every 33 s
    # (0.03 tok/s, 1,500 tok/s in all): this step measures holding connections (memory,
    # accepts), the knee measures tokens. At 5 % of the knee's rate long polling's users had
    # no token due in the window (one every 75 s: results/20261207-043144/hold-50k). On 2
    # cores the ramps take 55 to 80 s each (results/20261207-043144, -044841): a transport
    # short of 50,000 at 52 s shows how many connected, at what accept rate, and which side
    # ran out of CPU.
    _bench("hold-50k", "--transport", "all", "--users", "50000", "--adaptive-ramp", "--ramp",
           "52s", "--cooldown", "2", "--hold", "4", "--windows", "2", "--rate", "0.03",
           "--tokens", "30", "--think", "5", "--no-pin"),
    _faults("faults", "--transport", "all", "--scenario", "close,blackhole,restart", "--mode",
            "both", "--tokens", "150", "--window-s", "15", "--parallel"),
    _faults("lb-pod", *LB, "--replay", "pod", "--scenario", "backend-kill", "--mode", "hardened",
            "--tokens", "150", "--window-s", "15", needs=LB_NEEDS),
    _faults("lb-redis", *LB, "--replay", "redis", "--scenario", "backend-kill", "--mode",
            "hardened", "--tokens", "150", "--window-s", "15", needs=LB_NEEDS),
    # EventSource as it comes behind the LB ("SSE reconnects are invisible behind a load
    # balancer"); the other transports' readers as they come are the lb profile's.
    _faults("lb-redis-sse", *LB, "--replay", "redis", "--scenario", "backend-kill", "--transport",
            "sse", "--mode", "default", "--tokens", "150", "--window-s", "15", needs=LB_NEEDS),
    _browser("browser", "--transport", "all", "--tabs", "7", "--tokens", "80", "--rate", "40",
             "--http", "1.1,2"),
)

# The deeper profiles: each adds jobs to a run directory; the report merges what is present.
DEEPER: dict[str, tuple[Job, ...]] = {
    "passes": (_bench("knee-2", "--transport", "all", *KNEE),),
    # The 50,000 step with the time 2 cores need to connect everyone (the decision job's 60 s
    # budget is what fits 15 minutes).
    "hold": (_bench("hold-50k-long", "--transport", "all", "--users", "50000", "--adaptive-ramp",
                    "--ramp", "150s", "--cooldown", "2", "--hold", "10", "--windows", "3",
                    "--rate", "0.03", "--tokens", "30", "--think", "5", "--no-pin"),),
    "stacks": (
        # lean and floor take turns in one search (issue 26: the floor against lean)
        _bench("knee-lean", "--transport", "all", "--stack", "lean,floor", *KNEE),
        _bench("knee-granian", "--transport", "sse,poll", "--stack", "granian", *KNEE),
    ),
    "windows": (
        _bench("flush", "--transport", "all", "--stack", "lean", "--flush-ms", "0,25,50,100,250",
               "--users", "150", "--ramp", "2s", "--hold", "4", "--windows", "2", "--think", "0"),
        _bench("flush-grpc", "--transport", "grpc", "--flush-ms", "0,25,50,100,250", "--users",
               "150", "--ramp", "2s", "--hold", "4", "--windows", "2", "--think", "0"),
    ),
    "gc": (
        _bench("gc", "--transport", "sse", "--stack", "lean", "--gc", "stock,tuned", "--users",
               "10000", "--workers", "1", "--rate", "1", "--tokens", "60", "--think", "5",
               "--adaptive-ramp", "--ramp", "40s", "--hold", "30", "--windows", "3", "--no-pin"),
        _bench("gc-poll", "--transport", "poll", "--gc", "stock,tuned", "--users", "10000",
               "--workers", "1", "--rate", "0.2", "--tokens", "30", "--think", "5",
               "--adaptive-ramp", "--ramp", "40s", "--hold", "30", "--windows", "3", "--no-pin"),
    ),
    "faults": (_faults("faults-all", "--transport", "all", "--scenario", "all", "--mode", "both",
                       "--users", "5"),),
    "lb": tuple(
        _faults(f"lb-{name}", *LB, *extra, "--scenario", "all", needs=LB_NEEDS)
        for name, extra in (("redis-all", ("--replay", "redis")), ("pod-all", ("--replay", "pod")),
                            ("pod-sticky", ("--replay", "pod", "--sticky")),
                            ("redis-sticky", ("--replay", "redis", "--sticky")))
    ),
    # nginx as it comes and as documented, beside HAProxy as the ALB; then the edge that cuts
    # idle streams (bench/faults/behind_lb.py's idle scenarios, heartbeats on and off) through
    # nginx: every transport as documented, and the two its defaults carry.
    "proxies": (
        _bench("proxy-nginx-defaults", *PROXY, "--lb", "nginx", "--lb-profile", "defaults",
               needs=("nginx",)),
        _bench("proxy-nginx-documented", *PROXY, "--lb", "nginx", needs=("nginx",)),
        _bench("proxy-haproxy", *PROXY, "--lb", "haproxy", needs=("haproxy",)),
        _faults("idle-nginx-documented", "--lb", "nginx", *IDLE, needs=("nginx", "redis-server")),
        _faults("idle-nginx-defaults", "--lb", "nginx", "--lb-profile", "defaults", *IDLE,
                "--transport", "sse,poll", needs=("nginx", "redis-server")),
    ),
    # The fault scenarios through nginx (a backend killed, a rolling deploy; the Redis log), and
    # the idle cut at nginx's real proxy_read_timeout, 60 s (also the ALB's), heartbeats on and
    # off: each transport as documented, and the two nginx's defaults carry.
    "edge": (
        _faults("faults-nginx-documented", "--lb", "nginx", *NGINX_FAULTS,
                needs=("nginx", "redis-server")),
        _faults("faults-nginx-defaults", "--lb", "nginx", "--lb-profile", "defaults",
                *NGINX_FAULTS, "--transport", "sse,poll", needs=("nginx", "redis-server")),
        _faults("idle60-nginx-documented", "--lb", "nginx", *IDLE, *IDLE60,
                needs=("nginx", "redis-server")),
        _faults("idle60-nginx-defaults", "--lb", "nginx", "--lb-profile", "defaults", *IDLE,
                *IDLE60, "--transport", "sse,poll", needs=("nginx", "redis-server")),
    ),
    # The stop button (tokenbench stop): 30 users per transport press stop mid-answer, on one
    # server and behind HAProxy with the model and its shared Redis log.
    "stop": (
        Job("stop", ("stop", "--transport", "all", "--users", "30", "--out", "{out}/stop")),
        Job("stop-lb", ("stop", *LB, "--replay", "redis", "--transport", "all", "--users", "30",
                        "--out", "{out}/stop-lb"), needs=LB_NEEDS),
    ),
    "browsers": (
        _browser("browser-tabs", "--transport", "all", "--tabs", "1,6,7,10", "--tokens", "120",
                 "--rate", "40", "--http", "1.1,2"),
        _browser("browser-faults", "--transport", "all", "--fault", "close,blackhole,lb-restart",
                 "--tokens", "400", "--rate", "40", "--wait", "25"),
        _browser("browser-cpu", "--transport", "all", "--client", "as-is", "--tabs", "4",
                 "--tokens", "3000", "--rate", "300"),
        _browser("browser-react", "--transport", "all", "--client", "as-is", "--page", "react",
                 "--tabs", "1,7", "--tokens", "120", "--rate", "40"),
    ),
}
# fmt: on
PROFILES: dict[str, tuple[Job, ...]] = {
    "decision": DECISION,
    **DEEPER,
    "full": DECISION + tuple(j for jobs in DEEPER.values() for j in jobs),
}


class JobRecord(TypedDict):
    name: str
    command: str
    status: Status
    why: str | None  # skipped or failed: one line
    wall_s: float


class JobsDoc(TypedDict):
    schema_version: int
    kind: Literal["jobs"]
    profile: str
    started_at: float  # Unix time the make command started (installs included)
    wall_s: float  # from started_at to the report written
    jobs: list[JobRecord]


def have(command: str) -> bool:
    return shutil.which(command) is not None or Path("/usr/sbin", command).exists()


@dataclass
class Runner:
    profile: str
    out: Path
    started_at: float = field(default_factory=time.time)
    records: list[JobRecord] = field(default_factory=list)

    def command(self, job: Job) -> list[str]:
        return ["tokenbench", *(a.replace("{out}", str(self.out)) for a in job.args)]

    def run(self, job: Job) -> Status:
        argv = self.command(job)
        done = {r["name"] for r in self.records if r["status"] == "ran"}
        why = None
        if lost := [c for c in job.needs if not have(c)]:
            why = f"{' and '.join(lost)} not installed (apt-get install -y {' '.join(lost)})"
        elif waiting := [a for a in job.after if a not in done]:
            why = f"needs {', '.join(waiting)}, which did not finish"
        if why is not None:
            print(f"skipped {job.name}: {why}", flush=True)
            self._record(job, argv, "skipped", why, 0.0)
            return "skipped"
        print(f"== {job.name}: {' '.join(argv)}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", "from bench.cli import main; main()",
                                 *argv[1:]])  # fmt: skip
        try:
            rc = proc.wait()
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (``interrupt_on_sigterm``)
            stop(proc)
            self._record(job, argv, "interrupted", "stopped by Ctrl-C or SIGTERM",
                         time.monotonic() - t0)  # fmt: skip
            raise
        status: Status = "ran" if rc == 0 else "failed"
        self._record(job, argv, status, None if rc == 0 else f"exit status {rc}",
                     time.monotonic() - t0)  # fmt: skip
        print(f"   {job.name}: {status} in {time.monotonic() - t0:.0f} s", flush=True)
        return status

    def _record(self, job: Job, argv: list[str], status: Status, why: str | None,
                wall: float) -> None:  # fmt: skip
        self.records = [r for r in self.records if r["name"] != job.name]
        self.records.append(JobRecord(name=job.name, command=" ".join(argv), status=status,
                                      why=why, wall_s=round(wall, 1)))  # fmt: skip

    def doc(self) -> JobsDoc:
        return JobsDoc(
            schema_version=JOBS_VERSION,
            kind="jobs",
            profile=self.profile,
            started_at=self.started_at,
            wall_s=round(time.time() - self.started_at, 1),
            jobs=self.records,
        )

    def write(self) -> Path:
        """Merge into an existing jobs.json, so deeper profiles add to a make bench run."""
        path = self.out / "jobs.json"
        self.out.mkdir(parents=True, exist_ok=True)
        doc = self.doc()
        if path.exists():
            old = read(path)
            if old is not None:
                mine = {r["name"] for r in doc["jobs"]}
                doc["jobs"] = [r for r in old["jobs"] if r["name"] not in mine] + doc["jobs"]
                if old["profile"] != self.profile:
                    doc["profile"] = f"{old['profile']}+{self.profile}"
                    doc["wall_s"] = old["wall_s"]
                    doc["started_at"] = old["started_at"]
        path.write_text(json.dumps(doc, indent=1) + "\n")
        return path


def read(path: Path) -> JobsDoc | None:
    """A profile's jobs.json, or None when it is not one."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("kind") != "jobs" or "jobs" not in doc:
        return None
    return doc  # type: ignore[return-value]


def jobs_of(paths: list[Path]) -> list[JobRecord]:
    """The jobs.json records of the profiles these run paths belong to (their parent dirs)."""
    seen: dict[Path, JobsDoc] = {}
    for p in paths:
        run = p if p.is_dir() else p.parent
        for d in (run, run.parent):
            if d not in seen and (doc := read(d / "jobs.json")) is not None:
                seen[d] = doc
    return [r for doc in seen.values() for r in doc["jobs"]]


def runs_in(out: Path, names: list[str] | None = None) -> list[Path]:
    """Every job's results.json under ``out``, in profile order (deeper jobs included)."""
    order = [j.name for j in PROFILES["full"]]
    found = [p.parent for p in out.glob("*/results.json")]
    found.sort(key=lambda d: (order.index(d.name) if d.name in order else len(order), d.name))
    return [d for d in found if names is None or d.name in names]


STOP_GRACE_S = 30.0  # a job stopping its servers and writing what it measured


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a running job as Ctrl-C would (SIGINT: it stops its servers and load processes and
    keeps partial results), then kill it if it has not exited within ``STOP_GRACE_S``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def interrupt_on_sigterm() -> None:
    """SIGTERM (kill, a CI timeout) stops a profile as Ctrl-C does: the running job is stopped
    too, never left running alone."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)
