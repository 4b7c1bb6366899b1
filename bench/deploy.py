"""The deployment options ``serve``, ``bench`` and ``faults`` share: a load balancer, several
backends, an LLM-shaped source and its replay log (servers/topology/topology.py; docs/topology.md).

The options are declared once here; ``@options()`` adds them to a command's signature and hands
the command one ``deploy: Deploy`` (``Deploy.from_options``), or fails in one line.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from bench.cliapp import fail
from servers.base import ServerConfig
from servers.tokens.llm import LlmShape
from servers.topology.haproxy import LbConfig
from servers.topology.topology import TopologyConfig

Lb = Annotated[
    str | None,
    typer.Option("--lb", help="A load balancer in front of the backends: haproxy or nginx."),
]
LbProfile = Annotated[
    str, typer.Option(help="nginx's configuration: documented (what the docs ask for) or "
                      "defaults (proxy_pass alone; servers/topology/nginx.py).")
]  # fmt: skip
Backends = Annotated[int, typer.Option(help="Backend servers, each on its own port (with --lb).")]
Sticky = Annotated[
    bool, typer.Option(help="Cookie stickiness (the ALB's AWSALB duration cookie); off as on ALB.")
]
Balance = Annotated[str, typer.Option(help="roundrobin (the ALB's default) or leastconn.")]
LbProcesses = Annotated[
    int, typer.Option(help="HAProxy processes sharing the port (each carries up to 9,000).")
]
LbIdle = Annotated[float, typer.Option(help="The LB's idle timeout, seconds (the ALB's: 60).")]
LbNoDelay = Annotated[
    bool, typer.Option(help="option http-no-delay: each chunk forwarded at once, as by an ALB "
                       "(off: HAProxy's default, which may hold a chunk ~200 ms).")
]  # fmt: skip
LbCheck = Annotated[
    float, typer.Option(help="Health check interval, seconds (rise 2, fall 2; the ALB's min: 5).")
]
Source = Annotated[
    str, typer.Option(help="derive (any process derives any stream) or llm (one producer).")
]
Replay = Annotated[str, typer.Option(help="With llm: pod (each backend's memory) or redis.")]
RedisUrl = Annotated[
    str | None, typer.Option("--redis", help="A running Redis for --replay redis (else started).")
]
Ttft = Annotated[str, typer.Option(help="With llm: time to first token, MIN-MAX seconds.")]
Jitter = Annotated[float, typer.Option(help="With llm: each gap is 1/rate times 1 +- this.")]
PauseEvery = Annotated[int, typer.Option(help="With llm: a pause before every Nth token (0: no).")]
PauseS = Annotated[float, typer.Option(help="With llm: each pause, seconds (a tool call).")]


@dataclass(frozen=True)
class Deploy:
    source: str = "derive"
    replay: str = "pod"
    llm: LlmShape = dataclasses.field(default_factory=LlmShape)
    topology: TopologyConfig | None = None  # None: one plain server (a Supervisor)
    # The command's parameters set on its command line (its own too), for its own checks.
    given: frozenset[str] = frozenset()

    @classmethod
    def from_options(
        cls, lb: str | None, backends: int, sticky: bool, balance: str, lb_processes: int,
        lb_idle_timeout: float, lb_check: float, source: str, replay: str, redis: str | None,
        ttft: str, jitter: float, pause_every: int, pause_s: float, lb_no_delay: bool = True,
        lb_profile: str = "documented", given: frozenset[str] = frozenset(),
    ) -> Deploy:  # fmt: skip
        """The settings, or ``ValueError`` with a one-line reason. ``given``: the options set on
        the command line; one that would do nothing in this combination is refused."""
        if lb not in (None, "haproxy", "nginx"):
            raise ValueError(f"--lb: haproxy or nginx, not {lb!r}")
        if lb_profile not in ("defaults", "documented"):
            raise ValueError(f"--lb-profile: defaults or documented, not {lb_profile!r}")
        if why := _not_nginx(given, lb, sticky):
            raise ValueError(why)
        if source not in ("derive", "llm"):
            raise ValueError(f"--source: derive or llm, not {source!r}")
        if replay not in ("pod", "redis"):
            raise ValueError(f"--replay: pod or redis, not {replay!r}")
        if why := _idle(given, lb, source, replay, pause_every, pause_s):
            raise ValueError(why)
        if redis is not None and not redis.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"--redis must be a redis:// URL, not {redis!r}")
        low, sep, high = ttft.partition("-")
        try:
            ttft_min, ttft_max = float(low), float(high if sep else low)
        except ValueError:
            raise ValueError(f"--ttft: MIN-MAX seconds, like 0.2-2, not {ttft!r}") from None
        shape = LlmShape(ttft_min, ttft_max, jitter, pause_every, pause_s)
        if lb is None and backends != 1:
            raise ValueError("--backends needs --lb haproxy or nginx in front of them")
        if lb is None and sticky:
            raise ValueError("--sticky needs --lb haproxy")
        lb_cfg = (
            LbConfig(balance, sticky, lb_idle_timeout, lb_check, lb_processes,
                     no_delay=lb_no_delay, kind=lb, profile=lb_profile) if lb else None
        )  # fmt: skip
        if lb_cfg is None and source == "derive":
            return cls(source, replay, shape, None, given)
        return cls(source, replay, shape, TopologyConfig(backends, lb_cfg, redis), given)

    def server(self, cfg: ServerConfig) -> ServerConfig:
        """``cfg`` with this deployment's source (the topology fills in the addresses)."""
        if self.source == "derive":
            return cfg
        return dataclasses.replace(cfg, source=self.source, replay=self.replay, llm=self.llm)

    def describe(self) -> dict[str, object]:
        return {
            "source": self.source,
            "replay": self.replay if self.source == "llm" else None,
            "llm": dataclasses.asdict(self.llm) if self.source == "llm" else None,
            "topology": self.topology.describe() if self.topology else None,
        }


