"""What every client shares: the token, the errors, the options, and the resume loop.

Each transport's client module (named by its record in ``transports``) has a ``Reader`` subclass
that implements one connection attempt, ``_attempt(after)``. ``Reader.run``
drives attempts: it resumes from the cursor (the last seq seen), backs off with jitter between
failed attempts, gives up after ``give_up_after`` seconds without progress, and hands every new
token to ``on_token`` exactly once and in order. Tokens at or below the cursor (a server replaying
too much) are dropped and counted, never delivered twice. 404/410/422 end the stream at once with
``StreamError``: retrying cannot help.

``stream()`` is the friendly face: ``async for token in stream(url, id, after=None)``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar


class Token(NamedTuple):
    seq: int
    t: int  # due time, ns since the epoch (from the payload)
    text: str


class StreamError(Exception):
    """The server refused the stream (404, 410, 422, or the gRPC equivalent). Final."""

    def __init__(self, status: int | str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {message}" + (f" (field {field})" if field else ""))
        self.status = status
        self.message = message
        self.field = field


class GaveUp(Exception):
    """No progress for ``give_up_after`` seconds of reconnect attempts."""


class Retry(Exception):
    """One attempt failed in a way that a reconnect may fix (drop, reset, 5xx, silence)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay  # a server-chosen delay (SSE ``retry:``), if any


@dataclass
class ClientOptions:
    heartbeat: float = 15.0  # the server's heartbeat; silence for twice this is a dead link
    connect_timeout: float = 10.0
    backoff_initial: float = 0.05
    backoff_max: float = 5.0
    give_up_after: float = 60.0  # seconds of failed attempts without a new token
    local_addr: str | None = None  # source address to bind before connect (127.0.0.x)
    poll_timeout: float = 25.0  # long polling: the server-side wait asked for
    ws_compression: bool = False  # offer permessage-deflate (RFC 7692)
    rst_close: bool = False  # close with RST (SO_LINGER 0): a load generator's sockets then
    # leave no TIME_WAIT behind, which would exhaust ephemeral ports at 50,000 users
    # Hardening (all on by default). Off, a client behaves as it comes out of the box:
    watchdog: bool = True  # reconnect after two heartbeats of silence (else: wait for TCP)
    retry_server_errors: bool = True  # retry 5xx; off = EventSource: any non-200 is final
    grpc_tuned: bool = True  # keepalive and ping timeout at the heartbeat; off = grpcio's own
    grpc_window: int | None = None  # a fixed HTTP/2 window, bytes (None: grpcio's, 4 MiB + BDP)

    @property
    def silence(self) -> float:
        return 2 * self.heartbeat


@dataclass
class ReaderStats:
    """Counters of one reader, or shared by many (the load generator sums a whole process)."""

    attempts: int = 0
    requests: int = 0  # HTTP requests or RPCs sent: one per attempt, one per poll
    reconnects: int = 0
    tokens: int = 0
    dropped_duplicates: int = 0  # a seq that was already delivered
    gaps: int = 0  # tokens skipped by the server (seq jumped): a contract violation
    out_of_order: int = 0  # a skipped seq that turned up later (dropped, never delivered)
    bytes_received: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)


