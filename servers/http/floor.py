"""The ``floor`` stacks' HTTP/1.1 server: ``asyncio.Protocol`` and httptools, no task per reader.

Rules of this module:
- A connection is a ``Conn`` (an ``asyncio.Protocol``) that parses HTTP/1.1 with httptools
  (RFC 9112) and answers its requests one at a time, in order (pipelined ones wait).
- A transport's hot route (``Route``) gets the parsed request and may take it: it answers
  with a ``wheel.Flow`` whose frames go out through ``Conn.write``, one write per tick. It
  declines what is not the common case (a bad id or cursor, a resume from the last token).
- The prompt POST has a hot route too (``Server.post``, servers/http/prompt.py).
- Everything else (stop, health, metrics, time, the OpenAPI document, every error, a prompt
  POST out of the common case) goes to the stock app, run as ASGI by a small bridge here, so
  the contract's answers are the stock ones by construction. One task per such request, none
  per stream.
- A response without a Content-Length is chunked (RFC 9112 §7.1), as uvicorn's, so a
  connection outlives its stream. A request the parser refuses gets 400 and a close.
- SIGTERM: stop accepting, end every flow (``Wheel.drain``: the client resumes elsewhere),
  answer what is in flight, exit after ``grace`` at most. A second SIGTERM exits at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol, TypeVar

import httptools

from servers.base import Context
from servers.pacing.wheel import Wheel, get_wheel
from servers.source.answers import Answer
from servers.tokens.core import MAX_BODY_BYTES, ContractError, Stream

log = logging.getLogger("tokenbench.floor")
QUEUED = 16  # pipelined requests a connection holds before it stops reading
T = TypeVar("T")


@dataclass
class Request:
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    too_large: bool = False
    upgrade: bool = False  # it asked to switch protocols (RFC 9110 §7.8)

    def header(self, name: bytes) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("latin-1")
        return None


class Upgraded(Protocol):
    """What a connection becomes after a protocol switch (a WebSocket): it gets the bytes."""

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self) -> None: ...


class Route(Protocol):
    """A transport's hot route on the floor stack."""

    def __call__(self, conn: Conn, request: Request) -> bool | Awaitable[bool]:
        """Take the request (True: a flow answers it, then calls ``conn.done``) or decline
        (False: the stock app answers). Awaitable only where the source must wait (``now``)."""
        ...


