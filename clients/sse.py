"""SSE client: ``GET /v1/streams/{id}/sse`` with EventSource semantics (WHATWG HTML 9.2).

- resume with ``Last-Event-ID: <last seq seen>``;
- wait the server's ``retry:`` time before reconnecting (the first connection failures, before
  any ``retry:`` was seen, back off with jitter);
- ``204`` ends the stream (nothing more to read), as it stops a browser's EventSource;
- a 200 that is not ``text/event-stream`` fails for good, as in a browser; 404/410/422 fail for
  good with the server's message; a 5xx or a dropped connection is retried;
- nothing received (not even a heartbeat comment) for twice the heartbeat: reconnect.
"""

from __future__ import annotations

import contextlib
import json
from urllib.parse import quote

from clients.base import Reader, Retry, StreamError
from clients.http import connect, error_from
from clients.sse_parser import SSEParser


class SSEReader(Reader):
    transport = "sse"
    stock_retries_server_errors = False
    reconnect_ms: int | None = None  # the server's latest ``retry:``

    async def _attempt(self, after: int) -> bool:
        opts = self.options
        conn, hostport, prefix = await connect(self)
        ended = False
        deliver, loads = (self.deliver if self.tap is None else self.tap_deliver), json.loads

        def on_event(type_: str, data: str, last_id: str) -> None:
            nonlocal ended
            if type_ == "message":
                try:
                    doc = loads(data)
                    deliver(doc["seq"], doc["t"], doc["text"])
                except (ValueError, KeyError, TypeError):
                    conn.abort()  # a malformed event: drop this connection and resume
                    raise
            elif type_ == "end":
                ended = True
                with contextlib.suppress(ValueError, AttributeError):  # an end without fields
                    self.ended(loads(data).get("stopped"))

        parser = SSEParser(on_event)
        is_stream: bool | None = None

        def feed(chunk: bytes) -> None:
            nonlocal is_stream
            if is_stream is None:
                ctype = conn.headers.get("content-type", "")
                is_stream = conn.status == 200 and ctype.startswith("text/event-stream")
            if not is_stream:
                conn.body_parts.append(chunk)  # an error body, read below
                return
            try:  # noqa: SIM105 (a with-block would build an object per chunk, on the hot path)
                parser.feed(chunk)
            except (ValueError, KeyError, TypeError):
                pass  # on a bad event on_event aborted the connection: the attempt resumes

        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache",
                   **self.cookie_headers()}  # fmt: skip
        if after >= 0:
            headers["Last-Event-ID"] = str(after)
        conn.body_sink = feed
        tap = self.tap
        try:
            sid = quote(self.stream_id, safe="")
            conn.send("GET", f"{prefix}/v1/streams/{sid}/sse", hostport, headers)
            if tap is not None:  # the load generator's compiled path (clients.fast)
                self.tap_begin()

                def accept() -> bool:  # an event stream in chunks: C reads it from here
                    h = conn.headers
                    return (
                        conn.status == 200
                        and h.get("content-type", "").startswith("text/event-stream")
                        and h.get("transfer-encoding", "").lower() == "chunked"
                    )

                conn.go_fast(tap, on_event, conn.protocol_error, accept)
            status = await conn.head(opts.connect_timeout)
            if status == 204:
                return True
            if 400 <= status < 500 or (status != 200 and not opts.retry_server_errors):
                raise error_from(status, await conn.body())  # EventSource: fail for good
            if status != 200:
                raise Retry(f"HTTP {status}")
            ctype = conn.headers.get("content-type", "")
            if not ctype.startswith("text/event-stream"):
                raise StreamError(status, f"not an event stream: {ctype or 'no content type'}")
            self.connected()
            if opts.watchdog:
                conn.watch_silence(opts.silence)
            await conn.body()
            parser.close()
            if not ended:  # EventSource waits its reconnection time after any end of response
                raise Retry("closed without end")
            return True
        except Retry as exc:
            self._note_retry(parser)
            if self.reconnect_ms is not None and exc.delay is None:
                exc.delay = self.reconnect_ms / 1000
            raise
        finally:
            self._note_retry(parser)
            if tap is not None:
                self.tap_end(conn)
            self.stats.bytes_received += conn.rx_state()[1]
            conn.abort()

    def _note_retry(self, parser: SSEParser) -> None:
        if parser.retry is not None:
            self.reconnect_ms = parser.retry
        if self.tap is not None and self.tap.retry >= 0:
            self.reconnect_ms = self.tap.retry
