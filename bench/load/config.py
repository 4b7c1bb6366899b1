"""What a bench run is asked to do: its steps and settings, parsed from the command line."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.results.queries import Variant

if TYPE_CHECKING:
    from bench.deploy import Deploy

PER_LOADER = 12_000  # users per load process (one socket each; the hard limit is 20,000 files)
PER_WORKER = 12_000  # connections per server worker, for the same reason


@dataclass
class Step:
    clients: int
    ramp_s: float  # adaptive: the budget to get everyone connected
    hold_s: float
    adaptive: bool = False  # ramp at the pace the server accepts (bench.load.ramp)


@dataclass
class BenchConfig:
    transports: list[str]
    steps: list[Step]
    rate: float = 40.0
    tokens: int = 400
    think: float = 5.0
    workers: int | None = None
    loaders: int | None = None
    target: str | None = None
    cluster: str | None = None  # a Ray cluster's address: load processes run there (cluster.py)
    out: Path = Path("results/run")
    find_knee: bool = False
    slo_ms: float = 250.0
    # A user whose prompt waits in the server's queue is not held, though each token then comes
    # on time against its due time (which starts when the stream is created): p99 time to first
    # token, from just before the prompt, within this.
    ttft_slo_ms: float = 1000.0
    min_goodput: float = 0.99
    heartbeat: float = 15.0
    poll_timeout: float = 25.0
    pin: bool = True
    warmup_s: float = 1.0  # after the server said ready, before its baseline memory is read
    fast_path: bool = True  # load processes use clients/_fastpath.c where the transport has one
    compiled_loop: bool = True  # ...and wait on its sockets in clients/_pump.c, not uvloop
    stationary: bool = False  # first answers of random length: churn at its steady pace at once
    doze_us: int = 1000  # load processes read in batches (Loader.doze), where the transport allows
    knee_refine: int = 0  # --find-knee: the bracket's target width, ladder factor ** 0.5**N
    cooldown_s: float = 0.0  # after the settle, seconds before the window opens
    settle_s: float = 120.0  # at most this long after a ramp, wait for every user to connect
    windows: int = 3  # a step's measured window, as this many sub-windows (their spread)
    knee_repeats: int = 1  # --find-knee: run the knee and the first break this often in all
    knee_budget_s: float = 0.0  # --find-knee: seconds of steps over all searches (0: no limit)
    quiet: bool = False
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)  # per-transport --rate (--rate-from)
    stacks: list[str] = field(default_factory=lambda: ["stock"])  # --stack
    gcs: list[str] = field(default_factory=lambda: ["stock"])  # --gc
    flushes: list[float] = field(default_factory=lambda: [0.0])  # --flush-ms
    deploy: Deploy | None = None  # --lb / --source llm: the topology the load goes through

    def variants(self) -> list[Variant]:
        return [Variant(s, g, f) for s in self.stacks for g in self.gcs for f in self.flushes]

    def rate_for(self, transport: str) -> float:
        return self.rates.get(transport, self.rate)

    @property
    def max_clients(self) -> int:
        return max(s.clients for s in self.steps)

    def loaders_for(self) -> int:
        return self.loaders or max(1, math.ceil(self.max_clients / PER_LOADER))

    def workers_for(self) -> int:
        return self.workers or max(1, math.ceil(self.max_clients / PER_WORKER))


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``2m``, ``1.5m`` -> seconds."""
    t = text.strip().lower()
    scale = 60.0 if t.endswith("m") else 1.0
    t = t.rstrip("sm")
    try:
        value = float(t) * scale
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (try 30s or 2m)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a duration: {text!r}")
    return value


def parse_steps(ramp: str, clients: int, hold: float) -> list[Step]:
    """``--ramp``: a duration (one step to ``clients``) or stages ``N:DUR,N:DUR,...``.

    In a stage the users ramp to N over a third of DUR (at most 30 s), and the rest of DUR is
    the measured window; ``--hold`` seconds are added to the last stage's window.
    """
    if ":" not in ramp:
        return [Step(clients, parse_duration(ramp), hold)]
    steps = []
    for part in ramp.split(","):
        n, _, dur = part.partition(":")
        try:
            count = int(n.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"not a client count: {n!r} in --ramp {ramp!r}") from None
        if count < 1:
            raise ValueError(f"client counts must be >= 1 in --ramp {ramp!r}")
        seconds = parse_duration(dur)
        ramp_s = min(seconds / 3, 30.0)
        steps.append(Step(count, ramp_s, seconds - ramp_s))
    steps[-1].hold_s += hold
    return steps


def config_doc(cfg: BenchConfig) -> dict[str, Any]:
    doc = dataclasses.asdict(cfg)
    doc["out"] = str(cfg.out)
    if doc.get("deploy"):  # the options typed are for the command's own checks, not a setting
        doc["deploy"].pop("given", None)
    return doc