def now(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (a derived stream's or a pod's feed)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a feed that waits needs the awaitable route")


def waits(ctx: Context) -> bool:
    """Whether opening a feed may wait (a shared log in Redis): the route is then awaited."""
    return ctx.cfg.source == "llm" and ctx.cfg.replay == "redis"


@dataclass
class Read:
    """A valid read: what ``Opener`` found; ``feed`` is what the source gives from ``after``."""

    sid: str
    stream: Stream
    after: int
    params: dict[str, str]
    feed: Stream | Answer | None = None


Opener = Callable[[Request], "Read | None"]  # None: the stock app answers
Starter = Callable[["Conn", Request, Read], None]  # answers with a flow


def read_route(
    ctx: Context, opener: Opener, starter: Starter,
    refuse: Callable[[Conn, ContractError], None] | None = None,
) -> Route:  # fmt: skip
    """A hot route from a transport's ``opener`` (parse, open, validate: None declines) and
    ``starter`` (the flow); the feed is opened in between, awaited only where it may wait. A
    ``ContractError`` goes to ``refuse`` where the transport answers it itself (a WebSocket
    handshake), else the stock app answers the request."""

    def refused(conn: Conn, exc: ContractError) -> bool:
        if refuse is None:
            return False
        refuse(conn, exc)
        return True

    def read(conn: Conn, request: Request) -> bool:
        try:
            got = opener(request)
            if got is None:
                return False
            got.feed = now(ctx.feed(got.sid, got.stream, got.after))
        except ContractError as exc:
            return refused(conn, exc)
        starter(conn, request, got)
        return True

    async def read_waiting(conn: Conn, request: Request) -> bool:
        try:
            got = opener(request)
            if got is None:
                return False
            got.feed = await ctx.feed(got.sid, got.stream, got.after)
        except ContractError as exc:
            return refused(conn, exc)
        if conn.transport is not None:  # else the client left while the feed was opened
            starter(conn, request, got)
        return True

    return read_waiting if waits(ctx) else read  # type: ignore[return-value]


def head(status: int, headers: list[tuple[bytes, bytes]], close: bool = False) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
    lines += [k + b": " + v + b"\r\n" for k, v in headers]
    if close:
        lines.append(b"connection: close\r\n")
    return b"".join(lines) + b"\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


LAST_CHUNK = b"0\r\n\r\n"


@dataclass
class Server:
    ctx: Context
    route: Route
    app: Any  # the stock ASGI app
    post: Route | None = None  # the prompt POST's hot route (servers/http/prompt.py)
    wheel: Wheel = field(default_factory=get_wheel)
    conns: set[Conn] = field(default_factory=set)


class Conn(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: collections.deque[Request] = collections.deque()
        self.busy = False
        self.flow: Any = None  # the wheel.Flow answering now, if any
        self.task: asyncio.Task[None] | None = None
        self.gone: asyncio.Future[None] | None = None
        self.upgraded: Upgraded | None = None  # set by a route that switched protocols
        self._url, self._headers, self._body = b"", [], []  # type: ignore[var-annotated]
        self._size = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gone = asyncio.get_running_loop().create_future()
        self.server.conns.add(self)

    def data_received(self, data: bytes) -> None:
        if self.upgraded is not None:
            self.upgraded.data_received(data)
            return
        if self.parser is None:  # closed: nothing more is read
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # the request was answered in on_message_complete: switched, the rest is the new
            # protocol's; refused, it is dropped with the connection
            if self.upgraded is not None and data[exc.args[0] :]:
                self.upgraded.data_received(data[exc.args[0] :])
        except httptools.HttpParserError:
            self._refuse()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)
        if self.upgraded is not None:
            self.upgraded.connection_lost()
        if self.flow is not None:
            self.flow.close()
            self.flow = None
        if self.gone is not None and not self.gone.done():
            self.gone.set_result(None)
        # The parser, the transport and an upgraded protocol each hold this Conn: left in
        # place, every closed connection is a reference cycle, which a frozen collector
        # (--gc tuned, servers/process/gcpolicy.py) never frees.
        self.parser = self.transport = self.upgraded = None
        self.queue.clear()

    def pause_writing(self) -> None:
        if self.flow is not None:
            self.flow.pause()

    def resume_writing(self) -> None:
        if self.flow is not None:
            self.flow.resume()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size = b"", [], [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= MAX_BODY_BYTES:  # past it the body is refused (413), not kept
            self._body.append(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None  # only the parser calls this
        url = httptools.parse_url(self._url)
        request = Request(
            self.parser.get_method().decode("latin-1"),
            url.path.decode("latin-1"),
            url.query or b"",
            self._headers,
            b"".join(self._body),
            self.parser.should_keep_alive() and not self.parser.should_upgrade(),
            too_large=self._size > MAX_BODY_BYTES,
            upgrade=self.parser.should_upgrade(),
        )
        self.queue.append(request)
        if len(self.queue) > QUEUED and self.transport is not None:
            self.transport.pause_reading()
        self._next()

    # answering
    def _next(self) -> None:
        if self.busy or not self.queue or self.transport is None or self.transport.is_closing():
            return
        request = self.queue.popleft()
        if len(self.queue) == QUEUED:
            self.transport.resume_reading()
        self.busy = True
        if request.method == "GET":
            taken = self.server.route(self, request)
        elif request.method == "POST" and self.server.post is not None:
            taken = self.server.post(self, request)
        else:
            taken = False
        if inspect.isawaitable(taken):
            self.task = asyncio.ensure_future(self._routed(taken, request))
        elif not taken:
            self.task = asyncio.ensure_future(self._asgi(request))

    async def _routed(self, taken: Awaitable[bool], request: Request) -> None:
        if not await taken and self.transport is not None:  # None: the client left meanwhile
            await self._asgi(request)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def done(self, keep_alive: bool) -> None:
        """The current request is answered; the next one, or the close."""
        self.flow = self.task = None
        self.busy = False
        if not keep_alive or self.server.wheel.draining:
            if self.transport is not None:
                self.transport.close()
            return
        self._next()

    def _refuse(self) -> None:
        body = b'{"error":"invalid http request"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if not self.busy:
            self.write(head(400, headers, close=True) + body)
        if self.transport is not None:
            self.transport.close()

    async def _asgi(self, request: Request) -> None:
        """The stock app answers ``request`` (ASGI 3.0, HTTP)."""
        if self.transport is None or self.gone is None:  # the client left before its answer
            return
        peer = self.transport.get_extra_info("peername") or ("", 0)
        sock = self.transport.get_extra_info("sockname") or ("", 0)
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method, "scheme": "http", "path": request.path,
            "raw_path": request.path.encode(), "query_string": request.query, "root_path": "",
            "headers": request.headers, "client": peer[:2], "server": sock[:2],
        }  # fmt: skip
        # a body past the limit reaches the app as one byte too many: its 413
        body = b" " * (MAX_BODY_BYTES + 1) if request.too_large else request.body
        state = {"read": False, "chunked": False, "started": False, "keep": request.keep_alive}
        gone = self.gone

        async def receive() -> dict[str, Any]:
            if not state["read"]:
                state["read"] = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])]
                status = message["status"]
                sized = any(k == b"content-length" for k, _ in headers)
                bare = status in (204, 304) or status < 200 or request.method == "HEAD"
                if not sized and not bare:
                    headers.append((b"transfer-encoding", b"chunked"))
                    state["chunked"] = True
                if any(k == b"connection" and v.lower() == b"close" for k, v in headers):
                    state["keep"] = False
                    headers = [(k, v) for k, v in headers if k != b"connection"]
                state["keep"] = state["keep"] and not request.too_large
                state["started"] = True
                self.write(head(status, headers, close=not state["keep"]))
            elif message["type"] == "http.response.body":
                data = message.get("body", b"")
                more = message.get("more_body", False)
                if state["chunked"]:
                    self.write(chunk(data) + (b"" if more else LAST_CHUNK))
                elif data and request.method != "HEAD":
                    self.write(data)

        try:
            await self.server.app(scope, receive, send)
        except asyncio.CancelledError:
            state["keep"] = False
        except Exception:  # the app failed: a 500 if nothing went out yet, and a close
            log.exception("the stock app failed on %s %s", request.method, request.path)
            if not state["started"]:
                body500 = b'{"error":"internal error"}'
                self.write(head(500, [(b"content-type", b"application/json"),
                                      (b"content-length", b"%d" % len(body500))], close=True)
                           + body500)  # fmt: skip
            state["keep"] = False
        self.done(state["keep"])