# Options that act only with --source llm, and only with --lb (refused without: _idle).
_NEEDS_LLM = ("replay", "redis", "ttft", "jitter", "pause_every", "pause_s")
_NEEDS_LB = ("balance", "lb_processes", "lb_idle_timeout", "lb_check", "lb_no_delay")
# What nginx open source has no setting for (servers/topology/nginx.py), and why, by parameter.
_NOT_NGINX = {
    "sticky": "--sticky: nginx open source has no cookie stickiness (use --lb haproxy)",
    "lb_check": "--lb-check: nginx open source has no active health check, only passive "
    "(max_fails=1 fail_timeout=10s)",
    "lb_no_delay": "--no-lb-no-delay: nginx sets TCP_NODELAY itself (tcp_nodelay on)",
}


def _not_nginx(given: frozenset[str], lb: str | None, sticky: bool) -> str | None:
    """Why an option cannot apply to the load balancer chosen, or None."""
    if lb == "nginx":
        for name, why in _NOT_NGINX.items():
            if name in given and (name != "sticky" or sticky):
                return why
    elif "lb_profile" in given:
        return "--lb-profile does nothing without --lb nginx: add it, or drop the option"
    return None


def flag(name: str) -> str:
    """A parameter's option name: ``pause_s`` is ``--pause-s``."""
    return "--" + name.replace("_", "-")


def _idle(
    given: frozenset[str], lb: str | None, source: str, replay: str, pause_every: int,
    pause_s: float,
) -> str | None:  # fmt: skip
    """Why an option given on the command line would do nothing here, or None."""
    if source != "llm" and (idle := [n for n in _NEEDS_LLM if n in given]):
        return f"{flag(idle[0])} does nothing without --source llm: add it, or drop the option"
    if lb is None and (idle := [n for n in _NEEDS_LB if n in given]):
        name = "--no-lb-no-delay" if idle[0] == "lb_no_delay" else flag(idle[0])
        return f"{name} does nothing without --lb haproxy: add it, or drop the option"
    if "redis" in given and replay != "redis":
        return "--redis does nothing without --replay redis: add it, or drop the option"
    if "pause_every" in given and pause_every > 0 and pause_s <= 0:
        return "--pause-every needs --pause-s > 0 (a pause of 0 s is no pause)"
    if "pause_s" in given and pause_s > 0 and pause_every <= 0:
        return "--pause-s needs --pause-every N > 0 (which tokens it pauses before)"
    return None


# (name, declaration, default), in the order of Deploy.from_options and of --help
_OPTIONS: list[tuple[str, Any, Any]] = [
    ("lb", Lb, None), ("backends", Backends, 1), ("sticky", Sticky, False),
    ("balance", Balance, "roundrobin"), ("lb_processes", LbProcesses, 1),
    ("lb_idle_timeout", LbIdle, 60.0), ("lb_check", LbCheck, 5.0), ("source", Source, "derive"),
    ("replay", Replay, "pod"), ("redis", RedisUrl, None), ("ttft", Ttft, "0.2-2"),
    ("jitter", Jitter, 0.3), ("pause_every", PauseEvery, 0), ("pause_s", PauseS, 0.0),
    ("lb_no_delay", LbNoDelay, True), ("lb_profile", LbProfile, "documented"),
]  # fmt: skip


def _given(ctx: Any) -> frozenset[str]:
    """The parameters set on the command line (not left at their defaults)."""
    return frozenset(
        name for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    )  # fmt: skip


def options(lb_check: float = 5.0) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a typer command (below ``@app.command()``): it gains the deployment options
    and is called with ``deploy``. ``lb_check``: its health-check interval's default."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "deploy"]
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=declared,
                              default=lb_check if name == "lb_check" else default)
            for name, declared, default in _OPTIONS
        ]  # fmt: skip
        context = inspect.Parameter(
            "deploy_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context
        )

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            given = _given(kwargs.pop("deploy_ctx"))
            values = [kwargs.pop(name) for name, _, _ in _OPTIONS]
            try:
                deploy = Deploy.from_options(*values, given=given)
            except ValueError as exc:
                fail(str(exc))
            return fn(deploy=deploy, **kwargs)

        command.__signature__ = sig.replace(parameters=[*own, *extra, context])  # type: ignore[attr-defined]
        return command

    return decorate