class Reader:
    """One stream, read to its end across any number of connections."""

    transport = "base"
    # As it comes out of the box, does this client retry a 5xx? A browser's EventSource does not
    # (WHATWG HTML 9.2: any status but 200 fails the connection for good).
    stock_retries_server_errors = True

    def __init__(
        self,
        url: str,
        stream_id: str,
        on_token: Callable[[int, int, str], None],
        after: int | None = None,
        options: ClientOptions | None = None,
        stats: ReaderStats | None = None,
    ) -> None:
        self.url = url
        self.stream_id = stream_id
        self.on_token = on_token
        self.cursor = -1 if after is None else after
        self.options = options or ClientOptions()
        self.stats = stats or ReaderStats()
        self.delivered = 0  # this reader's own count (stats may be shared)
        self._missing: set[int] = set()  # seqs skipped by a gap, to tell late from duplicate
        self.on_retry: Callable[[str], None] | None = None  # an attempt failed (the reason)
        self.on_connected: Callable[[], None] | None = None  # an attempt got its answer
        self.tap: Any = None  # the load generator's compiled path (clients.fast), if any
        # The load balancer's stickiness cookie from the prompt POST (``create_stream``'s
        # ``cookie``), sent back on every attempt as a browser would (RFC 6265).
        self.cookie: str | None = None
        self.stopped_ns: int | None = None  # the end said: the user stopped it then (ns)
        self._stopping: asyncio.Future[None] | None = None  # the stop under way, if any
        self.ended_ns: int | None = None  # when the end message was read (wall clock)

    def cookie_headers(self) -> dict[str, str]:
        return {"Cookie": self.cookie} if self.cookie else {}

    # While a tap reads a connection it holds the cursor and counts what it delivered itself.
    def tap_begin(self) -> None:
        self.tap.cursor, self.tap.delivered = self.cursor, 0

    def tap_end(self, conn: Any) -> None:
        """The attempt is over: the connection's protocol is ``conn`` again (its loss must not
        reach the tap, which the next attempt reuses), the tap's counts go to the reader."""
        tap = self.tap
        if conn.transport is not None:
            conn.transport.set_protocol(conn)
        self.cursor = tap.cursor
        self.delivered += tap.delivered
        self.stats.tokens += tap.delivered
        tap.delivered = 0
        tap.stop()

    def tap_deliver(self, seq: int, t: int, text: str) -> None:
        """What a tap does not deliver itself (not the next seq, odd JSON) goes through here."""
        self.cursor = self.tap.cursor
        self.deliver(seq, t, text)
        self.tap.cursor = self.cursor

    def deliver(self, seq: int, t: int, text: str) -> None:
        """Called by the transport for every token it parsed; keeps order and uniqueness."""
        cursor = self.cursor
        if seq <= cursor:
            if seq in self._missing:
                self._missing.discard(seq)
                self.stats.out_of_order += 1
            else:
                self.stats.dropped_duplicates += 1
            return
        if seq != cursor + 1:
            self.stats.gaps += seq - cursor - 1
            if len(self._missing) < 10_000:
                self._missing.update(range(cursor + 1, min(seq, cursor + 10_001)))
        self.cursor = seq
        self.delivered += 1
        self.stats.tokens += 1
        self.on_token(seq, t, text)

    def ended(self, stopped: Any) -> None:
        """The end message arrived; ``stopped`` is its ``stopped`` field (None: not stopped)."""
        self.ended_ns = time.time_ns()
        if isinstance(stopped, int) and not isinstance(stopped, bool):
            self.stopped_ns = stopped

    async def stop(self) -> None:
        """The stop button (docs/protocol.md, "Stop"); the stream read goes on until its end,
        which carries ``stopped``. 4xx raises StreamError. A read that ends meanwhile (the stop
        took effect) waits for the stop's answer before it closes its session."""
        self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        """``POST /v1/streams/{id}/stop``, a request of its own; WebSocket sends it in-band,
        gRPC calls ``StopStream`` on the reader's channel."""
        from clients.http import stop_stream

        opts = self.options
        await stop_stream(self.url, self.stream_id, self.cookie, opts.connect_timeout,
                          opts.local_addr)  # fmt: skip

    def connected(self) -> None:
        """Transports call this once per attempt, when the server's answer began."""
        if self.on_connected is not None:
            self.on_connected()

    # A session is what one user keeps across its streams (grpcio: a channel). HTTP readers have
    # none: every stream opens its own connection, as a browser's EventSource does.
    session: Any = None

    @classmethod
    def open_session(cls, url: str, options: ClientOptions) -> Any:
        """Per-user state reused by every stream of that user, or None; closed by
        ``close_session``. The load generator opens one per simulated user."""
        return None

    @classmethod
    async def close_session(cls, session: Any) -> None:
        return None

    async def _attempt(self, after: int) -> bool:
        """One connection: deliver tokens; True once the stream ended, else raise Retry."""
        raise NotImplementedError

    async def run(self) -> None:
        """Read to the end of the stream, resuming as often as needed: on ``self.session`` if
        one was given, else on a session of its own (if the transport has sessions)."""
        if self.session is not None:
            return await self._resume()
        self.session = self.open_session(self.url, self.options)
        try:
            await self._resume()
        finally:
            if self._stopping is not None and not self._stopping.done():  # on this session
                await asyncio.wait([self._stopping], timeout=self.options.connect_timeout)
            if self.session is not None:
                await self.close_session(self.session)
            self.session = None

    async def _resume(self) -> None:
        opts = self.options
        delay = opts.backoff_initial
        progress_at = time.monotonic()
        while True:
            self.stats.attempts += 1
            before = self.delivered
            try:
                if await self._attempt(self.cursor):
                    return
                reason, wait = "closed without end", None
            except Retry as exc:
                reason, wait = exc.reason, exc.delay
            if self.on_retry is not None:
                self.on_retry(reason)
            now = time.monotonic()
            if self.delivered > before:
                progress_at, delay = now, opts.backoff_initial
            if now - progress_at > opts.give_up_after:
                raise GaveUp(f"no token for {opts.give_up_after:g} s; last error: {reason}")
            self.stats.reconnects += 1
            self.stats.retry_reasons[reason] = self.stats.retry_reasons.get(reason, 0) + 1
            if wait is None:
                wait = random.uniform(0, delay)  # full jitter (AWS architecture blog)
                delay = min(delay * 2, opts.backoff_max)
            await asyncio.sleep(wait)


T = TypeVar("T")


async def within(aw: Awaitable[T], seconds: float) -> T:
    """``await aw``, raising TimeoutError after ``seconds``. Not ``asyncio.wait_for``: on
    Python 3.11 it returns ``aw``'s result when a cancel arrives as ``aw`` completes, and the
    cancelled task runs on (CPython gh-86296): the load generator's users outlived a ramp-down."""
    async with asyncio.timeout(seconds):
        return await aw


def reader_class(transport: str) -> type[Reader]:
    """The reader of ``transport``, from its record in the registry."""
    import transports

    return transports.get(transport).reader_class()


async def stream(
    transport: str,
    url: str,
    stream_id: str,
    after: int | None = None,
    options: ClientOptions | None = None,
    cookie: str | None = None,
) -> AsyncIterator[Token]:
    """Every token after ``after`` (all of them if None), exactly once, in order. ``cookie``:
    the stickiness cookie ``create_stream`` returned, if any."""
    queue: asyncio.Queue[Token | None] = asyncio.Queue()
    reader = reader_class(transport)(
        url, stream_id, lambda s, t, x: queue.put_nowait(Token(s, t, x)), after, options
    )
    reader.cookie = cookie
    task = asyncio.ensure_future(reader.run())
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (token := await queue.get()) is not None:
            yield token
        await task  # re-raise StreamError / GaveUp
    finally:
        task.cancel()
