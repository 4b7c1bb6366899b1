"""Long-polling client: ``GET /v1/streams/{id}/poll?after=K&timeout=S``, one keep-alive connection.

The cursor travels with every poll (``after`` = last seq seen), so a reconnect is just the next
poll on a new connection. An answer with ``end: true`` completes the stream. 404/410/422 fail
for good; a 5xx or a drop is retried. A poll unanswered for ``timeout`` plus the heartbeat is a
dead connection.

With a tap (the load generator's compiled path, mode ``poll``), the tap reads the connection:
plain answers are read and the next poll is written in C; the first answer, any other status,
the end and anything odd come back whole to ``_answer``, the Python path's own code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from urllib.parse import quote

from clients.base import Reader, Retry, StreamError
from clients.http import HttpConnection, connect, error_from, request_bytes


class PollReader(Reader):
    transport = "poll"

    def _answer(self, status: int, body: bytes, deliver: Callable[[int, int, str], None]) -> bool:
        """One answer: its tokens delivered; True at the end; raises what ends the attempt."""
        if status != 200:
            if 400 <= status < 500 or not self.options.retry_server_errors:
                raise error_from(status, body)
            raise Retry(f"HTTP {status}")
        if self._first:
            self.connected()
            self._first = False
        try:
            doc = json.loads(body)
            for token in doc["tokens"]:
                deliver(token["seq"], token["t"], token["text"])
            if doc["end"]:
                self.ended(doc.get("stopped"))
            return bool(doc["end"])
        except (ValueError, KeyError, TypeError):
            raise Retry("malformed poll answer") from None

    async def _attempt(self, after: int) -> bool:
        opts = self.options
        conn, hostport, prefix = await connect(self, one_request=False)
        sid = quote(self.stream_id, safe="")
        target = f"{prefix}/v1/streams/{sid}/poll?timeout={opts.poll_timeout:g}&after="
        if opts.watchdog:  # an unanswered poll past its timeout is a dead connection
            conn.watch_silence(opts.poll_timeout + opts.heartbeat)
        headers, self._first = self.cookie_headers(), True
        try:
            pending = False
            if self.tap is not None:
                ended = await self._tapped(conn, target, hostport, headers)
                if ended is not None:
                    return ended
                pending = True  # the tap gave the connection back with an answer under way
            while True:
                if not pending:
                    conn.send("GET", f"{target}{self.cursor}", hostport, headers)
                    self.stats.requests += 1
                pending = False
                status, body = await conn.response()
                if self._answer(status, body, self.deliver):
                    return True
        finally:
            self.stats.bytes_received += conn.bytes_received
            conn.abort()

    async def _tapped(
        self, conn: HttpConnection, target: str, hostport: str, headers: dict[str, str]
    ) -> bool | None:
        """Polls on the compiled path: True at the end, None when an answer it cannot frame
        (no Content-Length) gave the connection back to ``conn``; raises as ``_answer``."""
        tap, done = self.tap, asyncio.get_running_loop().create_future()

        def on_answer(status: int, head: bytes, body: bytes) -> None:
            if done.done():
                return
            try:
                if self._answer(status, body, self.tap_deliver):
                    return done.set_result(True)
            except (Retry, StreamError) as exc:
                return done.set_exception(exc)
            tap.poll()

        def take_back(rest: bytes) -> None:
            assert conn.transport is not None
            conn.expect()
            conn.transport.set_protocol(conn)
            conn.data_received(rest)
            if not done.done():
                done.set_result(None)

        def on_error(why: str) -> None:
            if not done.done():
                done.set_exception(Retry(f"bad HTTP response: {why}"))
            conn.abort()

        request = request_bytes("GET", f"{target}\0", hostport, headers)
        before, after = request.split(b"\0")
        assert conn.transport is not None
        self.tap_begin()
        tap.start(conn, take_back, on_answer, on_error)
        tap.set_poll(before, after, conn.transport.write, self.stats)
        conn.tap = tap
        conn.transport.set_protocol(tap)
        tap.attach(conn.transport)  # the process's pump reads it, if it has one
        try:
            tap.poll()
            await asyncio.wait([done, conn.lost], return_when=asyncio.FIRST_COMPLETED)
            if done.done():
                return done.result()
            raise Retry("silent connection" if conn.silent else "connection lost")
        finally:
            self.stats.bytes_received += tap.bytes_received
            self.tap_end(conn)
