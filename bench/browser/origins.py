"""What a browser connects to: one transport's server, reached directly, through HAProxy with TLS
and HTTP/2, through the fault proxy, or through HAProxy while the server restarts.

Rules of this module:
- An ``Origin`` is one scheme://host:port that serves the pages and the streams
  (servers/http/web.py;
  gRPC's through its gRPC-Web front), so tabs are same-origin, as a product's are.
- ``h2``: HAProxy terminates TLS with ALPN ``h2,http/1.1`` (servers/topology/haproxy.py, ``cert``)
  with a
  self-signed certificate made at run time (``openssl``); the backend stays HTTP/1.1.
- ``close`` / ``blackhole``: the fault proxy (bench/faults/proxy.py) sits in front and cuts every
  connection accepted before the fault first fired that carries data ``fault_s`` seconds or more
  after it opened (a network that changed: an idle keep-alive connection a reconnect reuses is
  dead too); connections accepted later pass.
- ``lb-restart``: HAProxy (HTTP/1.1, health checks every second) in front of one backend, which
  is stopped ``fault_s`` seconds in and started again ``down_s`` later; in between HAProxy
  answers 503, as an ALB with no healthy target does.
- ``stop()`` ends every process started here.
- ``start()`` refuses at once when the browser bundle (web/dist) is not built.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import transports
from bench.faults.proxy import Fault, FaultProxy
from servers.base import ServerConfig
from servers.http import web
from servers.process.listen import reserve_port
from servers.process.supervisor import Supervisor
from servers.topology import haproxy

NETWORKS = ("1.1", "2")
FAULTS = ("none", "close", "blackhole", "lb-restart")


class OriginError(RuntimeError):
    """A part did not start; one line that says what to do."""


def self_signed(workdir: Path) -> Path:
    """A PEM (certificate, then key) for 127.0.0.1, valid one day, made now."""
    exe = shutil.which("openssl")
    if exe is None:
        raise OriginError("openssl is not installed: run `apt-get install -y openssl`")
    workdir.mkdir(parents=True, exist_ok=True)
    key, crt, pem = workdir / "tls.key", workdir / "tls.crt", workdir / "tls.pem"
    made = subprocess.run(
        [exe, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(crt), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, text=True,
    )  # fmt: skip
    if made.returncode != 0:
        raise OriginError(f"openssl could not make a certificate: {made.stderr.strip()[-200:]}")
    pem.write_text(crt.read_text() + key.read_text())
    return pem


@dataclass
class Origin:
    transport: str
    network: str = "1.1"
    fault: str = "none"
    fault_s: float = 2.0
    down_s: float = 6.0  # longer than HAProxy's own connect retries (3, a second apart)
    stack: str = "stock"
    heartbeat: float = 1.0  # SSE's named ping after 1 s idle; the hardened watchdog waits 3
    workdir: Path = field(default_factory=lambda: Path("/tmp"))
    url: str = ""
    server: Supervisor | None = None
    _lb: haproxy.HAProxy | None = None
    _proxy: FaultProxy | None = None
    _restart: asyncio.Task[None] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"--http: 1.1 or 2, not {self.network!r}")
        if self.fault not in FAULTS:
            raise ValueError(f"unknown browser fault {self.fault!r}: {', '.join(FAULTS)}")
        if self.fault != "none" and self.network != "1.1":
            raise ValueError("faults run over HTTP/1.1 (the proxy and the LB restart are plain)")

    async def start(self) -> str:
        if not web.built():  # every tab would wait out its timeout on a 404 page
            raise OriginError("web/dist/bench.html is missing: build the browser bundle with "
                              "`make web` (node and npm)")  # fmt: skip
        record = transports.get(self.transport)
        cfg = ServerConfig(self.transport, port=0, heartbeat=self.heartbeat, stack=self.stack,
                           web_port=0 if record.web_front else None)  # fmt: skip
        self.server = Supervisor(cfg)
        await asyncio.to_thread(self.server.start)
        backend = self.server.web_url
        if self.network == "2":
            self.url = await self._haproxy(backend, self_signed(self.workdir), "https")
        elif self.fault in ("close", "blackhole"):
            self.url = await self._fault_proxy(backend)
        elif self.fault == "lb-restart":
            self.url = await self._haproxy(backend, None, "http")
        else:
            self.url = backend
        return self.url

    async def _haproxy(self, backend: str, cert: Path | None, scheme: str) -> str:
        host, port = backend.rsplit("//", 1)[1].rsplit(":", 1)
        placeholder = reserve_port("127.0.0.1", 0)
        front = placeholder.getsockname()[1]
        placeholder.close()
        cfg = haproxy.LbConfig(check_inter_s=1.0, cert=str(cert) if cert else None)
        text = haproxy.render(cfg, ["127.0.0.1"], front, [(host, int(port))], http_check=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lb = haproxy.HAProxy(cfg, self.workdir / f"haproxy-{self.transport}.cfg")
        try:
            await asyncio.to_thread(self._lb.start, text, front)
        except haproxy.LbError as exc:
            raise OriginError(str(exc)) from None
        return f"{scheme}://127.0.0.1:{front}"

    async def _fault_proxy(self, backend: str) -> str:
        host, port = backend.rsplit("//", 1)[1].rsplit(":", 1)
        fault = Fault(self.fault, after_s=self.fault_s)
        proxy: FaultProxy

        def plan(n: int) -> Fault | None:
            return None if proxy.fired else fault  # once: the reconnect passes

        proxy = FaultProxy((host, int(port)), plan)
        self._proxy = proxy
        await proxy.start()
        return f"http://127.0.0.1:{proxy.port}"

    def begin(self) -> None:
        """The tabs are open: start the clock of a server restart, if this origin has one."""
        if self.fault == "lb-restart":
            self._restart = asyncio.ensure_future(self._restart_server())

    async def _restart_server(self) -> None:
        assert self.server is not None
        await asyncio.sleep(self.fault_s)
        self.events.append({"kind": "server-stop", "at": asyncio.get_running_loop().time()})
        await asyncio.to_thread(self.server.stop)
        await asyncio.sleep(self.down_s)
        await asyncio.to_thread(self.server.start)
        self.events.append({"kind": "server-start", "at": asyncio.get_running_loop().time()})

    @property
    def restarted(self) -> bool:
        return any(e["kind"] == "server-stop" for e in self.events)

    @property
    def fired(self) -> int:
        """Connections the fault cut (proxy faults), or 1 once the server was stopped."""
        if self._proxy is not None:
            return len(self._proxy.fired)
        return sum(1 for e in self.events if e["kind"] == "server-stop")

    def server_pids(self) -> list[int]:
        return self.server.pids if self.server is not None else []

    async def stop(self) -> None:
        if self._restart is not None:
            self._restart.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # stopping regardless
                await self._restart
        if self._proxy is not None:
            await self._proxy.stop()
        if self._lb is not None:
            await asyncio.to_thread(self._lb.stop)
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
