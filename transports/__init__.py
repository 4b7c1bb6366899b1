"""The transport registry: one record per transport, defined once (wrk's transport vtable).

Rules of this module:
- It imports nothing heavy. A record names its server and client code by module path, loaded on
  first use, so the CLI, the supervisor and a load process pay only for the transport they run.
- Everything that differs between transports outside their own modules is a field here. Code
  elsewhere asks the record (``get(name).scheme``), and never compares a transport's name.
- Adding a transport is one ``register(Transport(...))`` plus its server module (the
  ``servers.base.TransportServer`` interface) and its reader class (``clients.base.Reader``);
  see docs/transports.md. Its stacks beyond ``stock`` are modules named in ``stack_servers``,
  under the names of the stack registry (transports/stacks.py). Modules named in
  ``TOKENBENCH_PLUGINS`` (comma-separated) are imported on first access, so a transport defined
  outside this repository reaches every process: server workers and load processes inherit the
  environment.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from transports import stacks as stack_registry

if TYPE_CHECKING:
    from clients.base import Reader
    from servers.base import TransportServer


GRANIAN = "servers.http.granian"  # runs a stock module's ``app(ctx)`` on granian


@dataclass(frozen=True)
class Transport:
    name: str  # in the CLI, results.json, report rows
    label: str  # how reports name it
    color: str  # its colour in the charts
    server: str  # module providing servers.base.TransportServer (the stock stack)
    reader: str  # "module:Class", a clients.base.Reader subclass
    create: str = "clients.http:create_stream"  # the prompt POST, or its equivalent
    clock: str = "clients.http:time_exchange"  # reads the server's clock (docs/protocol.md)
    scheme: str = "http"  # URL scheme of its servers
    server_loop: str = "uvloop"  # "uvloop" or "asyncio" (what the server library supports)
    # False: the client cannot bind a source address (grpcio), so the server listens on several
    # loopback addresses and each load process dials its own, to spread ephemeral ports.
    binds_source: bool = True
    fast_path: str | None = None  # clients/_fastpath.c's parser for it: sse, ws, grpc, poll
    batched_reads: bool = True  # load processes may doze between loop turns (--doze-us)
    # The load generator's own client while the compiled path is on, if not ``reader`` and
    # ``create``: cheaper, on uvloop (so it may doze), held to the reference by parity tests.
    load_reader: str | None = None
    load_create: str | None = None
    resume: str = "?after="  # how its client resumes (what the report tells a team to build)
    watchdog: str = "heartbeats"  # what its client's silence watchdog listens for
    stop: str = "POST /v1/streams/{id}/stop"  # how its client presses stop (docs/protocol.md)
    # Its other stacks: stack name (transports/stacks.py) -> server module. A stack's module may
    # set ``LOOP = "uvloop"`` to override ``server_loop``.
    stack_servers: Mapping[str, str] = field(default_factory=dict)
    # Browser clients that read it (web/src/clients.js; the first is the one as it comes), and
    # whether a browser reaches it through a web front on a second port (``web_port``).
    browser: tuple[str, ...] = ()
    web_front: bool = False

    def __post_init__(self) -> None:
        for stack in self.stack_servers:
            stack_registry.get(stack)  # ValueError naming the registry's stacks
        if stack_registry.STOCK in self.stack_servers:
            raise ValueError(f"{self.name}: its stock server is ``server``")

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def http(self) -> bool:
        """Plain HTTP/1.1 underneath: raw HTTP requests, load-balancer 503s and the like apply."""
        return self.scheme == "http"

    @property
    def stacks(self) -> tuple[str, ...]:
        """Its server stacks, in the registry's order: ``stock``, then those it names."""
        return tuple(s for s in stack_registry.names()
                     if s == stack_registry.STOCK or s in self.stack_servers)  # fmt: skip

    def server_module(self, stack: str = stack_registry.STOCK) -> TransportServer:
        if stack not in self.stacks:
            raise ValueError(f"{self.name} has no {stack!r} stack: {', '.join(self.stacks)}")
        module = self.server if stack == stack_registry.STOCK else self.stack_servers[stack]
        return importlib.import_module(module)  # type: ignore[return-value]

    def reader_class(self) -> type[Reader]:
        return _attr(self.reader)

    def create_fn(self) -> Callable[..., Any]:
        return _attr(self.create)

    def load_client(self, fast: bool) -> tuple[type[Reader], Callable[..., Any], bool]:
        """(reader class, create function, may doze) of a load process: its own client when
        ``fast`` (the compiled path reads) and the record names one, else the reference."""
        if fast and self.load_reader is not None:
            return _attr(self.load_reader), _attr(self.load_create or self.create), True
        return self.reader_class(), self.create_fn(), self.batched_reads

    def clock_fn(self) -> Callable[..., Any]:
        return _attr(self.clock)

    def url(self, host: str, port: int) -> str:
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{port}"


