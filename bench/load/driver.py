"""One transport's run in motion: reading its load processes' reports, sampling its server.

``Driver.pump`` reads reports for a while (into a ``Window`` when measuring) and samples the
server from /proc every second, printing one progress line per second unless quiet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.load import procstat
from bench.load.clock import ClockDoc
from bench.load.config import BenchConfig
from bench.load.fleet import LoadFleet
from bench.load.messages import LoaderReport
from bench.load.window import Window
from bench.results.hist import Histogram
from servers.process.supervisor import Supervisor
from servers.topology.topology import Topology

ProgressFn = Callable[[str], None]


@dataclass
class Driver:
    """One transport's run in motion: its load processes, its server (if ours), the progress."""

    transport: str
    cfg: BenchConfig
    fleet: LoadFleet
    sup: Supervisor | Topology | None
    say: ProgressFn
    started: float = field(default_factory=time.monotonic)
    last_cpu: dict[int, float] = field(default_factory=dict)  # loader -> last cumulative CPU
    last_arrived: dict[int, int] = field(default_factory=dict)  # loader -> users connected
    last_sys: dict[int, float] = field(default_factory=dict)  # loader -> last system CPU
    clocks: dict[int, ClockDoc] = field(default_factory=dict)  # loader -> its latest clock
    parts_base: dict[str, procstat.Sample] = field(default_factory=dict)  # before any load

    def note(self, r: LoaderReport) -> None:
        """What the run keeps from every report, measured or not."""
        self.last_cpu[r["loader"]] = r["cpu_s"]
        self.last_arrived[r["loader"]] = r.get("arrived", 0)
        self.last_sys[r["loader"]] = r.get("sys_s", 0.0)
        if "clock" in r:
            self.clocks[r["loader"]] = r["clock"]

    def arrived(self) -> int:
        """Users (over all loaders) whose first stream has connected, as last reported."""
        return sum(self.last_arrived.values())

    @staticmethod
    def sample_of(sup: Supervisor | Topology | None) -> procstat.Sample | None:
        return procstat.sample(sup.pids) if sup is not None else None

    def server_sample(self) -> procstat.Sample | None:
        return self.sample_of(self.sup)

    def server_counts(self) -> dict[str, int] | None:
        return self.sup.counts() if self.sup is not None else None

    def parts_sample(self) -> dict[str, procstat.Sample]:
        """The load balancer, Redis and the producer, each on its own (``bench --lb``)."""
        if self.sup is None:
            return {}
        return {name: procstat.sample(pids) for name, pids in self.sup.parts().items()}

    def pump(self, seconds: float, step: int, *into: Window) -> tuple[int, int]:
        """Read reports for ``seconds`` (into each window given, if measuring); sample the
        server each second. Returns the peak server RSS and open files seen."""
        fleet, cfg = self.fleet, self.cfg
        end = time.monotonic() + seconds
        rss_max = files_max = 0
        prev = self.server_sample()
        tick = time.monotonic()
        second_tokens = 0
        second_hist = Histogram()
        while (left := end - time.monotonic()) > 0:
            for r in fleet.poll(min(left, 0.25)):
                for w in into:
                    w.add(r, self.last_cpu.get(r["loader"]), self.last_sys.get(r["loader"]))
                self.note(r)
                second_tokens += r["tokens"]
                second_hist.merge(Histogram.from_json(r["latency"]))
            if fleet.dead():
                return rss_max, files_max
            now = time.monotonic()
            if now - tick < 1.0:
                continue
            cur = self.server_sample()
            if cur is not None:
                rss_max, files_max = max(rss_max, cur.rss_bytes), max(files_max, cur.open_files)
            if not cfg.quiet:
                counts = self.server_counts()
                cpu = (cur.cpu_s - prev.cpu_s) / (now - tick) if cur and prev else 0.0
                conns = counts["connections_open"] if counts else "-"
                self.say(
                    f"  {now - self.started:6.0f}s {self.transport:<4} "
                    f"step {step + 1} {'measure' if into else 'ramp   '} "
                    f"conns {conns:>6} tok/s {second_tokens / (now - tick):>9,.0f} "
                    f"p99 {second_hist.percentile(99) / 1000:>8.1f} ms srv cpu {cpu:>4.0%} "
                    f"rss {(cur.rss_bytes if cur else 0) / 2**20:>6.0f} MiB"
                )
            prev, tick, second_tokens, second_hist = cur, now, 0, Histogram()
        if rss_max == 0 and (cur := self.server_sample()) is not None:
            rss_max, files_max = cur.rss_bytes, cur.open_files
        return rss_max, files_max