async def serve(
    server: Server, socks: list[Any], on_ready: Callable[[], None]
) -> None:  # fmt: skip
    """Serve on ``socks`` until SIGTERM, then drain (module rules)."""
    loop = asyncio.get_running_loop()
    # create_server listens again, at its own default of 100 unless told (asyncio docs)
    backlog = server.ctx.cfg.backlog
    listeners = [await loop.create_server(lambda: Conn(server), sock=s, backlog=backlog)
                 for s in socks]  # fmt: skip
    stopping = asyncio.Event()
    forced = asyncio.Event()

    def on_term() -> None:
        if stopping.is_set():
            forced.set()
        stopping.set()

    loop.add_signal_handler(signal.SIGTERM, on_term)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor sends SIGTERM
    on_ready()
    await stopping.wait()
    for listener in listeners:
        listener.close()  # new connections go to a live server
    server.ctx.hub.drain()
    server.wheel.drain()
    for conn in list(server.conns):
        if not conn.busy and conn.transport is not None:
            conn.transport.close()  # idle keep-alive connections
    deadline = loop.time() + server.ctx.cfg.grace
    while server.conns and loop.time() < deadline and not forced.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(forced.wait(), 0.05)
    for conn in list(server.conns):
        if conn.transport is not None:
            conn.transport.abort()
