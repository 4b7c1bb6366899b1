"""Long-polling client: ``GET /v1/streams/{id}/poll?after=K&timeout=S``, one keep-alive connection.

The cursor travels with every poll (``after`` = last seq seen), so a reconnect is just the next
poll on a new connection. An answer with ``end: true`` completes the stream. 404/410/422 fail
for good; a 5xx or a drop is retried. A poll unanswered for ``timeout`` plus the heartbeat is a
dead connection.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from clients.base import Reader, Retry
from clients.http import connect, error_from


class PollReader(Reader):
    transport = "poll"

    async def _attempt(self, after: int) -> bool:
        opts = self.options
        conn, hostport, prefix = await connect(self, one_request=False)
        sid = quote(self.stream_id, safe="")
        base = f"{prefix}/v1/streams/{sid}/poll?timeout={opts.poll_timeout:g}"
        deliver, loads = self.deliver, json.loads
        if opts.watchdog:  # an unanswered poll past its timeout is a dead connection
            conn.watch_silence(opts.poll_timeout + opts.heartbeat)
        first, headers = True, self.cookie_headers()
        try:
            while True:
                conn.send("GET", f"{base}&after={self.cursor}", hostport, headers)
                self.stats.requests += 1
                status, body = await conn.response()
                if status != 200:
                    if 400 <= status < 500 or not opts.retry_server_errors:
                        raise error_from(status, body)
                    raise Retry(f"HTTP {status}")
                if first:
                    self.connected()
                    first = False
                try:
                    doc = loads(body)
                    for token in doc["tokens"]:
                        deliver(token["seq"], token["t"], token["text"])
                    if doc["end"]:
                        return True
                except (ValueError, KeyError, TypeError):
                    raise Retry("malformed poll answer") from None
        finally:
            self.stats.bytes_received += conn.bytes_received
            conn.abort()