def _attr(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


_REGISTRY: dict[str, Transport] = {}
_plugins_loaded = False


def register(transport: Transport) -> Transport:
    """Add a transport; a second record under the same name replaces the first."""
    _REGISTRY[transport.name] = transport
    return transport


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in filter(
        None, (m.strip() for m in os.environ.get("TOKENBENCH_PLUGINS", "").split(","))
    ):
        importlib.import_module(module)


def all_transports() -> tuple[Transport, ...]:
    _load_plugins()
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    return tuple(t.name for t in all_transports())


def get(name: str) -> Transport:
    """The record for ``name``; ``ValueError`` with the choices if there is none."""
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown transport {name!r}: one of {', '.join(names())}") from None


def select(spec: str) -> list[Transport]:
    """``--transport``: one name, a comma list, or ``all``."""
    if spec.strip() == "all":
        return list(all_transports())
    return [get(n.strip()) for n in spec.split(",") if n.strip()]


register(Transport(
    "sse", "SSE", "#1f77b4", "servers.sse.stock", "clients.sse:SSEReader", fast_path="sse",
    stack_servers={"lean": "servers.sse.lean", "granian": GRANIAN, "floor": "servers.sse.floor"},
    browser=("eventsource", "eventsource-hardened"),
    resume="Last-Event-ID", watchdog="named `ping` events: EventSource hides comments",
))  # fmt: skip
register(Transport(
    "ws", "WebSocket", "#ff7f0e", "servers.ws.stock", "clients.ws:WSReader", fast_path="ws",
    stack_servers={"lean": "servers.ws.lean", "floor": "servers.ws.floor"}, browser=("websocket",),
    # no granian stack: granian sends no WebSocket pings (emmett-framework/granian#613), and the
    # contract's keepalive is the protocol's ping (tests/test_resilience.py checks it)
    watchdog="protocol pings", stop='in-band `{"stop":true}`',
))  # fmt: skip
register(Transport(
    "grpc", "gRPC", "#2ca02c", "servers.grpc.stock", "clients.rpc:GrpcReader",
    create="clients.rpc:create_stream", clock="clients.rpc:time_exchange", scheme="grpc",
    server_loop="asyncio", browser=("grpc-web",), web_front=True,
    stack_servers={"lean": "servers.grpc.lean", "floor": "servers.grpc.floor"},
    binds_source=False, batched_reads=False,  # grpc.aio stalls when its loop sleeps
    # grpcio's client costs as much per token as the server: load processes read with h2 and C
    fast_path="grpc", load_reader="clients.h2grpc:H2GrpcReader",
    load_create="clients.h2grpc:create_stream",
    resume="StreamRequest.after", watchdog="HTTP/2 keepalive pings",
    stop="StopStream on its channel",
))  # fmt: skip
register(Transport(
    "poll", "long polling", "#d62728", "servers.poll.stock", "clients.poll:PollReader",
    stack_servers={"lean": "servers.poll.lean", "granian": GRANIAN, "floor": "servers.poll.floor"},
    browser=("fetch",),
    fast_path="poll",
    watchdog="the poll timeout",
))  # fmt: skip
