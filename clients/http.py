"""A small HTTP/1.1 client on asyncio protocols, parsed by httptools (llhttp).

Why not aiohttp here: the load generator holds tens of thousands of these connections and pays
for every token it parses, so the path from ``data_received`` to a token is kept to a parser
callback, with no task or coroutine switch per chunk. aiohttp stays the independent reference
client in the tests.

- ``open_connection`` binds a source address before connecting when asked (127.0.0.x spreads
  ephemeral ports), with IP_BIND_ADDRESS_NO_PORT so a port is picked per destination.
- ``HttpConnection`` sends requests and parses responses: head, then body chunks to
  ``body_sink`` (set before sending: llhttp may hand over head and body in one call) or into
  ``body_parts``; keep-alive for the next request; after a 101 answer every further byte goes
  to ``raw_sink`` (the WebSocket frames).
- ``HttpConnection.watch_silence`` aborts a connection on which nothing arrived for too long.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httptools

from clients.base import Reader, Retry, StreamError, within

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def split_url(url: str) -> tuple[str, int, str]:
    """``http://host:port/prefix`` -> (host, port, prefix without trailing slash)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in _schemes() or not parts.hostname:
        raise ValueError(f"not an http:// URL: {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


def _schemes() -> set[str]:
    """URL schemes a transport's server may be named by (and ``ws``, for WebSocket URLs)."""
    import transports

    return {t.scheme for t in transports.all_transports()} | {"ws"}


class HttpConnection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.last_rx = time.monotonic()
        self.bytes_received = 0
        self.lost: asyncio.Future[None] = loop.create_future()
        self.silent = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body_sink: Callable[[bytes], None] | None = None
        self.raw_sink: Callable[[bytes], None] | None = None
        self.upgraded = False
        self.body_parts: list[bytes] = []
        self._head: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self.tap: Any = None  # clients.fast: the compiled protocol reading this connection
        self._silence: asyncio.TimerHandle | None = None  # watch_silence's next check

    def go_fast(self, tap: Any, on_other: Callable[..., Any], on_error: Callable[[str], Any],
                accept: Callable[[], bool]) -> None:  # fmt: skip
        """Hand the next response to ``tap`` (call right after ``send``). Once the head is in,
        ``accept()`` says whether the body stays on the compiled path; if not, this protocol
        takes the connection back and gets the rest of the bytes."""

        def on_head(head: bytes) -> bool:
            self.feed(head)
            if accept():
                return True
            if self.transport is not None:
                self.transport.set_protocol(self)
            return False

        tap.start(self, on_head, on_other, on_error)
        self.tap = tap
        assert self.transport is not None
        self.transport.set_protocol(tap)
        tap.attach(self.transport)  # the process's pump reads it, if it has one

    def rx_state(self) -> tuple[float, int]:
        """(time.monotonic() of the last byte, bytes received), whoever read them."""
        if self.tap is None:
            return self.last_rx, self.bytes_received
        return max(self.last_rx, self.tap.last_rx), self.bytes_received + self.tap.bytes_received

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.bytes_received += len(data)
        if self.upgraded:
            self.raw_sink(data)  # type: ignore[misc]
            return
        self.feed(data)

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgraded = self.raw_sink is not None
            rest = data[exc.args[0] :]
            if rest and self.raw_sink is not None:
                self.raw_sink(rest)
        except httptools.HttpParserError as exc:
            self.protocol_error(str(exc))

    def protocol_error(self, why: str) -> None:
        """The response broke HTTP (here or in the compiled path): fail the request, drop it."""
        self._fail(Retry(f"bad HTTP response: {why}"))
        self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "silent connection" if self.silent else "connection lost"
        self._fail(Retry(reason))
        if not self.lost.done():
            self.lost.set_result(None)
        if self._silence is not None:  # its timer would hold the connection for seconds more
            self._silence.cancel()
            self._silence = None
        # The parser calls back into this protocol, the transport holds it, a reader's sinks are
        # closures over it: cycles, which a load process's frozen collector never frees
        # (servers/process/gcpolicy.py). Nothing reads them once the connection is lost.
        self.parser = self.transport = self.body_sink = self.raw_sink = None  # type: ignore[assignment]

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.body_sink is not None:
            self.body_sink(body)
        else:
            self.body_parts.append(body)

    def on_message_complete(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _fail(self, exc: Exception) -> None:
        for fut in (self._head, self._done):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
                fut.exception()  # whoever awaits it still gets it; nobody may, after a cancel

    # requests
    def send(
        self, method: str, target: str, host: str, headers: dict[str, str], body: bytes = b""
    ) -> None:
        if self.transport is None or self.transport.is_closing():
            raise Retry("connection lost")
        self.expect()
        self.transport.write(request_bytes(method, target, host, headers, body))

    def expect(self) -> None:
        """Wait for a response to a request already sent (``send`` without the writing)."""
        self.status, self.headers, self.body_parts = 0, {}, []
        self._head, self._done = self.loop.create_future(), self.loop.create_future()

    async def head(self, timeout: float) -> int:
        assert self._head is not None
        try:
            await within(asyncio.shield(self._head), timeout)
        except TimeoutError:
            self.abort()
            raise Retry("no response head in time") from None
        return self.status

    async def response(self) -> tuple[int, bytes]:
        """Status and whole body of the request just sent (no timer: use ``watch_silence``)."""
        assert self._done is not None
        await self._done
        return self.status, b"".join(self.body_parts)

    async def body(self) -> bytes:
        assert self._done is not None
        await self._done
        return b"".join(self.body_parts)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def watch_silence(self, seconds: float) -> None:
        """Abort if nothing arrives for ``seconds`` (checked on one timer, re-armed lazily)."""

        self._silence = self.loop.call_later(seconds, self._check_silence, seconds)

    def _check_silence(self, seconds: float) -> None:
        # a method, not a closure that re-arms itself: that would be a reference cycle
        self._silence = None
        if self.lost.done():
            return
        idle = time.monotonic() - self.rx_state()[0]
        if idle >= seconds:
            self.silent = True
            self.abort()
        else:
            self._silence = self.loop.call_later(seconds - idle, self._check_silence, seconds)


def request_bytes(
    method: str, target: str, host: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    """An HTTP/1.1 request as ``HttpConnection.send`` writes it (RFC 9112 section 3)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_LINGER_0 = struct.pack("ii", 1, 0)


async def open_connection(
    host: str,
    port: int,
    timeout: float,
    local_addr: str | None = None,
    rst_close: bool = False,
    protocol: Callable[[asyncio.AbstractEventLoop], Any] = HttpConnection,
) -> Any:
    """Connect (from ``local_addr`` if given); connection failures raise ``Retry``. The
    connection's protocol is ``protocol(loop)``, an ``HttpConnection`` unless asked otherwise.

    ``rst_close``: SO_LINGER 0, so closing sends RST and leaves no TIME_WAIT (load generator).
    """
    loop = asyncio.get_running_loop()
    sock = None
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setblocking(False)
        if rst_close:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
        if local_addr:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((local_addr, 0))
        await within(loop.sock_connect(sock, (host, port)), timeout)
        _, conn = await loop.create_connection(lambda: protocol(loop), sock=sock)
    except TimeoutError:
        if sock is not None:
            sock.close()
        raise Retry("connect timeout") from None
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise Retry(f"connect failed: {exc.strerror or exc}") from None
    return conn


async def connect(reader: Reader, one_request: bool = True) -> tuple[HttpConnection, str, str]:
    """A new connection for one attempt of ``reader``: (connection, "host:port", path prefix).

    ``one_request``: the attempt is one request (SSE, WebSocket); a poller counts its own.
    """
    opts = reader.options
    host, port, prefix = split_url(reader.url)
    conn = await open_connection(host, port, opts.connect_timeout, opts.local_addr, opts.rst_close)
    if one_request:
        reader.stats.requests += 1
    return conn, f"{host}:{port}", prefix


def error_from(status: int, body: bytes) -> StreamError:
    """A 4xx answer as ``StreamError`` with the server's JSON ``error`` and ``field``."""
    try:
        doc = json.loads(body)
        return StreamError(status, str(doc.get("error", "")), doc.get("field"))
    except (ValueError, AttributeError):
        # not ours (a load balancer's HTML page, say): its text on one line
        text = re.sub(r"<[^>]*>", " ", body[:400].decode("utf-8", "replace"))
        return StreamError(status, " ".join(text.split())[:200] or "no body")


async def create_stream(
    url: str,
    tokens: int | None = None,
    rate: float | None = None,
    prompt: str | None = None,
    timeout: float = 10.0,
    local_addr: str | None = None,
    rst_close: bool = False,
    session: Any = None,
) -> dict[str, Any]:
    """The prompt POST: ``{"id", "tokens", "rate", "created_ns"}``; 4xx raises StreamError.
    ``session`` is unused: every HTTP request opens its own connection."""
    host, port, prefix = split_url(url)
    body: dict[str, Any] = {}
    for key, value in (("tokens", tokens), ("rate", rate), ("prompt", prompt)):
        if value is not None:
            body[key] = value
    conn = await open_connection(host, port, timeout, local_addr, rst_close)
    try:
        headers = {"Content-Type": "application/json", "Connection": "close"}
        conn.send(
            "POST", f"{prefix}/v1/streams", f"{host}:{port}", headers, json.dumps(body).encode()
        )
        status = await conn.head(timeout)
        data = await within(conn.body(), timeout)
    finally:
        conn.abort()
    if status != 201:
        raise error_from(status, data)
    doc = json.loads(data)
    if cookie := conn.headers.get("set-cookie"):  # a sticky load balancer's (AWSALB=...)
        doc["cookie"] = cookie.split(";", 1)[0]
    return doc


async def stop_stream(
    url: str,
    stream_id: str,
    cookie: str | None = None,
    timeout: float = 10.0,
    local_addr: str | None = None,
) -> None:
    """The stop button over HTTP: ``POST /v1/streams/{id}/stop`` (docs/protocol.md, "Stop"),
    a request of its own as a browser's ``fetch`` beside an EventSource; 4xx raises
    StreamError, 5xx Retry. ``cookie``: the sticky load balancer's, sent back."""
    host, port, prefix = split_url(url)
    conn = await open_connection(host, port, timeout, local_addr)
    try:
        headers = {"Connection": "close", **({"Cookie": cookie} if cookie else {})}
        sid = quote(stream_id, safe="")
        conn.send("POST", f"{prefix}/v1/streams/{sid}/stop", f"{host}:{port}", headers, b"")
        status = await conn.head(timeout)
        data = await within(conn.body(), timeout)
    finally:
        conn.abort()
    if 400 <= status < 500:
        raise error_from(status, data)
    if status != 202:
        raise Retry(f"stop: HTTP {status}")


async def time_exchange(
    url: str, n: int, clock: Callable[[], int], timeout: float = 5.0, local_addr: str | None = None
) -> list[tuple[int, int, int]]:
    """``n`` reads of ``GET /v1/time`` on one keep-alive connection (docs/protocol.md, "Time"):
    (sent, server's ``t_ns``, answered) per exchange, ``clock`` giving the local times."""
    host, port, prefix = split_url(url)
    conn = await open_connection(host, port, timeout, local_addr)
    out = []
    try:
        for _ in range(n):
            a = clock()
            conn.send("GET", f"{prefix}/v1/time", f"{host}:{port}", {})
            status = await conn.head(timeout)
            data = await within(conn.body(), timeout)
            b = clock()
            if status != 200:
                raise error_from(status, data)
            out.append((a, int(json.loads(data)["t_ns"]), b))
    finally:
        conn.abort()
    return out
