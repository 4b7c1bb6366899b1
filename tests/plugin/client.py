"""The NDJSON reader: one request per attempt, resuming with ``?after=`` the last seq seen."""

from __future__ import annotations

import json
from urllib.parse import quote

from clients.base import Reader, Retry
from clients.http import connect, error_from


class NdjsonReader(Reader):
    transport = "ndjson"

    async def _attempt(self, after: int) -> bool:
        opts = self.options
        conn, hostport, prefix = await connect(self)
        pending, ended = b"", False

        def feed(chunk: bytes) -> None:
            nonlocal pending, ended
            if conn.status != 200:
                conn.body_parts.append(chunk)  # an error body, read below
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if not line:
                    continue  # a heartbeat
                doc = json.loads(line)
                if doc.get("end"):
                    ended = True
                else:
                    self.deliver(doc["seq"], doc["t"], doc["text"])

        conn.body_sink = feed
        try:
            sid = quote(self.stream_id, safe="")
            conn.send("GET", f"{prefix}/v1/streams/{sid}/ndjson?after={after}", hostport, {})
            status = await conn.head(opts.connect_timeout)
            if 400 <= status < 500:
                raise error_from(status, await conn.body())
            if status != 200:
                raise Retry(f"HTTP {status}")
            self.connected()
            if opts.watchdog:
                conn.watch_silence(opts.silence)
            await conn.body()
            if not ended:
                raise Retry("closed without end")
            return True
        finally:
            self.stats.bytes_received += conn.bytes_received
            conn.abort()
